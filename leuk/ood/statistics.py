"""The image-statistics gate of the out-of-distribution check: ten colour and texture statistics of a thumbnail,
scored as the largest absolute z-score against a reference set (the model's training images)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
from PIL import Image

from leuk.errors import OODError

__all__ = ["STAT_NAMES", "ReferenceStatistics", "image_statistics", "reference_from_images",
           "reference_from_statistics"]

STAT_NAMES = (
    "mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b",
    "dark_fraction", "bright_fraction", "saturation", "gradient",
)
#: Smallest standard deviation used for a statistic (all statistics lie in [0, 1]).
STD_FLOOR = 0.02
THUMBNAIL = 128


def image_statistics(image: Image.Image) -> np.ndarray:
    """Ten statistics of one RGB image, each in [0, 1], on a thumbnail of at most 128 px: mean and standard
    deviation of R, G and B, the fraction of near-black pixels (C-NMC cells sit on black), the fraction of
    near-white pixels (smear background), the mean HSV saturation and the mean gradient magnitude."""
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
    """Mean and standard deviation of each of :data:`STAT_NAMES` over a reference set, and where it came from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_images: int
    source: str

    def score_statistics(self, stats: np.ndarray) -> np.ndarray:
        """Largest absolute z-score of each row of ``stats`` (``(N, 10)`` or ``(10,)``)."""
        stats = np.atleast_2d(np.asarray(stats, dtype=np.float64))
        z = (stats - np.asarray(self.mean)) / np.maximum(np.asarray(self.std), STD_FLOOR)
        return np.abs(z).max(axis=1)

    def score(self, image: Image.Image) -> float:
        """Largest absolute z-score of the image's statistics (0 = typical)."""
        return float(self.score_statistics(image_statistics(image))[0])

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(STAT_NAMES), **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReferenceStatistics":
        if tuple(data.get("names", ())) != STAT_NAMES:
            raise OODError("image statistics were computed on other statistics than this leuk version's")
        return cls(mean=tuple(map(float, data["mean"])), std=tuple(map(float, data["std"])),
                   n_images=int(data["n_images"]), source=str(data["source"]))


def reference_from_statistics(table: np.ndarray, source: str) -> ReferenceStatistics:
    """Reference statistics over the rows of ``table`` (at least two)."""
    table = np.asarray(table, dtype=np.float64)
    if len(table) < 2:
        raise OODError("a reference set needs at least two images")
    return ReferenceStatistics(mean=tuple(float(v) for v in table.mean(axis=0)),
                               std=tuple(float(v) for v in table.std(axis=0, ddof=1)),
                               n_images=len(table), source=source)


def reference_from_images(images: Iterable[Image.Image], source: str) -> ReferenceStatistics:
    """Reference statistics over ``images`` (at least two)."""
    return reference_from_statistics(np.stack([image_statistics(img) for img in images]), source)
