"""Blood-smear preprocessing (HybridCN-NAS phase 1): stain normalisation, enhancement, CLAHE, denoising.

One implementation: the functions live in the standalone Hub file
``leuk/models/hybridcn_nas/stain_hybridcn_nas.py`` (shipped next to the model weights) and are re-exported
here. All take and return ``H x W x 3`` uint8 RGB arrays.
"""

from leuk.models.hybridcn_nas.stain_hybridcn_nas import (
    PREPROCESSING_STEPS,
    clahe_luminance,
    denoise_nlm,
    edge_enhance,
    multiscale_enhance,
    preprocess_image,
    reinhard_normalize,
    stain_statistics,
)

__all__ = [
    "PREPROCESSING_STEPS",
    "clahe_luminance",
    "denoise_nlm",
    "edge_enhance",
    "multiscale_enhance",
    "preprocess_image",
    "reinhard_normalize",
    "stain_statistics",
]
