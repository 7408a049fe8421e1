"""HybridCN-NAS as a transformers model family (4 B-ALL classes on blood-smear images, Aria et al.).

Importing this package registers the classes with the transformers Auto classes (in-package use), marks
them for remote code (``save_pretrained`` writes ``auto_map`` and copies the standalone files:
configuration, modeling, image processing and their helpers ``stain_hybridcn_nas.py`` and
``segmentation_hybridcn_nas.py``) and registers the presets ``hybridcn-nas`` (the paper's sizes) and
``hybridcn-nas-lite`` (tiny timm test backbones, 128 px: CPU training and tests) with ``leuk.models``, and
leuk's view of the family (:mod:`.family`, the :class:`leuk.models.family.ModelFamily` contract).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from .configuration_hybridcn_nas import ARIA_LABELS, HybridCNNASConfig
from .image_processing_hybridcn_nas import HybridCNNASImageProcessor
from .modeling_hybridcn_nas import HybridCNNASForImageClassification

AutoConfig.register(HybridCNNASConfig.model_type, HybridCNNASConfig, exist_ok=True)
AutoModelForImageClassification.register(HybridCNNASConfig, HybridCNNASForImageClassification, exist_ok=True)
# One PIL implementation serves both backend names, so no backend request falls back with a warning.
AutoImageProcessor.register(
    HybridCNNASConfig,
    image_processor_classes={"pil": HybridCNNASImageProcessor, "torchvision": HybridCNNASImageProcessor},
    exist_ok=True,
)
HybridCNNASConfig.register_for_auto_class()
HybridCNNASForImageClassification.register_for_auto_class("AutoModelForImageClassification")
HybridCNNASImageProcessor.register_for_auto_class("AutoImageProcessor")

#: The paper's sizes: ConvNeXt-Large (224 px) + NASNet-Large (331 px), U-Net 64..1024, 2000 features.
PAPER_PRESET: dict[str, Any] = {}
#: Small enough to train end to end on a CPU in minutes (timm's test backbones, 128 px).
LITE_PRESET: dict[str, Any] = {
    "image_size": 128,
    "segmenter_widths": (8, 16, 32, 64),
    "segmenter_image_size": 128,
    "branch_a": "test_convnext",
    "branch_b": "test_efficientnet",
    "branch_a_image_size": 128,
    "branch_b_image_size": 128,
    "projection_dims": (48, 128),
    "fusion_dim": 64,
    "factorized_dims": (64, 96),
    "num_selected": 128,
    "token_size": 8,
    "classifier_dim": 64,
    "classifier_heads": 4,
    "classifier_layers": 2,
    "classifier_ffn_dim": 128,
    "head_hidden_dim": 32,
}


def build_config(preset: dict[str, Any], **overrides: Any) -> HybridCNNASConfig:
    """A configuration from a preset dict and overrides (unknown option names raise ``ValueError``)."""
    known = set(HybridCNNASConfig.__dataclass_fields__) | {"num_labels", "id2label", "label2id"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown HybridCN-NAS option(s) {', '.join(unknown)}")
    return HybridCNNASConfig(**{**preset, **overrides})


def _factory(preset: dict[str, Any]):
    def factory(*, pretrained: bool | str = False, **config_overrides: Any) -> HybridCNNASForImageClassification:
        model = HybridCNNASForImageClassification(build_config(preset, **config_overrides))
        if pretrained:
            try:
                from leuk.models import get_family
            except ImportError:  # outside leuk (remote code): timm's own Hub weights
                model.load_pretrained_backbones()
            else:
                get_family("hybridcn_nas").load_pretrained(model, "auto" if pretrained is True else str(pretrained))
        return model

    return factory


def _register_presets() -> None:
    try:
        from leuk.models import ModelConfigError, register_preset
        from leuk.models.family import register_family
    except ImportError:  # used outside leuk (e.g. as remote code in a copied folder)
        return
    from .family import HybridCNNASFamily

    family = register_family(HybridCNNASFamily())

    def checked(preset: dict[str, Any]):
        build = _factory(preset)

        def factory(*, pretrained: bool | str = False, **config_overrides: Any) -> HybridCNNASForImageClassification:
            try:
                return build(pretrained=pretrained, **config_overrides)
            except ValueError as err:
                raise ModelConfigError(str(err)) from err

        return factory

    register_preset(
        "hybridcn-nas",
        checked(PAPER_PRESET),
        description="HybridCN-NAS as published: Attention U-Net + ConvNeXt-Large/NASNet-Large + mRMR 2000 + "
        "token self-attention classifier (~300M parameters)",
        replace=True,
        family=family,
    )
    register_preset(
        "hybridcn-nas-lite",
        checked(LITE_PRESET),
        description="tiny HybridCN-NAS (timm test backbones, 128 px, 128 features) for CPU training and tests",
        replace=True,
        family=family,
    )


_register_presets()

__all__ = [
    "ARIA_LABELS",
    "LITE_PRESET",
    "PAPER_PRESET",
    "HybridCNNASConfig",
    "HybridCNNASForImageClassification",
    "HybridCNNASImageProcessor",
    "build_config",
]
