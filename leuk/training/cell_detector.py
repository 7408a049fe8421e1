"""Training the white-cell detector (:mod:`leuk.cell_detector`) on boxed smears at the red-cell scale.

A smear's every white cell is a target (its box centre is a peak of a Gaussian heatmap, its box size is read
there); cells mostly cut away by a crop are neither positive nor negative (weight 0); smudges are background, so the
detector learns not to fire on them (``smudges="ignored"``, the recipe before 2026-12-07's night, left them out of
the loss). The loss is
CenterNet's: the penalty-reduced focal loss on the heatmap and L1 on the log box size at the centres. Each step
sees random crops of the smears, flipped and turned, rescaled by 0.8-1.25 and jittered in hue, saturation and
brightness, so the detector does not learn one lab's colours or one magnification. The threshold on the heatmap
is chosen on the training smears themselves (the count exact on most of them; ties by precision plus recall), never
on the smears it is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from leuk.cell_detector import STRIDE, CellCentreNet, decode, predict_maps, standardise
from leuk.metrics import match_boxes

__all__ = ["BoxedSmear", "DetectorRecipe", "SMUDGE_ROLES", "THRESHOLDS", "choose_threshold", "cut_by_crop", "detection_figures",
           "train_detector"]

#: What a smudge box can be to the heatmap loss (:attr:`DetectorRecipe.smudges`), the shipped recipe's first.
SMUDGE_ROLES = ("background", "ignored")

#: Heatmap thresholds the training smears choose from.
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


@dataclass
class BoxedSmear:
    """A smear at the red-cell scale (uint8 RGB) with its white-cell boxes and smudge boxes (x0, y0, x1, y1)."""

    rgb: np.ndarray
    white: list[tuple[float, float, float, float]]
    smudge: list[tuple[float, float, float, float]]


@dataclass(frozen=True)
class DetectorRecipe:
    """Every setting of a training run (the defaults are the bundled detector's)."""

    steps: int = 1500
    batch: int = 12
    crop: int = 144
    lr: float = 2e-3
    weight_decay: float = 1e-4
    scale_range: tuple[float, float] = (0.8, 1.25)
    #: a cell a crop cuts to less than this share of its box is ignored rather than a target
    keep_visible: float = 0.3
    #: box size unit (px at the working scale): the red-cell diameter there
    size_unit: float = 13.0
    #: what a smudge box is to the heatmap loss: "background" (the detector learns not to fire on it) or "ignored"
    #: (neither cell nor background)
    smudges: str = "background"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.smudges not in SMUDGE_ROLES:
            raise ValueError(f"smudges must be one of {SMUDGE_ROLES}, not {self.smudges!r}")


def _clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def cut_by_crop(boxes: np.ndarray, crop: int, keep_visible: float) -> tuple[np.ndarray, np.ndarray]:
    """``boxes`` (in crop coordinates) cut to a ``crop`` x ``crop`` crop: (targets, ignored). A box that keeps at least
    ``keep_visible`` of its area is a target with its cut box; one cut to less is ignored (neither cell nor
    background); a box wholly outside is dropped."""
    cut = _clip(boxes, crop, crop)
    width, height = (cut[:, 2] - cut[:, 0]).clip(0), (cut[:, 3] - cut[:, 1]).clip(0)
    full = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    visible = width * height >= keep_visible * np.maximum(full, 1e-6)
    return cut[visible], cut[~visible & (width * height > 0)]


def augment(smear: BoxedSmear, recipe: DetectorRecipe, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One training crop: (rgb crop, target boxes, ignored boxes, ignored-pixel mask of the crop)."""
    import cv2

    rgb = smear.rgb
    white = np.asarray(smear.white, np.float32).reshape(-1, 4)
    ignore = np.asarray(smear.smudge if recipe.smudges == "ignored" else [], np.float32).reshape(-1, 4)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
    hsv[..., 1] *= rng.uniform(0.7, 1.3)
    hsv[..., 2] *= rng.uniform(0.85, 1.15)
    rgb = cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    scale = rng.uniform(*recipe.scale_range)
    rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    white, ignore = white * scale, ignore * scale
    height, width = rgb.shape[:2]
    crop = recipe.crop
    pad_y, pad_x = max(0, crop - height), max(0, crop - width)
    void = np.zeros((height + pad_y, width + pad_x), bool)
    if pad_y or pad_x:  # a smear smaller than the crop: the rest is its own median colour, and ignored
        fill = np.median(rgb.reshape(-1, 3), axis=0)
        canvas = np.empty((height + pad_y, width + pad_x, 3), np.uint8)
        canvas[:] = fill.astype(np.uint8)
        canvas[:height, :width] = rgb
        void[height:, :] = True
        void[:, width:] = True
        rgb = canvas
    top = int(rng.integers(0, rgb.shape[0] - crop + 1))
    left = int(rng.integers(0, rgb.shape[1] - crop + 1))
    rgb, void = rgb[top:top + crop, left:left + crop], void[top:top + crop, left:left + crop]
    shift = np.array([left, top, left, top], np.float32)
    white, cut_away = cut_by_crop(white - shift, crop, recipe.keep_visible)
    ignore = np.concatenate([_clip(ignore - shift, crop, crop), cut_away])
    for _ in range(int(rng.integers(4))):  # a quarter turn counter-clockwise: (x, y) -> (y, crop - x)
        rgb, void = np.rot90(rgb), np.rot90(void)
        turn = lambda b: np.stack([b[:, 1], crop - b[:, 2], b[:, 3], crop - b[:, 0]], 1)
        white, ignore = turn(white), turn(ignore)
    if rng.random() < 0.5:
        rgb, void = rgb[:, ::-1], void[:, ::-1]
        flip = lambda b: np.stack([crop - b[:, 2], b[:, 1], crop - b[:, 0], b[:, 3]], 1)
        white, ignore = flip(white), flip(ignore)
    return np.ascontiguousarray(rgb), white, ignore, np.ascontiguousarray(void)


def targets(shape: tuple[int, int], white: np.ndarray, ignore: np.ndarray, void: np.ndarray, size_unit: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(heatmap, weight, log sizes, centre mask) at the output stride for one crop."""
    h, w = shape[0] // STRIDE, shape[1] // STRIDE
    heat = np.zeros((h, w), np.float32)
    weight = np.ones((h, w), np.float32)
    sizes = np.zeros((2, h, w), np.float32)
    centres = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for x0, y0, x1, y1 in white:
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        sigma = max(0.8, min(x1 - x0, y1 - y0) / STRIDE / 6)
        heat = np.maximum(heat, np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2)))
        ix, iy = min(w - 1, int(cx)), min(h - 1, int(cy))
        heat[iy, ix] = 1.0
        sizes[:, iy, ix] = np.log([max(x1 - x0, 1) / size_unit, max(y1 - y0, 1) / size_unit])
        centres[iy, ix] = 1.0
    for x0, y0, x1, y1 in ignore:
        weight[int(y0) // STRIDE:int(np.ceil(y1 / STRIDE)), int(x0) // STRIDE:int(np.ceil(x1 / STRIDE))] = 0
    weight[void[::STRIDE, ::STRIDE][:h, :w]] = 0
    weight[heat > 0.05] = 1
    return heat, weight, sizes, centres


def focal_loss(logits: torch.Tensor, heat: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), per centre."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = heat.eq(1).float()
    pos = torch.log(p) * (1 - p) ** 2 * positive
    neg = torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (1 - positive) * weight
    return -(pos.sum() + neg.sum()) / positive.sum().clamp(min=1)


def train_detector(smears: Sequence[BoxedSmear], recipe: DetectorRecipe = DetectorRecipe(),
                   progress: Callable[[int, float], None] | None = None) -> CellCentreNet:
    """A detector trained on ``smears`` (seeded: the same smears and recipe give the same weights on one machine)."""
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    net = CellCentreNet()
    optimiser = torch.optim.AdamW(net.parameters(), recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, recipe.lr, total_steps=recipe.steps, pct_start=0.1)
    net.train()
    for step in range(recipe.steps):
        batch = [augment(smears[i], recipe, rng) for i in rng.integers(0, len(smears), recipe.batch)]
        maps = [targets(rgb.shape[:2], white, ignore, void, recipe.size_unit) for rgb, white, ignore, void in batch]
        pixels = torch.from_numpy(np.stack([standardise(rgb) for rgb, *_ in batch]))
        heat, weight, sizes, centres = (torch.from_numpy(np.stack(m)) for m in zip(*maps))
        output = net(pixels)
        size_loss = (F.l1_loss(output[:, 1:], sizes, reduction="none").sum(1) * centres).sum() / centres.sum().clamp(min=1)
        loss = focal_loss(output[:, 0], heat, weight) + size_loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(step, loss.item())
    return net.eval()


def detection_figures(rows: Sequence[tuple[int, int, int]]) -> dict[str, float]:
    """Precision, recall and count-exact share of (true, counted, matched) rows, one per smear."""
    table = np.asarray(rows, dtype=float).reshape(-1, 3)
    true, counted, matched = table.sum(axis=0)
    return {"smears": int(len(table)), "precision": round(float(matched / max(counted, 1)), 3),
            "recall": round(float(matched / max(true, 1)), 3),
            "count_exact_share": round(float(np.mean(table[:, 0] == table[:, 1])) if len(table) else 0.0, 3)}


def choose_threshold(net: torch.nn.Module, smears: Sequence[BoxedSmear], size_unit: float,
                     thresholds: Sequence[float] = THRESHOLDS, *, flips: bool = False,
                     scales: Sequence[float] = (1.0,)) -> tuple[float, dict[str, float]]:
    """The threshold under which ``smears`` (the training smears) are counted exactly most often (ties: the higher
    precision plus recall), and its figures there (``flips``, ``scales``: as
    :func:`leuk.cell_detector.predict_maps`)."""
    outputs = [predict_maps(net, smear.rgb, flips=flips, scales=scales) for smear in smears]
    best = None
    for threshold in thresholds:
        rows = []
        for smear, output in zip(smears, outputs):
            boxes = [d.box for d in decode(output, threshold, size_unit, smear.rgb.shape[:2])]
            matched, counted = match_boxes(smear.white, boxes, smear.smudge)
            rows.append((len(smear.white), counted, matched))
        figures = detection_figures(rows)
        key = (figures["count_exact_share"], figures["precision"] + figures["recall"])
        if best is None or key > best[0]:
            best = (key, threshold, figures)
    return best[1], best[2]
