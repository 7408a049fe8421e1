"""Cell segmentation (HybridCN-NAS phase 2): training the Attention U-Net, Dice/IoU, watershed split.

The network (:class:`AttentionUNet`) and the watershed (:func:`split_cells`) live in the standalone Hub file
``leuk/models/hybridcn_nas/segmentation_hybridcn_nas.py`` and are re-exported here; this module adds what
only training needs: the Dice + BCE loss, the training loop and the scores.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from leuk.data.augment import flip_rotate
from leuk.models.hybridcn_nas.segmentation_hybridcn_nas import AttentionUNet, split_cells

__all__ = [
    "AttentionUNet",
    "SegmenterFit",
    "WHITE_CELL_HUE_MAX",
    "WHITE_GROW_HUE_MIN",
    "WHITE_GROW_SATURATION",
    "WHITE_REGION_HUE_MIN",
    "classical_cell_mask",
    "dice_bce_loss",
    "predict_probabilities",
    "segmentation_scores",
    "split_cells",
    "train_segmenter",
]


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss (1 - Dice of the sigmoid), both averaged over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probabilities = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    intersection = (probabilities * target).sum(dim=1)
    dice = (2 * intersection + smooth) / (probabilities.sum(dim=1) + target.sum(dim=1) + smooth)
    return bce + (1 - dice).mean()


#: Highest OpenCV hue (0-179) of a white cell for :func:`classical_cell_mask` (``hue_max``): the white-cell regions
#: of the 104 box-reference Aria smears lie at hue 119-140 (1st-99th percentile), the pink red cells of the bundled
#: Wright-style samples at 143-184; 145 left every Aria detection figure unchanged (``docs/benchmarks.md``).
WHITE_CELL_HUE_MAX = 145
#: Lowest median hue of a region :func:`classical_cell_mask` keeps when asked (``min_region_hue``): the violet rule
#: starts at hue 115, and the grey-blue red cells of some pale smears reach just over it, so that whole sheets of
#: them passed as white cells (17 of the 109 false detections on the 80 mask-review smears of the box reference,
#: all from 6 pale smears, mostly at the picture's border; median hue 115-116). A white cell is violet throughout:
#: no matched white cell there has a median hue below 117, and dropping the regions below it removed those 17 and
#: no true cell (``bench/bench_smear_cells.py``; issue 27).
WHITE_REGION_HUE_MIN = 117
#: Growing the white cells into their paler parts (``grow_hue_min`` of :func:`classical_cell_mask`, hysteresis): the
#: pale cytoplasm of large patchy cells sits under the saturation threshold, so the mask held only a piece of such a
#: cell (a box at IoU 0.2-0.5 with the cell, a false detection and a miss at once: 18 of the 46 near misses on the 80
#: mask-review smears of the box reference, Benign-312 alone 6). Pixels at least this violet (OpenCV hue >= 128; the
#: red cells' 90th percentile is 120) and more saturated than :data:`WHITE_GROW_SATURATION` times the threshold join
#: the mask where they connect to it (pink pixels do not grow it: the edges of the pink red cells of a Wright-style
#: smear blur to violet). On those 80 smears precision 0.903 -> 0.901, recall 0.892 -> 0.903, count exact 41% -> 45%
#: (hue 127-130 and 0.5-0.6 all gave R 0.894-0.903, P 0.893-0.904; 0.5 grew the bundled sample ``Early_1`` into
#: two more red cells); on the 24 held-out ones P 0.893 -> 0.897, R 0.861 -> 0.868, count exact 29% -> 46%
#: (``bench/bench_smear_cells.py``; issue 27).
WHITE_GROW_HUE_MIN = 128
WHITE_GROW_SATURATION = 0.6


def classical_cell_mask(rgb: np.ndarray, *, min_area_fraction: float = 0.003, min_area: float | None = None,
                        hue_max: int | None = None, min_region_hue: float | None = None,
                        grow_hue_min: int | None = None, grow_saturation: float = WHITE_GROW_SATURATION) -> np.ndarray:
    """White cells of a May-Gruenwald-Giemsa smear found by colour alone (bool mask, same height/width).

    Stained white cells are saturated violet to pink; red cells are pale grey-blue and the background is
    near white. A pixel is cell when it is violet (OpenCV hue 115-179) and more saturated than the image's
    Otsu threshold (at least 70 of 255), or pink (hue >= 135 or <= 5) with saturation above 35, which keeps
    the pale pink blasts of some smears. Small specks are opened away, gaps closed, holes filled, and
    components smaller than ``min_area_fraction`` of the image (or than ``min_area`` pixels, when given) dropped.
    It makes candidate and pseudo masks for real smears that have no expert masks, and finds the white cells of
    smear mode at the red-cell scale; it knows nothing about cell classes. ``hue_max`` (e.g.
    :data:`WHITE_CELL_HUE_MAX`) drops redder hues from both rules, so that the pink red cells of Wright-stained
    smears are not taken for cells; ``None`` keeps the rule as the reference masks and pseudo-masks were made.
    ``min_region_hue`` (e.g. :data:`WHITE_REGION_HUE_MIN`) drops a whole region whose median hue is below it: red
    cells at the blue edge of the violet rule rather than a violet white cell. ``grow_hue_min`` (e.g.
    :data:`WHITE_GROW_HUE_MIN`) grows the mask by hysteresis into the paler parts of its cells: pixels of at least
    that hue and ``grow_saturation`` times the violet threshold join where they connect to it.
    """
    import cv2

    rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3])
    hsv = cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2HSV)
    hue, saturation = hsv[..., 0].astype(np.int16), hsv[..., 1]
    otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    violet = (hue >= 115) & (saturation > max(otsu, 70))
    pink = ((hue >= 135) | (hue <= 5)) & (saturation > 35)
    if hue_max is not None:
        violet &= hue <= hue_max
        pink &= (hue >= 135) & (hue <= hue_max)
    mask = (violet | pink).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    if grow_hue_min is not None:
        mask = _grow(mask, ((hue >= grow_hue_min) & (hue <= (179 if hue_max is None else hue_max))
                                           & (saturation > grow_saturation * max(otsu, 70))))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    smallest = min_area_fraction * mask.size if min_area is None else float(min_area)
    kept = [c for c in contours if cv2.contourArea(c) >= smallest]
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, kept, -1, 1, thickness=-1)
    if min_region_hue is not None and kept:
        count, labels = cv2.connectedComponents(filled)
        for label in range(1, count):
            region = labels == label
            if np.median(hue[region]) < min_region_hue:
                filled[region] = 0
    return filled.astype(bool)


def _grow(mask: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """``mask`` (uint8 0/255) with the components of ``weak`` (bool, specks opened away) that touch it, closed."""
    import cv2
    from scipy import ndimage

    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    weak = (cv2.morphologyEx(weak.astype(np.uint8), cv2.MORPH_OPEN, ellipse) > 0) | (mask > 0)
    labels, count = ndimage.label(weak)
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[mask > 0])] = True
    keep[0] = False
    grown = keep[labels].astype(np.uint8) * 255
    return cv2.morphologyEx(grown, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))


def segmentation_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice and IoU of binary masks (N, H, W): the mean over images and the pooled (all pixels) value.

    An image where both masks are empty scores 1.
    """
    predicted = np.asarray(predicted, dtype=bool).reshape(len(predicted), -1)
    truth = np.asarray(truth, dtype=bool).reshape(len(truth), -1)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted masks {predicted.shape} and true masks {truth.shape} differ")
    intersection = (predicted & truth).sum(axis=1).astype(np.float64)
    sizes = predicted.sum(axis=1) + truth.sum(axis=1)
    union = (predicted | truth).sum(axis=1).astype(np.float64)
    empty = sizes == 0
    dice = np.where(empty, 1.0, 2 * intersection / np.maximum(sizes, 1))
    iou = np.where(empty, 1.0, intersection / np.maximum(union, 1))
    return {
        "dice": float(dice.mean()),
        "iou": float(iou.mean()),
        "dice_pooled": float(2 * intersection.sum() / max(sizes.sum(), 1)),
        "iou_pooled": float(intersection.sum() / max(union.sum(), 1)),
        "n": int(len(dice)),
    }


@torch.no_grad()
def predict_probabilities(model: AttentionUNet, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Sigmoid probabilities (N, 1, H, W) of float images (N, 3, H, W) in [0, 1], in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = [torch.sigmoid(model(images[i:i + batch_size].to(device))).cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, 1, *images.shape[-2:])


@dataclass
class SegmenterFit:
    """Result of :func:`train_segmenter`: the best epoch (by validation Dice) and the history."""

    best_epoch: int
    best_val_dice: float
    history: list[dict] = field(default_factory=list)


def train_segmenter(
    model: AttentionUNet,
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    val_images: Optional[torch.Tensor] = None,
    val_masks: Optional[torch.Tensor] = None,
    epochs: int = 30,
    batch_size: int = 8,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    threshold: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> SegmenterFit:
    """Train ``model`` in place with Dice + BCE on float images (N, 3, H, W) in [0, 1] and masks (N, 1, H, W).

    AdamW with a cosine schedule; flips and quarter turns as augmentation. With validation data the
    weights of the epoch with the best validation Dice are restored at the end.
    """
    if len(images) == 0:
        raise ValueError("no training images for the segmenter")
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(images) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(epochs * steps_per_epoch, 1), pct_start=0.15
    )
    best_state, best_dice, best_epoch = None, -1.0, -1
    history: list[dict] = []
    bar = tqdm(range(epochs), desc="segmenter", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), batch_size):
            batch = order[start:start + batch_size]
            if len(batch) < 2 and len(images) > 1:  # BatchNorm needs two samples
                continue
            x, y = flip_rotate(images[batch], masks[batch], generator=generator)
            loss = dice_bce_loss(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(batch)
        record = {"epoch": epoch, "loss": total / len(images)}
        if val_images is not None and len(val_images):
            predicted = predict_probabilities(model, val_images) > threshold
            record["val_dice"] = segmentation_scores(predicted[:, 0].numpy(), val_masks[:, 0].numpy() > 0.5)["dice"]
            if record["val_dice"] > best_dice:
                best_dice, best_epoch = record["val_dice"], epoch
                best_state = copy.deepcopy(model.state_dict())
        history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epochs - 1
    model.eval()
    return SegmenterFit(best_epoch=best_epoch, best_val_dice=float(best_dice), history=history)
