"""EfficientNet-SE (and its baselines) under the :class:`leuk.models.family.ModelFamily` contract.

Not a Hub file: the standalone files of the family are ``configuration_*``, ``modeling_*`` and
``image_processing_*``; this module is leuk's view of them.
"""

from __future__ import annotations

from typing import Any, Mapping

from leuk.models.family import ModelFamily

__all__ = ["EfficientNetSEFamily", "efficientnet_se_architecture"]


class EfficientNetSEFamily(ModelFamily):
    """One backbone, SE channel attention, global average pool, MLP or linear head."""

    model_type = "efficientnet_se"
    title = "EfficientNet-SE"
    dataset = "cnmc"
    processor_path = "leuk.models.efficientnet_se.image_processing_efficientnet_se:EfficientNetSEImageProcessor"
    engine = "leuk.training.efficientnet_se"
    pooled_description = "pooled backbone features (SE channel attention + global average pool), the head's input"
    real_data = "real C-NMC cells"
    synthetic_data = "synthetic C-NMC look-alike cells"
    image_unit = "cells"
    card_template = "efficientnet_se.md.j2"
    card_dataset_name = "C-NMC 2019 (ISBI challenge)"
    card_dataset_type = "c-nmc-2019"
    card_tags = ("efficientnet", "squeeze-excitation")
    example_image = "cell.bmp"
    default_protocol = "patient"
    card_sections = frozenset({"backbone_note", "comparison"})
    train_command = "leuk.cli.train_efficientnet_se"

    def train_targets(self) -> dict[str, str | None]:
        """One ``leuk train`` target per preset, helped by the preset's description."""
        return {name: self.preset_description(name) for name in self.presets()}

    def train_target_defaults(self, target: str) -> dict[str, Any]:
        """A target trains the preset of its name."""
        return {"preset": target}

    def describe(self, config: Mapping[str, Any], backbones: list[str]) -> tuple[str, str | None]:
        """The title names a backbone other than the paper's (a plain baseline: ``resnet50 baseline``), and the
        architecture line the SE block and the head."""
        return efficientnet_se_architecture(config, backbones)

    def forward_features(self, model: Any, pixel_values: Any) -> Any:
        """The backbone's final ``(N, C, H, W)`` feature map."""
        return model.forward_features(pixel_values)

    def forward_head(self, model: Any, features: Any, *, pre_logits: bool = False) -> Any:
        """SE + global average pool (``pre_logits``), then the head's raw logits."""
        pooled = model.pool(features)
        return pooled if pre_logits else model.forward_head(pooled)

    def load_pretrained(self, model: Any, source: str = "auto") -> str:
        """ImageNet weights for the backbone (an installed weights package, a file or timm's Hub weights)."""
        from leuk.models.efficientnet_se.modeling_efficientnet_se import _create_backbone
        from leuk.models.pretrained import load_backbone_weights

        config = model.config
        origin = load_backbone_weights(model.backbone, config.backbone, source=source,
                                       create_backbone=lambda pretrained: _create_backbone(config, pretrained=pretrained))
        config.pretrained_backbone_source = origin
        return origin


def efficientnet_se_architecture(config: Mapping[str, Any], backbones: list[str]) -> tuple[str, str]:
    """(title, one-line architecture) of an EfficientNet-SE-family ``config.json``, baselines included."""
    backbone = backbones[0] if backbones else "EfficientNetV2"
    num_labels = len(config.get("id2label") or {}) or 2
    parts = [f"timm `{backbone}` backbone (no pooling)"]
    if config.get("use_se", True):
        reduction = config.get("se_reduction", 16)
        parts.append(f"squeeze-and-excitation block (reduction {reduction}) on the final feature map")
    parts.append("global average pooling")
    if config.get("use_head", True):
        blocks = [f"Dropout {p} → Linear {h} → BatchNorm → ReLU"
                  for h, p in zip(config.get("head_hidden_sizes", (512, 256)), config.get("head_dropout", (0.3, 0.2)))]
        parts.append("MLP head (" + " → ".join(blocks + [f"Linear {num_labels}"]) + ")")
    else:
        parts.append(f"linear classifier ({num_labels} classes)")
    plain = not config.get("use_se", True) and not config.get("use_head", True)
    # the paper's backbone is the family's name alone; another backbone is named in the title
    title = "EfficientNet-SE" if backbone in ("EfficientNetV2", "tf_efficientnetv2_b3") else f"EfficientNet-SE ({backbone})"
    return (f"{backbone} baseline" if plain else title), " → ".join(parts)
