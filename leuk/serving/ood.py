"""A simple, documented "unlike the training data" score from image statistics.

Each image is reduced (on a thumbnail of at most 128 px) to ten numbers in [0, 1]: the mean and standard deviation of
R, G and B, the fraction of near-black pixels (C-NMC cells sit on black), the fraction of near-white pixels
(smear background), the mean HSV saturation and the mean gradient magnitude (texture/sharpness).
A reference set of images that look like the training data gives each number a mean and a standard deviation
(floored at :data:`STD_FLOOR`, since reference sets are small); an image's score is its largest absolute
z-score. Scores above :data:`OOD_THRESHOLD` flag the image as out of distribution: a photo, a screenshot,
a different stain or magnification. This catches gross mismatches only; it is no guarantee of the opposite.

The reference comes from ``image_statistics.json`` in the model folder when present (written from the training
images), else from the bundled sample images of the model's task (``assets/samples/<task>/``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

STAT_NAMES = (
    "mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b",
    "dark_fraction", "bright_fraction", "saturation", "gradient",
)
#: Smallest standard deviation used for a statistic (all statistics lie in [0, 1]).
STD_FLOOR = 0.04
#: Largest absolute z-score an in-distribution image is expected to reach.
OOD_THRESHOLD = 5.0
#: File name of precomputed reference statistics inside a model folder.
STATS_FILE = "image_statistics.json"
THUMBNAIL = 128


def image_statistics(image: Image.Image) -> np.ndarray:
    """The statistics of :data:`STAT_NAMES` for one RGB image, each in [0, 1]."""
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
    rgb = np.asarray(thumb, dtype=np.float32) / 255.0
    brightest = rgb.max(axis=2)
    darkest = rgb.min(axis=2)
    saturation = np.where(brightest > 0, (brightest - darkest) / np.maximum(brightest, 1e-6), 0.0)
    gray = rgb.mean(axis=2)
    gy, gx = np.gradient(gray) if min(gray.shape) > 1 else (np.zeros_like(gray), np.zeros_like(gray))
    return np.array(
        [
            *rgb.reshape(-1, 3).mean(axis=0),
            *rgb.reshape(-1, 3).std(axis=0),
            float((brightest < 0.1).mean()),
            float((darkest > 0.85).mean()),
            float(saturation.mean()),
            float(np.clip(np.hypot(gx, gy).mean() * 4.0, 0.0, 1.0)),
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class ReferenceStatistics:
    """Mean and standard deviation of each statistic over a reference set, and where the set came from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_images: int
    source: str

    def score(self, image: Image.Image) -> float:
        """Largest absolute z-score of the image's statistics (0 = typical)."""
        z = (image_statistics(image) - np.asarray(self.mean)) / np.maximum(np.asarray(self.std), STD_FLOOR)
        return float(np.abs(z).max())

    def to_json(self) -> str:
        """The statistics as JSON (the format of :data:`STATS_FILE`)."""
        return json.dumps({"names": list(STAT_NAMES), **asdict(self)}, indent=2)


def reference_from_images(images: Iterable[Image.Image], source: str) -> ReferenceStatistics:
    """Reference statistics over ``images`` (at least two)."""
    table = np.stack([image_statistics(img) for img in images])
    if len(table) < 2:
        raise ValueError("a reference set needs at least two images")
    return ReferenceStatistics(
        mean=tuple(float(v) for v in table.mean(axis=0)),
        std=tuple(float(v) for v in table.std(axis=0, ddof=1)),
        n_images=len(table),
        source=source,
    )


def read_reference_file(path: Path) -> ReferenceStatistics | None:
    """Statistics from a :data:`STATS_FILE`; ``None`` when it is missing or was computed on other statistics."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if tuple(data.get("names", ())) != STAT_NAMES:
        return None
    return ReferenceStatistics(
        mean=tuple(data["mean"]), std=tuple(data["std"]), n_images=int(data["n_images"]), source=str(data["source"])
    )


def reference_for_model(model_path: Path | None, sample_paths: Sequence[Path]) -> ReferenceStatistics | None:
    """The model folder's :data:`STATS_FILE`, else statistics over ``sample_paths``; ``None`` when neither exists."""
    from leuk.io import read_image

    if model_path is not None:
        stored = read_reference_file(Path(model_path) / STATS_FILE)
        if stored is not None:
            return stored
    if len(sample_paths) < 2:
        return None
    return reference_from_images((read_image(p) for p in sample_paths), source="bundled sample images")
