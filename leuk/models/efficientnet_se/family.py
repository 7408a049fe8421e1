"""EfficientNet-SE (and its baselines) under the :class:`leuk.models.family.ModelFamily` contract.

Not a Hub file: the standalone files of the family are ``configuration_*``, ``modeling_*`` and
``image_processing_*``; this module is leuk's view of them.
"""

from __future__ import annotations

from typing import Any

from leuk.models.family import ModelFamily

__all__ = ["EfficientNetSEFamily"]


class EfficientNetSEFamily(ModelFamily):
    """One backbone, SE channel attention, global average pool, MLP or linear head."""

    model_type = "efficientnet_se"
    title = "EfficientNet-SE"
    dataset = "cnmc"
    processor_path = "leuk.models.efficientnet_se.image_processing_efficientnet_se:EfficientNetSEImageProcessor"
    engine = "leuk.training.efficientnet_se"
    pooled_description = "pooled backbone features (SE channel attention + global average pool), the head's input"

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
