"""HybridCN-NAS phase 1 (leuk.preprocess) against library oracles: torchstain, scipy.ndimage, numpy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from leuk.preprocess import (
    PREPROCESSING_STEPS,
    clahe_luminance,
    denoise_nlm,
    edge_enhance,
    multiscale_enhance,
    preprocess_image,
    reinhard_normalize,
    stain_statistics,
)


def smear(seed: int, tint=(1.0, 1.0, 1.0), size: int = 64) -> np.ndarray:
    """A smear-like RGB image: light background, purple discs, camera noise, a colour cast."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 225.0)
    rows, cols = np.mgrid[:size, :size]
    for _ in range(6):
        cy, cx, radius = rng.integers(6, size - 6, 2).tolist() + [int(rng.integers(4, 10))]
        image[(rows - cy) ** 2 + (cols - cx) ** 2 < radius**2] = rng.uniform([90, 40, 130], [140, 80, 180])
    image = image * np.asarray(tint) + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reinhard_lab_matches_torchstain(seed: int) -> None:
    # torchstain's Reinhard converts RGB->Lab with its own sRGB/D65 constants and truncates the result to
    # uint8, while leuk uses OpenCV's float Lab and rounds. So the target statistics agree to a few
    # hundredths and the images to within one grey level.
    from torchstain.numpy.normalizers.reinhard import NumpyReinhardNormalizer

    template, source = smear(seed, (1.0, 0.93, 1.02)), smear(seed + 10, (0.85, 1.0, 0.8))
    oracle = NumpyReinhardNormalizer()
    oracle.fit(template)
    means, stds = stain_statistics(template, "lab")
    np.testing.assert_allclose(means, oracle.target_means, atol=0.25)
    np.testing.assert_allclose(stds, oracle.target_stds, rtol=0.01)

    ours = reinhard_normalize(source, means, stds, "lab")
    theirs = oracle.normalize(source)
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    assert difference.mean() < 0.6 and difference.max() <= 2
    # what Reinhard promises: the output has the target's per-channel Lab statistics
    out_means, out_stds = stain_statistics(ours, "lab")
    np.testing.assert_allclose(out_means, means, atol=0.5)
    np.testing.assert_allclose(out_stds, stds, rtol=0.03)


def test_reinhard_rgb_is_per_channel_moment_matching() -> None:
    source = smear(3, (0.9, 1.0, 0.8))
    target_means, target_stds = np.array([150.0, 120.0, 170.0]), np.array([30.0, 40.0, 25.0])
    pixels = source.reshape(-1, 3).astype(np.float64)
    expected = (pixels - pixels.mean(0)) / pixels.std(0) * target_stds + target_means
    expected = np.clip(np.rint(expected), 0, 255).astype(np.uint8).reshape(source.shape)
    np.testing.assert_array_equal(reinhard_normalize(source, target_means, target_stds, "rgb"), expected)


def test_reinhard_flat_channel_is_only_shifted() -> None:
    flat = np.full((8, 8, 3), 100, np.uint8)
    out = reinhard_normalize(flat, [120, 130, 140], [10, 10, 10], "rgb")
    assert np.all(out == np.array([120, 130, 140], np.uint8))


def test_edge_enhance_matches_scipy() -> None:
    image = smear(4)
    # OpenCV's reflect-101 border is scipy's "mirror"; a 5x5 Gaussian with sigma 1.5 has radius 2
    blurred = ndimage.gaussian_filter(image.astype(np.float64), sigma=(1.5, 1.5, 0), radius=(2, 2, 0), mode="mirror")
    laplacian = np.stack([ndimage.laplace(blurred[..., c], mode="mirror") for c in range(3)], axis=-1)
    expected = np.clip(np.rint(image - 0.5 * laplacian), 0, 255)
    assert np.abs(edge_enhance(image).astype(int) - expected.astype(int)).max() <= 1


def test_multiscale_keeps_flat_images_and_damps_noise() -> None:
    flat = np.full((48, 40, 3), 77, np.uint8)
    np.testing.assert_array_equal(multiscale_enhance(flat), flat)
    noisy = smear(5)
    out = multiscale_enhance(noisy)
    assert out.shape == noisy.shape and out.dtype == np.uint8
    high_frequency = lambda x: ndimage.laplace(x.astype(np.float64).mean(-1)).std()  # noqa: E731
    assert high_frequency(out) < 0.8 * high_frequency(noisy)
    assert abs(out.astype(float).mean() - noisy.astype(float).mean()) < 2
    assert multiscale_enhance(np.zeros((3, 3, 3), np.uint8)).shape == (3, 3, 3)  # too small for a pyramid


def test_clahe_raises_luminance_contrast_and_keeps_colour() -> None:
    import cv2

    dull = (smear(6).astype(np.float64) * 0.25 + 140).astype(np.uint8)
    out = clahe_luminance(dull)
    lab_in, lab_out = cv2.cvtColor(dull, cv2.COLOR_RGB2Lab), cv2.cvtColor(out, cv2.COLOR_RGB2Lab)
    assert lab_out[..., 0].astype(float).std() > 1.2 * lab_in[..., 0].astype(float).std()
    assert np.abs(lab_out[..., 1:].astype(int) - lab_in[..., 1:].astype(int)).mean() < 3


def test_nlm_denoising_removes_noise_and_keeps_level() -> None:
    rng = np.random.default_rng(7)
    clean = np.full((48, 48, 3), 128.0)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    out = denoise_nlm(noisy)
    assert out.astype(float).std() < noisy.astype(float).std() / 2
    assert abs(out.astype(float).mean() - 128) < 2


def test_preprocess_image_runs_steps_in_order_and_skips_stain_without_target() -> None:
    image = smear(8)
    steps = preprocess_image(image, return_intermediates=True)
    assert list(steps) == ["input", *[s for s in PREPROCESSING_STEPS if s != "stain"]]
    means, stds = stain_statistics(smear(9))
    steps = preprocess_image(image, stain_target_means=means, stain_target_stds=stds, return_intermediates=True)
    assert list(steps) == ["input", *PREPROCESSING_STEPS]
    np.testing.assert_array_equal(steps["clahe"], clahe_luminance(edge_enhance(multiscale_enhance(steps["stain"]))))
    plain = preprocess_image(image, stain=False, multiscale=False, edge=False, clahe=False, denoise=False)
    np.testing.assert_array_equal(plain, image)


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32)])
def test_non_rgb_uint8_input_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        clahe_luminance(bad)


def test_image_processor_runs_the_same_functions() -> None:
    from PIL import Image

    from leuk.models.hybridcn_nas import HybridCNNASImageProcessor

    means, stds = stain_statistics(smear(10))
    processor = HybridCNNASImageProcessor(size={"height": 48, "width": 48}, stain_target_means=means,
                                          stain_target_stds=stds, do_denoise=False)
    picture = Image.fromarray(smear(11, size=80))
    resized = processor.resize_rgb(picture)
    expected = preprocess_image(resized, stain_target_means=means, stain_target_stds=stds, denoise=False)
    pixels = processor(picture)["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 48, 48)
    np.testing.assert_allclose(pixels[0].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)
    assert processor.enabled_steps() == ["stain", "multiscale", "edge", "clahe"]
    # a call-time option overrides the stored one
    without_clahe = processor(picture, do_clahe=False)["pixel_values"]
    expected = preprocess_image(resized, stain_target_means=means, stain_target_stds=stds, denoise=False, clahe=False)
    np.testing.assert_allclose(without_clahe[0].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)
