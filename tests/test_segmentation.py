"""HybridCN-NAS phase 2 (leuk.segmentation): Attention U-Net training, Dice/IoU, watershed split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, jaccard_score

from leuk.segmentation import (
    AttentionUNet,
    dice_bce_loss,
    predict_probabilities,
    segmentation_scores,
    split_cells,
    train_segmenter,
)

SIZE = 48


def disc_scene(rng: np.random.Generator, centres, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Purple discs on a light, noisy background: (uint8 RGB image, bool mask)."""
    rows, cols = np.mgrid[:SIZE, :SIZE]
    mask = np.zeros((SIZE, SIZE), bool)
    for cy, cx in centres:
        mask |= (rows - cy) ** 2 + (cols - cx) ** 2 < radius**2
    image = np.where(mask[..., None], [110.0, 60.0, 160.0], [228.0, 215.0, 222.0]) + rng.normal(0, 8, (SIZE, SIZE, 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def touching_pair(rng: np.random.Generator, radius: float = 9.0):
    cy, cx = rng.uniform(14, SIZE - 14, 2)
    angle = rng.uniform(0, np.pi)
    dy, dx = np.sin(angle) * radius * 0.92, np.cos(angle) * radius * 0.92
    return disc_scene(rng, [(cy - dy, cx - dx), (cy + dy, cx + dx)], radius)


def as_tensors(scenes):
    images = torch.tensor(np.stack([s[0] for s in scenes])).permute(0, 3, 1, 2).float() / 255
    masks = torch.tensor(np.stack([s[1] for s in scenes])).unsqueeze(1).float()
    return images, masks


def test_watershed_splits_two_touching_discs() -> None:
    image, mask = touching_pair(np.random.default_rng(0))
    labels, cells = split_cells(mask, image)
    assert len(cells) == 2
    assert labels.max() == 2 and set(np.unique(labels[mask])) <= {0, 1, 2}
    assert sum(c["area"] for c in cells) >= 0.95 * mask.sum()  # only the watershed line is lost
    for cell in cells:
        x0, y0, x1, y1 = cell["box"]
        cx, cy = cell["centroid"]
        assert x0 <= cx < x1 and y0 <= cy < y1


def test_watershed_keeps_separate_cells_and_drops_specks() -> None:
    _, mask = disc_scene(np.random.default_rng(1), [(12, 12), (34, 34)], 7)
    mask[1:3, 44:46] = True
    labels, cells = split_cells(mask, None, min_area=10)
    assert len(cells) == 2 and labels[1, 44] == 0
    assert split_cells(np.zeros((8, 8), bool))[1] == []


def test_scores_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    truth = rng.random((3, 16, 16)) > 0.6
    predicted = truth ^ (rng.random((3, 16, 16)) > 0.85)
    scores = segmentation_scores(predicted, truth)
    assert scores["dice_pooled"] == pytest.approx(f1_score(truth.ravel(), predicted.ravel()))
    assert scores["iou_pooled"] == pytest.approx(jaccard_score(truth.ravel(), predicted.ravel()))
    per_image = [f1_score(t.ravel(), p.ravel()) for t, p in zip(truth, predicted)]
    assert scores["dice"] == pytest.approx(np.mean(per_image))
    assert segmentation_scores(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))["dice"] == 1.0


def test_dice_bce_loss() -> None:
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    confident = (target * 2 - 1) * 20
    assert float(dice_bce_loss(confident, target)) < 1e-3
    logits = torch.randn(2, 1, 8, 8)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert float(dice_bce_loss(logits, target)) > float(bce)


def test_attention_unet_learns_discs_and_watershed_splits_its_mask() -> None:
    rng = np.random.default_rng(3)
    scenes = []
    for _ in range(40):
        if rng.random() < 0.5:
            scenes.append(touching_pair(rng, radius=rng.uniform(7, 10)))
        else:
            centres = rng.uniform(8, SIZE - 8, (int(rng.integers(1, 4)), 2))
            scenes.append(disc_scene(rng, centres, rng.uniform(5, 9)))
    images, masks = as_tensors(scenes)
    torch.manual_seed(0)
    model = AttentionUNet((8, 16, 32))
    fit = train_segmenter(model, images[:32], masks[:32], val_images=images[32:], val_masks=masks[32:],
                          epochs=12, batch_size=8, lr=1e-2, progress=False)
    assert fit.best_val_dice > 0.9

    image, mask = touching_pair(np.random.default_rng(4))
    probability = predict_probabilities(model, as_tensors([(image, mask)])[0])[0, 0].numpy()
    predicted = probability > 0.5
    assert segmentation_scores(predicted[None], mask[None])["dice"] > 0.9
    _, cells = split_cells(predicted, image, min_area=20)
    assert len(cells) == 2


def discs_in_a_row(count: int, radius: float = 30.0, gap: float = 0.92) -> np.ndarray:
    """``count`` equal discs whose centres lie on a slanted line, each touching the next (centres
    ``2 * gap * radius`` apart), on a canvas with room around them so that the background is wide."""
    step = 2 * gap * radius
    side = int(2 * radius + step * (count - 1) + 40)
    rows, cols = np.mgrid[:side, :side]
    mask = np.zeros((side, side), bool)
    for i in range(count):
        cx, cy = 20 + radius + i * step * 0.9, side / 2 + (i - (count - 1) / 2) * step * 0.44
        mask |= (rows - cy) ** 2 + (cols - cx) ** 2 < radius**2
    return mask


@pytest.mark.parametrize("with_image", [False, True], ids=["distance", "image"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_watershed_splits_equal_touching_discs_into_equal_regions(count: int, with_image: bool) -> None:
    """The flood stays inside the mask: equal touching discs give equal regions (within 5%), whatever the
    background round them, and a lone disc stays one region."""
    mask = discs_in_a_row(count)
    image = None
    if with_image:
        rng = np.random.default_rng(count)
        noisy = np.where(mask[..., None], [110.0, 60.0, 160.0], [228.0, 215.0, 222.0])
        image = np.clip(noisy + rng.normal(0, 8, mask.shape + (3,)), 0, 255).astype(np.uint8)
    labels, cells = split_cells(mask, image)
    assert len(cells) == count and labels.max() == count
    assert not labels[~mask].any()
    areas = [c["area"] for c in cells]
    assert max(areas) <= 1.05 * min(areas), areas
    assert sum(areas) >= 0.98 * mask.sum()
