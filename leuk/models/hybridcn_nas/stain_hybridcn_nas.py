"""Phase 1 of HybridCN-NAS: stain normalisation and enhancement of blood-smear images.

Plain functions on ``H x W x 3`` uint8 RGB arrays, each returning a new uint8 RGB array. This file is part of
the standalone Hub model (copied next to the model weights), so it imports nothing from ``leuk``; OpenCV is
imported on first use so that the model itself loads without it.

Order used by :func:`preprocess_image` (the paper's): Reinhard stain normalisation -> multiscale enhancement ->
edge enhancement -> CLAHE on luminance -> non-local-means denoising.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

#: Names of the preprocessing steps, in the order they are applied.
PREPROCESSING_STEPS: tuple[str, ...] = ("stain", "multiscale", "edge", "clahe", "denoise")

_STD_FLOOR = 1e-6


def _cv2():
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "HybridCN-NAS preprocessing needs OpenCV: pip install opencv-python-headless"
        ) from err
    return cv2


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got an array of shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    return image


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _to_color_space(image: np.ndarray, color_space: str) -> np.ndarray:
    """float32 channels: CIE Lab (L in [0, 100], a/b around 0; OpenCV, D65) or RGB in [0, 255]."""
    if color_space == "lab":
        return _cv2().cvtColor(image.astype(np.float32) / 255.0, _cv2().COLOR_RGB2Lab)
    if color_space == "rgb":
        return image.astype(np.float32)
    raise ValueError(f"unknown stain colour space {color_space!r}; use 'lab' or 'rgb'")


def _from_color_space(channels: np.ndarray, color_space: str) -> np.ndarray:
    if color_space == "lab":
        rgb = _cv2().cvtColor(channels.astype(np.float32), _cv2().COLOR_Lab2RGB)
        return _to_uint8(np.clip(rgb, 0.0, 1.0) * 255.0)
    return _to_uint8(channels)


def stain_statistics(image: np.ndarray, color_space: str = "lab") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means and standard deviations of ``image`` in ``color_space`` ("lab" or "rgb").

    These six numbers are a Reinhard target: compute them on a template image (or average them over the
    training images) and pass them to :func:`reinhard_normalize`.
    """
    channels = _to_color_space(_check_rgb(image), color_space).reshape(-1, 3).astype(np.float64)
    return channels.mean(axis=0), channels.std(axis=0)


def reinhard_normalize(
    image: np.ndarray,
    target_means: Sequence[float],
    target_stds: Sequence[float],
    color_space: str = "lab",
) -> np.ndarray:
    """Reinhard et al. (2001) colour transfer: give every channel the target mean and standard deviation.

    ``color_space="lab"`` (default) works in OpenCV's float CIE Lab, the classic method; ``"rgb"`` matches the
    RGB channels directly, as the HybridCN-NAS code does. A flat channel (std 0) is only shifted.
    """
    image = _check_rgb(image)
    target_means = np.asarray(target_means, dtype=np.float64).reshape(3)
    target_stds = np.asarray(target_stds, dtype=np.float64).reshape(3)
    channels = _to_color_space(image, color_space).astype(np.float64)
    means = channels.reshape(-1, 3).mean(axis=0)
    stds = channels.reshape(-1, 3).std(axis=0)
    gain = np.where(stds > _STD_FLOOR, target_stds / np.maximum(stds, _STD_FLOOR), 1.0)
    matched = (channels - means) * gain + target_means
    return _from_color_space(matched, color_space)


def multiscale_enhance(
    image: np.ndarray, levels: int = 3, fine_weight: float = 0.6, coarse_weight: float = 0.4
) -> np.ndarray:
    """Gaussian-pyramid blending: each level = ``fine_weight`` x itself + ``coarse_weight`` x the upsampled
    reconstruction of the coarser levels, from the coarsest of ``levels`` levels back to full size.

    The result keeps cell-scale structure and damps pixel-scale noise. Levels that would be smaller than
    2 pixels are dropped, so tiny images pass through with fewer levels.
    """
    cv2 = _cv2()
    image = _check_rgb(image)
    pyramid = [image.astype(np.float32)]
    while len(pyramid) < levels and min(pyramid[-1].shape[:2]) >= 4:
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    reconstruction = pyramid[-1]
    for level in reversed(pyramid[:-1]):
        height, width = level.shape[:2]
        upsampled = cv2.pyrUp(reconstruction, dstsize=(width, height))
        reconstruction = fine_weight * level + coarse_weight * upsampled
    return _to_uint8(reconstruction)


def edge_enhance(image: np.ndarray, kernel_size: int = 5, sigma: float = 1.5, weight: float = 0.5) -> np.ndarray:
    """Laplacian-of-Gaussian sharpening: ``image - weight * Laplacian(GaussianBlur(image))``.

    The Gaussian (``kernel_size`` x ``kernel_size``, ``sigma``) keeps the Laplacian (3x3, 4-neighbour) from
    amplifying noise; subtracting it steepens cell and nucleus borders. Borders are mirrored (reflect-101).
    """
    cv2 = _cv2()
    image = _check_rgb(image)
    pixels = image.astype(np.float32)
    blurred = cv2.GaussianBlur(pixels, (kernel_size, kernel_size), sigma, borderType=cv2.BORDER_REFLECT_101)
    laplacian = cv2.Laplacian(blurred, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT_101)
    return _to_uint8(pixels - weight * laplacian)


def clahe_luminance(image: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the L channel (OpenCV 8-bit Lab); colour kept."""
    cv2 = _cv2()
    lab = cv2.cvtColor(_check_rgb(image), cv2.COLOR_RGB2Lab)
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid), int(tile_grid)))
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)


def denoise_nlm(image: np.ndarray, h: float = 10.0, template_window: int = 7, search_window: int = 21) -> np.ndarray:
    """OpenCV's non-local-means denoising for colour images (filter strength ``h`` for luminance and colour)."""
    cv2 = _cv2()
    bgr = cv2.cvtColor(_check_rgb(image), cv2.COLOR_RGB2BGR)
    denoised = cv2.fastNlMeansDenoisingColored(bgr, None, float(h), float(h), int(template_window), int(search_window))
    return cv2.cvtColor(denoised, cv2.COLOR_BGR2RGB)


def preprocess_image(
    image: np.ndarray,
    *,
    stain: bool = True,
    multiscale: bool = True,
    edge: bool = True,
    clahe: bool = True,
    denoise: bool = True,
    stain_color_space: str = "lab",
    stain_target_means: Optional[Sequence[float]] = None,
    stain_target_stds: Optional[Sequence[float]] = None,
    clahe_clip_limit: float = 2.0,
    clahe_tile_grid: int = 8,
    denoise_h: float = 10.0,
    return_intermediates: bool = False,
):
    """Apply the enabled steps in :data:`PREPROCESSING_STEPS` order.

    Stain normalisation needs a target (``stain_target_means``/``stds``); without one it is skipped.
    Returns the processed uint8 RGB array or, with ``return_intermediates``, a dict from ``"input"`` and every
    step that ran to the image after that step (the last entry is the result).
    """
    image = _check_rgb(image)
    results = {"input": image}
    if stain and stain_target_means is not None and stain_target_stds is not None:
        image = reinhard_normalize(image, stain_target_means, stain_target_stds, stain_color_space)
        results["stain"] = image
    if multiscale:
        image = multiscale_enhance(image)
        results["multiscale"] = image
    if edge:
        image = edge_enhance(image)
        results["edge"] = image
    if clahe:
        image = clahe_luminance(image, clahe_clip_limit, clahe_tile_grid)
        results["clahe"] = image
    if denoise:
        image = denoise_nlm(image, denoise_h)
        results["denoise"] = image
    return results if return_intermediates else image
