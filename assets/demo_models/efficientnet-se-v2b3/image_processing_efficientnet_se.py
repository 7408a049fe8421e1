"""The one preprocessing of EfficientNet-SE (training evaluation, CLI, apps and the Hub pipeline).

RGB -> plain resize to ``image_size x image_size`` (bicubic) -> rescale to [0, 1] -> normalise with the
ImageNet mean/std -> ``pixel_values`` float tensor ``(N, 3, H, W)``.

Why a plain resize: C-NMC cells are segmented, centred and stored as square frames on a black background, so
a plain resize keeps the whole cell and its size relative to the frame (the paper resizes the same way). A
shortest-edge resize plus centre crop gives the same result on square inputs and would cut the cell's border
on others.

This file is Hub remote code: it imports only transformers (no ``leuk``).
"""

from typing import Any

from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

RESAMPLING = {
    "nearest": PILImageResampling.NEAREST,
    "bilinear": PILImageResampling.BILINEAR,
    "bicubic": PILImageResampling.BICUBIC,
    "lanczos": PILImageResampling.LANCZOS,
}


class EfficientNetSEImageProcessor(PilBackend):
    """PIL/NumPy image processor of EfficientNet-SE; returns ``pixel_values`` as a float32 torch tensor.

    Build it to match a model with ``EfficientNetSEImageProcessor.from_model_config(model.config)``.
    """

    model_input_names = ["pixel_values"]
    do_convert_rgb = True
    do_resize = True
    size = {"height": 384, "width": 384}
    resample = PILImageResampling.BICUBIC
    do_center_crop = False
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    return_tensors = "pt"

    @classmethod
    def from_model_config(cls, config: Any, **overrides: Any) -> "EfficientNetSEImageProcessor":
        """The processor that feeds a model built from ``config`` (image size, mean/std, interpolation)."""
        options = {
            "size": {"height": config.image_size, "width": config.image_size},
            "resample": RESAMPLING[config.interpolation],
            "image_mean": list(config.image_mean),
            "image_std": list(config.image_std),
        }
        options.update(overrides)
        return cls(**options)


__all__ = ["EfficientNetSEImageProcessor"]
