"""The data of a HybridCN-NAS run: the rows of an Aria folder, cell masks, the uint8 pixel bank, the stain target."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from leuk.errors import LeukError

__all__ = ["AriaTable", "PixelBank", "fit_stain_target", "load_table", "read_mask"]


@dataclass
class AriaTable:
    """The rows of an Aria-layout dataset folder."""

    root: Path
    paths: list[str]
    labels: np.ndarray
    groups: np.ndarray
    mask_paths: list[Optional[str]]
    label_names: list[str]
    patient_level: bool

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path, label, group in zip(self.paths, self.labels.tolist(), self.groups.tolist()):
            digest.update(f"{Path(path).relative_to(self.root).as_posix()}\t{label}\t{group}\n".encode())
        return digest.hexdigest()[:16]


def load_table(data_dir: str | Path, patients_csv: str | Path | None = None) -> AriaTable:
    """Rows of an Aria folder via :func:`leuk.data.load_aria` (paths, labels, patients, mask paths)."""
    import warnings

    from leuk.data import load_aria

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        dataset = load_aria(data_dir, patients_csv)
    for warning in caught:
        warnings.warn(warning.message, warning.category, stacklevel=2)
    table = dataset.select_columns(["path", "label", "patient_id", "mask"])
    groups = np.asarray([str(p) for p in table["patient_id"]])
    return AriaTable(
        root=Path(data_dir).expanduser().resolve(),
        paths=[str(Path(p).resolve()) for p in table["path"]],
        labels=np.asarray(table["label"], dtype=np.int64),
        groups=groups,
        mask_paths=list(table["mask"]),
        label_names=list(dataset.features["label"].names),
        patient_level=not all(g.startswith("image:") for g in groups),
    )


def _weak_mask_path(image_path: str) -> Optional[Path]:
    parts = list(Path(image_path).parts)
    if "Original" not in parts:
        return None
    parts[len(parts) - 1 - parts[::-1].index("Original")] = "Segmented"
    candidate = Path(*parts)
    return candidate if candidate.is_file() else None


def read_mask(mask_path: Optional[str], image_path: str, size: int) -> np.ndarray:
    """The cell mask of an image at ``size x size`` (bool): ``Masks/`` when present, else a weak mask from
    the ``Segmented/`` copy (cells on a white background: pixels darker than near-white)."""
    import cv2

    from leuk.io import read_image

    if mask_path:
        mask = np.asarray(read_image(mask_path, mode="L"), dtype=np.float32) / 255.0
    else:
        segmented = _weak_mask_path(image_path)
        if segmented is None:
            raise LeukError(
                f"no cell mask for {Path(image_path).name}: the segmenter needs Masks/<class>/<name>.png or a "
                "Segmented/ copy of the image (or train with use_segmenter=False)"
            )
        rgb = np.asarray(read_image(segmented), dtype=np.uint8)
        mask = cv2.morphologyEx((rgb.min(axis=2) < 235).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = mask.astype(np.float32)
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) > 0.5


class PixelBank:
    """uint8 images (N, H, W, 3) kept as they are and served as float batches (n, 3, H, W) in [0, 1]
    (``bank[rows]`` or ``bank[start:stop]``), so a whole dataset never sits in memory as float32."""

    def __init__(self, images: np.ndarray):
        import torch

        self.images = torch.from_numpy(np.ascontiguousarray(images))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, height, width, channels = self.images.shape
        return n, channels, height, width

    def __getitem__(self, rows):
        import torch

        if isinstance(rows, np.ndarray):
            rows = torch.from_numpy(rows)
        return self.images[rows].permute(0, 3, 1, 2).float().div_(255.0)


def fit_stain_target(images: np.ndarray, color_space: str = "lab") -> tuple[list[float], list[float]]:
    """Reinhard target: the mean over ``images`` (uint8 N x H x W x 3) of their per-channel means and stds."""
    from leuk.preprocess import stain_statistics

    if len(images) == 0:
        raise LeukError("no training images to fit the stain target on")
    stats = [stain_statistics(image, color_space) for image in images]
    means = np.mean([m for m, _ in stats], axis=0)
    stds = np.mean([s for _, s in stats], axis=0)
    return [float(v) for v in means], [float(v) for v in stds]
