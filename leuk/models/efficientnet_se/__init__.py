"""EfficientNet-SE as a transformers model family (ALL vs HEM on single segmented cells, C-NMC 2019).

Importing this package registers the classes with the transformers Auto classes (in-package use) and
marks them for remote code, so ``save_pretrained`` writes ``auto_map`` and copies the three standalone files
(``configuration_*``, ``modeling_*``, ``image_processing_*``): a saved folder then loads with
``trust_remote_code=True`` where leuk is not installed.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from .configuration_efficientnet_se import EfficientNetSEConfig
from .image_processing_efficientnet_se import EfficientNetSEImageProcessor
from .modeling_efficientnet_se import EfficientNetSEForImageClassification, focal_loss

AutoConfig.register(EfficientNetSEConfig.model_type, EfficientNetSEConfig, exist_ok=True)
AutoModelForImageClassification.register(
    EfficientNetSEConfig, EfficientNetSEForImageClassification, exist_ok=True
)
# One PIL implementation serves both backend names, so no backend request falls back with a warning.
AutoImageProcessor.register(
    EfficientNetSEConfig,
    image_processor_classes={"pil": EfficientNetSEImageProcessor, "torchvision": EfficientNetSEImageProcessor},
    exist_ok=True,
)

EfficientNetSEConfig.register_for_auto_class()
EfficientNetSEForImageClassification.register_for_auto_class("AutoModelForImageClassification")
EfficientNetSEImageProcessor.register_for_auto_class("AutoImageProcessor")

from .presets import EFFICIENTNET_SE, efficientnet_se_factory  # noqa: E402  the family and its presets, registered

__all__ = [
    "EFFICIENTNET_SE",
    "EfficientNetSEConfig",
    "EfficientNetSEForImageClassification",
    "EfficientNetSEImageProcessor",
    "efficientnet_se_factory",
    "focal_loss",
]
