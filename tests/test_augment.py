"""TrainAugment: shapes, ranges, determinism, each operation on its own, HED conversions, GPU parity."""

from __future__ import annotations

import pytest
import torch

from leuk.data.augment import RGB_FROM_HED, TrainAugment, hed_to_rgb, rgb_to_hed

OFF = dict(hflip=0.0, rotate_degrees=0.0, brightness=0.0, contrast=0.0)


def _batch(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_paper_set_keeps_shape_dtype_and_range():
    augment = TrainAugment.paper(seed=0, crop_p=0.5, saturation=0.2)
    x = _batch()
    y = augment(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0.0 <= y.min() and y.max() <= 1.0 and not torch.equal(x, y)
    assert torch.equal(x, _batch()), "the input batch is not modified in place"


def test_seeded_augmenters_repeat_and_generators_override():
    x = _batch()
    assert torch.equal(TrainAugment.paper(seed=3)(x), TrainAugment.paper(seed=3)(x))
    assert not torch.equal(TrainAugment.paper(seed=3)(x), TrainAugment.paper(seed=4)(x))
    unseeded = TrainAugment.paper()
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(unseeded(x, generator=g1), unseeded(x, generator=g2))


def test_parameters_are_drawn_per_sample():
    same = _batch(1).repeat(8, 1, 1, 1)
    out = TrainAugment.paper(seed=1)(same)
    assert len({tuple(sample.flatten()[:64].tolist()) for sample in out}) > 1


def test_all_operations_off_and_eval_mode_are_identity():
    x = _batch()
    assert torch.equal(TrainAugment(**OFF, seed=0)(x), x)
    augment = TrainAugment.paper(seed=0).eval()
    assert augment(x) is x


def test_flips_and_quarter_turns_are_exact():
    x = _batch()
    assert torch.equal(TrainAugment(**{**OFF, "hflip": 1.0})(x), x.flip(-1))
    assert torch.equal(TrainAugment(**{**OFF, "vflip": 1.0})(x), x.flip(-2))
    turned = TrainAugment(**{**OFF, "rot90": 1.0}, seed=2)(x)
    for original, sample in zip(x, turned):
        assert any(torch.equal(sample, torch.rot90(original, k, dims=(-2, -1))) for k in (1, 2, 3))


def test_small_rotation_keeps_a_centred_disc():
    size = 48
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - 23.5) ** 2 + (xx - 23.5) ** 2) < 15**2).float().expand(4, 3, size, size).contiguous()
    rotated = TrainAugment(**{**OFF, "rotate_degrees": 10.0}, seed=0)(disc)
    assert 0 < (rotated - disc).abs().mean() < 0.02, "only the resampled edge of the disc changes"


def test_resized_crop_zooms_in():
    x = torch.zeros(4, 3, 40, 40)
    x[:, :, 10:30, 10:30] = 1.0
    out = TrainAugment(**OFF, crop_p=1.0, crop_scale=(0.25, 0.3), crop_ratio=(1.0, 1.0), seed=0)(x)
    assert out.mean() > x.mean(), "a smaller window resized to full size enlarges the bright square"


def test_brightness_scales_each_sample_by_one_factor():
    x = _batch() * 0.5
    out = TrainAugment(**{**OFF, "brightness": 0.2}, seed=0)(x)
    ratios = out / x
    per_sample = ratios.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-5)
    assert ((per_sample[:, 0] >= 0.8 - 1e-6) & (per_sample[:, 0] <= 1.2 + 1e-6)).all()


def test_blur_keeps_constant_images_and_smooths_noise():
    flat = torch.full((3, 3, 24, 24), 0.4)
    blur = TrainAugment(**OFF, blur_p=1.0, blur_sigma=(1.0, 2.0), seed=0)
    assert torch.allclose(blur(flat), flat, atol=1e-6)
    noise = _batch(3, 24)
    assert blur(noise).std() < noise.std() * 0.7


def test_hed_conversion_round_trips_and_follows_the_stain_vectors():
    x = _batch(2, 16).clamp_min(1e-3)
    assert torch.allclose(hed_to_rgb(rgb_to_hed(x)), x, atol=1e-5)
    black = torch.zeros(1, 3, 4, 4)
    assert torch.allclose(hed_to_rgb(rgb_to_hed(black)), black, atol=1e-5)
    haematoxylin = torch.zeros(1, 3, 1, 1)
    haematoxylin[:, 0] = 0.05
    od = -torch.log(hed_to_rgb(haematoxylin)).flatten()
    direction = RGB_FROM_HED[0].float()
    assert torch.allclose(od / od.norm(), direction / direction.norm(), atol=1e-5)


def test_hed_jitter_changes_stained_pixels_only_moderately():
    x = _batch(4, 16) * 0.6 + 0.2
    out = TrainAugment(**OFF, hed_alpha=0.05, hed_beta=0.01, seed=0)(x)
    change = (out - x).abs()
    assert 0 < change.mean() < 0.15


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="N x C x H x W"):
        TrainAugment()(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="square"):
        TrainAugment(rot90=0.5)(torch.rand(2, 3, 8, 12))
    with pytest.raises(ValueError, match="probability"):
        TrainAugment(hflip=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batches_match_cpu():
    x = _batch(8, 64)
    cpu = TrainAugment.paper(seed=5, crop_p=0.5)(x)
    gpu = TrainAugment.paper(seed=5, crop_p=0.5)(x.cuda())
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_flip_rotate_moves_every_tensor_alike_with_a_fixed_stream_of_draws():
    """One outcome per call for all tensors; the draws (hflip < 0.5, vflip < 0.5, 0-3 turns, in that order) are
    the stream the segmenter and the HybridCN-NAS extractor trained with, so their seeded runs repeat."""
    from leuk.data.augment import flip_rotate

    images = _batch(4, 16)
    masks = (images[:, :1] > 0.5).float()
    outcomes = set()
    for seed in range(16):
        generator = torch.Generator().manual_seed(seed)
        out_images, out_masks = flip_rotate(images, masks, generator=generator)
        expected = torch.Generator().manual_seed(seed)
        hflip = torch.rand(1, generator=expected).item() < 0.5
        vflip = torch.rand(1, generator=expected).item() < 0.5
        turns = int(torch.randint(0, 4, (1,), generator=expected))
        want = images.flip(-1) if hflip else images
        want = (want.flip(-2) if vflip else want).rot90(turns, (-2, -1))
        assert torch.equal(out_images, want)
        assert torch.equal(out_masks, (out_images[:, :1] > 0.5).float()), "the mask moved with its image"
        assert torch.equal(generator.get_state(), expected.get_state()), "exactly three draws"
        outcomes.add((hflip, vflip, turns))
    assert len(outcomes) > 4
    assert torch.equal(images, _batch(4, 16)), "the inputs are not modified in place"
