"""The one preprocessing of HybridCN-NAS (training, evaluation, CLI, apps and the Hub pipeline).

RGB -> resize to ``size`` (bicubic) -> the enabled phase-1 steps on uint8 RGB (Reinhard stain normalisation,
multiscale enhancement, edge enhancement, CLAHE on L, non-local-means denoising; see
``stain_hybridcn_nas.py``) -> rescale to [0, 1] -> ``pixel_values`` (N, 3, H, W) float32.

The image is resized BEFORE the enhancement steps, so they cost the same for every input size and see the
resolution the model sees. No mean/std normalisation here: the model normalises each branch's input with
that branch's own statistics. All settings are saved in ``preprocessor_config.json``; the stain target
(six numbers, Lab or RGB means and standard deviations) is fitted on the training images by
``leuk.training.hybridcn_nas``. Without a target, stain normalisation is skipped.

This file is Hub remote code: it imports only transformers, numpy and its sibling file (no ``leuk``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs

from .stain_hybridcn_nas import PREPROCESSING_STEPS, preprocess_image


class HybridCNNASImageProcessorKwargs(ImagesKwargs, total=False):
    """Options of the phase-1 preprocessing (saved in ``preprocessor_config.json``)."""

    do_stain_normalize: bool
    stain_color_space: str
    stain_target_means: Optional[list[float]]
    stain_target_stds: Optional[list[float]]
    do_multiscale: bool
    do_edge_enhance: bool
    do_clahe: bool
    do_denoise: bool
    clahe_clip_limit: float
    clahe_tile_grid: int
    denoise_h: float


#: processor attribute -> the ``preprocess_image`` keyword it feeds
_STEP_OPTIONS = {
    "do_stain_normalize": "stain",
    "do_multiscale": "multiscale",
    "do_edge_enhance": "edge",
    "do_clahe": "clahe",
    "do_denoise": "denoise",
    "stain_color_space": "stain_color_space",
    "stain_target_means": "stain_target_means",
    "stain_target_stds": "stain_target_stds",
    "clahe_clip_limit": "clahe_clip_limit",
    "clahe_tile_grid": "clahe_tile_grid",
    "denoise_h": "denoise_h",
}


class HybridCNNASImageProcessor(PilBackend):
    """PIL/NumPy image processor of HybridCN-NAS; returns ``pixel_values`` in [0, 1] as a float32 tensor.

    Build it to match a model with ``HybridCNNASImageProcessor.from_model_config(model.config)``.
    """

    valid_kwargs = HybridCNNASImageProcessorKwargs
    model_input_names = ["pixel_values"]
    do_convert_rgb = True
    do_resize = True
    size = {"height": 331, "width": 331}
    resample = PILImageResampling.BICUBIC
    do_center_crop = False
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = False
    return_tensors = "pt"
    do_stain_normalize = True
    stain_color_space = "lab"
    stain_target_means = None
    stain_target_stds = None
    do_multiscale = True
    do_edge_enhance = True
    do_clahe = True
    do_denoise = True
    clahe_clip_limit = 2.0
    clahe_tile_grid = 8
    denoise_h = 10.0

    @classmethod
    def from_model_config(cls, config: Any, **overrides: Any) -> "HybridCNNASImageProcessor":
        """The processor that feeds a model built from ``config`` (its ``image_size``)."""
        options: dict[str, Any] = {"size": {"height": config.image_size, "width": config.image_size}}
        options.update(overrides)
        return cls(**options)

    def step_options(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of ``preprocess_image`` for this processor's settings."""
        settings = {attribute: overrides.get(attribute, getattr(self, attribute)) for attribute in _STEP_OPTIONS}
        return {_STEP_OPTIONS[attribute]: value for attribute, value in settings.items()}

    def enabled_steps(self) -> list[str]:
        """Names of the steps that run, in order (stain only with a target)."""
        options = self.step_options()
        steps = [step for step in PREPROCESSING_STEPS if options[step]]
        if options["stain_target_means"] is None or options["stain_target_stds"] is None:
            steps = [step for step in steps if step != "stain"]
        return steps

    def resize_rgb(self, image: Any) -> np.ndarray:
        """``image`` (PIL, HWC or CHW array) as an RGB uint8 ``H x W x 3`` array at ``size``."""
        array = self.process_image(image, do_convert_rgb=True)
        if array.shape[0] == 1:
            array = np.repeat(array, 3, axis=0)
        array = self.resize(array, size=self.size, resample=self.resample)
        return np.ascontiguousarray(np.moveaxis(np.asarray(array), 0, -1)[..., :3]).astype(np.uint8)

    def preprocess_steps(self, image: Any) -> dict[str, np.ndarray]:
        """Every intermediate of one image: ``"input"`` (resized) and one uint8 RGB array per step that ran."""
        return preprocess_image(self.resize_rgb(image), return_intermediates=True, **self.step_options())

    def _preprocess(self, images: list[np.ndarray], do_resize: bool, size, resample, do_rescale: bool,
                    rescale_factor: float, return_tensors=None, **kwargs: Any) -> BatchFeature:
        options = {key: kwargs[key] for key in _STEP_OPTIONS if kwargs.get(key) is not None}
        step_kwargs = self.step_options(**options)
        processed = []
        for image in images:
            if image.shape[0] == 1:
                image = np.repeat(image, 3, axis=0)
            if do_resize:
                image = self.resize(image=image, size=size, resample=resample)
            rgb = np.ascontiguousarray(np.moveaxis(np.asarray(image), 0, -1)[..., :3])
            if rgb.dtype != np.uint8:
                rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
            rgb = preprocess_image(rgb, **step_kwargs)
            pixels = np.moveaxis(rgb, -1, 0).astype(np.float32)
            if do_rescale:
                pixels = pixels * np.float32(rescale_factor)
            if kwargs.get("do_normalize"):  # not for HybridCN-NAS models, which expect [0, 1]
                pixels = self.normalize(pixels, kwargs.get("image_mean"), kwargs.get("image_std"))
            processed.append(pixels)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)


__all__ = ["HybridCNNASImageProcessor"]
