"""Protocols for the Aria ALL set, which records no patient ids: image-level folds and file-number blocks.

Aria's images of one patient share a smear session, and neighbouring file numbers tend to come from the
same session. The paper's protocol (stratified image-level folds) puts images of one patient on both sides
of every split, so its figure measures how alike a patient's images are as much as skill. The stricter
proxy keeps contiguous blocks of file numbers together (``block`` groups); the gap between the two figures
estimates how much patient overlap inflates the first.

:func:`prepare_aria_workspace` lays out an Aria folder for the staged engine with classical pseudo-masks
(``Masks/``) and the block map (``blocks.csv``, the ``patients.csv`` format); :func:`protocol_folds` draws
the folds of either protocol.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from leuk.errors import LeukError

__all__ = [
    "BLOCK_SIZE",
    "PROTOCOLS",
    "ProtocolFold",
    "file_number",
    "file_number_blocks",
    "prepare_aria_workspace",
    "protocol_folds",
    "reference_mask_path",
    "imagenet_features",
    "train_imagenet_head",
    "train_plain_cnn",
]

#: file numbers per block: about 10 blocks for the smallest class (Benign) of the release
BLOCK_SIZE = 50
PROTOCOLS = {
    "image": "stratified image-level folds (the paper's protocol; patients on both sides)",
    "block": f"folds of contiguous file-number blocks ({BLOCK_SIZE} numbers; a stricter proxy for patients)",
}
BLOCKS_FILE = "blocks.csv"
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def file_number(name: str) -> int:
    """The last run of digits in a file name (``WBC-Malignant-Pre-639.jpg`` -> 639)."""
    match = _NUMBER.search(Path(name).stem)
    if match is None:
        raise LeukError(f"{name} has no file number; the block protocol needs numbered Aria file names")
    return int(match.group(1))


def file_number_blocks(paths: Sequence[str], labels: Sequence[str] | np.ndarray,
                       block_size: int = BLOCK_SIZE) -> np.ndarray:
    """Group ids ``<class>:<first number of the block>``: the same class and the same block of file numbers."""
    return np.asarray([f"{label}:{file_number(path) // block_size * block_size:04d}"
                       for path, label in zip(paths, labels)])


def reference_mask_path(root: str | Path, image: str) -> Path:
    """Where the reviewed mask of ``image`` (``<class>/<file>`` of an Aria folder) lies under ``root``
    (``assets/aria_reference``): ``masks/<class>/mask-<file number>.png``. The name carries no Aria file
    name, so no tracked file looks like an Aria image."""
    label, name = image.split("/")
    return Path(root) / "masks" / label / f"mask-{file_number(name):03d}.png"


@dataclass(frozen=True)
class ProtocolFold:
    """Row indices of one fold: train, validation (from the training groups) and test."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def protocol_folds(labels: np.ndarray, groups: np.ndarray, *, n_folds: int = 5, val_size: float = 0.15,
                   seed: int = 0) -> list[ProtocolFold]:
    """Stratified grouped folds: each group is tested exactly once; validation rows are drawn from the
    remaining groups of each fold (grouped and stratified), never from the test fold.

    With one image per group this is the paper's stratified image-level k-fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if len(np.unique(groups)) < n_folds:
        raise LeukError(f"{len(np.unique(groups))} groups cannot make {n_folds} folds")
    outer = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for index, (rest, test) in enumerate(outer.split(np.zeros(len(labels)), labels, groups)):
        inner_splits = max(2, round(1 / val_size))
        inner = StratifiedGroupKFold(n_splits=inner_splits, shuffle=True, random_state=seed + 1 + index)
        train_part, val_part = next(inner.split(np.zeros(len(rest)), labels[rest], groups[rest]))
        folds.append(ProtocolFold(index, np.sort(rest[train_part]), np.sort(rest[val_part]), np.sort(test)))
    return folds


def prepare_aria_workspace(data: str | Path, workspace: str | Path, *, exclude: Iterable[str] = (),
                           block_size: int = BLOCK_SIZE, progress: bool = True) -> Path:
    """An Aria-layout folder under ``workspace`` for the staged engine: ``Original/<class>/`` holds copies of the
    images of ``data`` (minus ``exclude``, as ``<class>/<file>``), ``Masks/<class>/<stem>.png`` holds
    classical pseudo-masks (:func:`leuk.segmentation.classical_cell_mask`; no class label is used) and
    ``blocks.csv`` maps every image to its file-number block. Existing masks are kept."""
    from PIL import Image
    from tqdm.auto import tqdm

    from leuk.io import read_image
    from leuk.segmentation import classical_cell_mask

    source = Path(data).expanduser().resolve()
    source = source / "Original" if (source / "Original").is_dir() else source
    root = Path(workspace) / "aria"
    excluded = set(exclude)
    rows = []
    files = [path for label in ("Benign", "Early", "Pre", "Pro") for path in sorted((source / label).glob("*"))
             if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")]
    if not files:
        raise LeukError(f"no Aria images under {source}/<Benign|Early|Pre|Pro>/")
    for path in tqdm(files, desc="pseudo-masks", disable=not progress):
        relative = f"{path.parent.name}/{path.name}"
        if relative in excluded:
            (root / "Original" / relative).unlink(missing_ok=True)
            continue
        copy = root / "Original" / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not copy.exists():  # a copy, not a link: the engine resolves paths and keys rows by them
            shutil.copyfile(path, copy)
        mask = root / "Masks" / path.parent.name / f"{path.stem}.png"
        if not mask.is_file():
            mask.parent.mkdir(parents=True, exist_ok=True)
            pixels = classical_cell_mask(np.asarray(read_image(path), dtype=np.uint8))
            Image.fromarray(pixels.astype(np.uint8) * 255).convert("1").save(mask)
        rows.append((f"Original/{relative}", path.parent.name))
    blocks = file_number_blocks([r[0] for r in rows], [r[1] for r in rows], block_size)
    with open(root / BLOCKS_FILE, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient_id", "label"])
        writer.writerows((image, block, label) for (image, label), block in zip(rows, blocks))
    return root


# ---- cross-validation under both protocols -----------------------------------------------------------
SUMMARY_METRICS = ("accuracy", "f1_macro", "f1_weighted", "roc_auc")


def fold_record(model: str, protocol: str, fold: ProtocolFold, labels: np.ndarray, probabilities: np.ndarray,
                label_names: Sequence[str], seconds: float, **extra) -> dict:
    """One fold's figures on its test rows (``leuk.metrics.classification_metrics``)."""
    from leuk.metrics import classification_metrics

    metrics = classification_metrics(labels[fold.test], probabilities, label_names)
    return {"model": model, "protocol": protocol, "fold": fold.index, "n_train": int(len(fold.train)),
            "n_val": int(len(fold.val)), "n_test": int(len(fold.test)), "seconds": round(seconds, 1),
            **{key: metrics.get(key) for key in SUMMARY_METRICS}, **extra}


def summarise_folds(records: Sequence[dict]) -> dict:
    """``{protocol: {model: {metric: {mean, sd, min, max}}}}`` over folds (sd with ``ddof=1``)."""
    summary: dict = {}
    for record in records:
        summary.setdefault(record["protocol"], {}).setdefault(record["model"], []).append(record)
    for protocol, by_model in summary.items():
        for model, rows in by_model.items():
            figures = {"n_folds": len(rows)}
            for key in SUMMARY_METRICS:
                values = np.asarray([row[key] for row in rows if row.get(key) is not None], dtype=np.float64)
                if len(values):
                    figures[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1
                                    else 0.0, "min": float(values.min()), "max": float(values.max())}
            by_model[model] = figures
    if "image" in summary and "block" in summary:
        summary["gap_image_minus_block"] = {
            model: {key: summary["image"][model][key]["mean"] - summary["block"][model][key]["mean"]
                    for key in ("accuracy", "f1_macro") if key in summary["image"][model]
                    and key in summary["block"].get(model, {})}
            for model in summary["image"] if model in summary["block"]}
    return summary


class PlainCNN:
    """Factory of the baseline: four conv-BN-ReLU-max-pool blocks, global average pooling, a linear layer.

    Nothing from HybridCN-NAS (no stain normalisation, segmentation, feature selection or attention), so
    the hybrid's figure beside it shows what its four phases add.
    """

    def __new__(cls, n_labels: int, widths: Sequence[int] = (16, 32, 64, 128)):
        from torch import nn

        layers, channels = [], 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                             nn.Linear(channels, n_labels))


def train_plain_cnn(images: np.ndarray, labels: np.ndarray, fold: ProtocolFold, n_labels: int, *,
                    image_size: int = 64, epochs: int = 12, batch_size: int = 32, lr: float = 3e-3,
                    seed: int = 0, model: Any = None) -> np.ndarray:
    """Train :class:`PlainCNN` (or ``model``, any module from images to ``n_labels`` logits) from scratch on
    ``fold.train`` (flips and quarter turns, class weights, one-cycle AdamW), keep the epoch with the lowest
    validation loss and return the test rows' softmax."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if pixels.shape[-1] != image_size:
        pixels = F.interpolate(pixels, size=(image_size, image_size), mode="area")
    pixels = (pixels - pixels[fold.train].mean(dim=(0, 2, 3), keepdim=True)) / pixels[fold.train].std(
        dim=(0, 2, 3), keepdim=True)
    model = PlainCNN(n_labels) if model is None else model

    def inputs(rows: np.ndarray, draw: tuple[bool, int]) -> Any:
        batch = pixels[rows].flip(-1) if draw[0] else pixels[rows]
        return torch.rot90(batch, draw[1], dims=(-2, -1))

    return _fit_classifier(model, inputs, labels, fold, n_labels, epochs=epochs, batch_size=batch_size, lr=lr,
                           seed=seed)


def _fit_classifier(model: Any, inputs: Any, labels: np.ndarray, fold: ProtocolFold, n_labels: int, *,
                    epochs: int, batch_size: int, lr: float, seed: int) -> np.ndarray:
    """The baselines' one training loop: ``model`` on ``inputs(rows, (flip, quarter turns))`` of ``fold.train``
    (one draw of :data:`PLAIN_DRAWS` per batch; ``(False, 0)`` to evaluate), class weights, one-cycle AdamW, the
    epoch with the lowest validation loss; returns the test rows' softmax."""
    import copy

    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    counts = torch.bincount(targets[fold.train], minlength=n_labels).float()
    weights = counts.sum() / counts.clamp(min=1) / n_labels
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    steps = max(len(fold.train) // batch_size, 1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps, pct_start=0.2)

    def predict(rows: np.ndarray) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(inputs(rows[i:i + 256], (False, 0))) for i in range(0, len(rows), 256)])

    best_loss, best_state = float("inf"), None
    for _ in range(epochs):
        model.train()
        order = fold.train[torch.randperm(len(fold.train), generator=generator).numpy()]
        for step in range(steps):
            rows = order[step * batch_size:(step + 1) * batch_size]
            flip = torch.rand(1, generator=generator).item() < 0.5
            turns = int(torch.randint(4, (1,), generator=generator))
            loss = F.cross_entropy(model(inputs(rows, (flip, turns))), targets[rows], weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if len(fold.val):
            val_loss = float(F.cross_entropy(predict(fold.val), targets[fold.val]))
            if val_loss < best_loss:
                best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return torch.softmax(predict(fold.test), dim=1).numpy().astype(np.float64)


#: the quarter turns and flips :func:`train_plain_cnn` draws (a horizontal flip or not, then 0-3 turns)
PLAIN_DRAWS = tuple((flip, turns) for flip in (False, True) for turns in range(4))


def imagenet_features(images: np.ndarray, *, backbone: str = "tf_efficientnet_lite0", image_size: int = 64,
                      source: str = "auto", batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """``(8, N, D)`` float32: the pooled features of a frozen ImageNet ``backbone`` (timm; weights through
    :func:`leuk.models.pretrained.load_backbone_weights`) for uint8 RGB ``images`` at ``image_size`` px,
    normalised as the checkpoint expects, under each of :data:`PLAIN_DRAWS` (the baseline's augmentation)."""
    import timm
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from leuk.models.pretrained import load_backbone_weights

    network = timm.create_model(backbone, pretrained=False, num_classes=0)
    load_backbone_weights(network, backbone, source=source,
                          create_backbone=lambda pretrained: timm.create_model(backbone, pretrained=pretrained,
                                                                              num_classes=0))
    network.eval()
    config = network.pretrained_cfg or {}
    mean = torch.tensor(config.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(config.get("std", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if pixels.shape[-1] != image_size:
        pixels = F.interpolate(pixels, size=(image_size, image_size), mode="area")
    pixels = (pixels - mean) / std
    out = []
    with torch.no_grad():
        for flip, turns in tqdm(PLAIN_DRAWS, desc=f"{backbone} features", disable=not progress):
            variant = pixels.flip(-1) if flip else pixels
            variant = torch.rot90(variant, turns, dims=(-2, -1))
            out.append(torch.cat([network(variant[i:i + batch_size]) for i in range(0, len(variant), batch_size)]))
    return torch.stack(out).numpy().astype(np.float32)


def train_imagenet_head(features: np.ndarray, labels: np.ndarray, fold: ProtocolFold, n_labels: int, *,
                        epochs: int = 30, batch_size: int = 32, lr: float = 3e-3, seed: int = 0) -> np.ndarray:
    """The pretrained baseline's classifier: dropout and a linear layer on the frozen backbone's pooled
    ``features`` (:func:`imagenet_features`), trained as :func:`train_plain_cnn` trains the plain CNN (the same
    draws of flips and turns, class weights, one-cycle AdamW, the epoch with the lowest validation loss);
    returns the test rows' softmax."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    bank = torch.from_numpy(features)
    model = nn.Sequential(nn.Dropout(0.2), nn.Linear(bank.shape[-1], n_labels))
    return _fit_classifier(model, lambda rows, draw: bank[PLAIN_DRAWS.index(draw)][rows], labels, fold, n_labels,
                           epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)


#: stage files that are the same in every fold (given a fixed stain target and the shared U-Net)
SHARED_STAGE_FILES = ("stain.json", "images.npy", "preprocessed.npy", "segmenter.pt", "segmenter.json",
                      "frozen_branch_a.npy", "frozen_branch_b.npy")


def cross_validate_hybrid(table, options, folds: Sequence[ProtocolFold], protocol: str, work_dir: str | Path, *,
                          stain_target: dict, shared_from: str | Path | None = None,
                          progress: bool = True, model_name: str = "HybridCN-NAS lite") -> list[dict]:
    """Every fold of HybridCN-NAS with the staged engine: segmenter, extractor, z-score + mRMR, classifier
    and temperature fitted on the fold's training (and validation) rows, scored once on its test rows.

    ``stain_target`` (``{"color_space", "means", "stds", "fitted_on"}``) is the Reinhard target of every fold;
    it must come from images outside ``table`` (so no test row informs it), which also makes the
    preprocessed images the same in every fold: they are computed once and linked into the other folds.

    The U-Net learns pseudo-masks, never class labels, and costs most of a fold on a CPU, so one U-Net,
    trained on the training rows of the first fold run (``shared_from``, default the first of ``folds``), is
    linked into every other fold: a test fold's labels reach no stage, its pixels may have reached the U-Net.
    """
    import os
    import time
    from dataclasses import replace

    from leuk.data.splits import Split
    from leuk.metrics import softmax
    from leuk.training.hybridcn_nas import StageCache, fit_head, run_feature_stages

    work_dir = Path(work_dir)
    records = []
    first = StageCache(shared_from) if shared_from is not None else None
    for fold in folds:
        started = time.perf_counter()
        cache = StageCache(work_dir / f"{protocol}-fold{fold.index}")
        if not cache.has("stain.json"):
            cache.save_json("stain.json", stain_target)
        if first is not None and first.folder != cache.folder:
            for name in SHARED_STAGE_FILES[1:]:
                if first.has(name) and not cache.has(name):
                    os.link(first.path(name), cache.path(name))
        split = Split(fold.train, fold.val, fold.test, protocol=protocol)
        stages = run_feature_stages(table, replace(options, progress=progress), cache.folder, split=split)
        first = first or cache
        head = fit_head(stages.features, table.labels, stages.split, stages.model.config, options)
        logits = head.logits(stages.features[fold.test])
        probabilities = softmax(logits)
        segmenter = stages.reports.get("segmenter", {})
        records.append(fold_record(model_name, protocol, fold, table.labels, probabilities,
                                   table.label_names, time.perf_counter() - started,
                                   segmenter_test_dice=(segmenter.get("test") or {}).get("dice"),
                                   selected_features=int(len(head.selection.indices))))
    return records
