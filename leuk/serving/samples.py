"""The bundled sample images (``assets/samples/<task>/<label>_<n>.<ext>``, made by ``train/make_samples.py``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from leuk.io import IMAGE_SUFFIXES

SAMPLES_ENV = "LEUK_SAMPLES_DIR"
#: Display names of the sample folders.
TASK_TITLES = {"cnmc": "C-NMC single cell", "aria": "Aria smear"}


@dataclass(frozen=True)
class Sample:
    """One bundled sample image, the task it belongs to and its (synthetic) class."""

    path: Path
    task: str
    label: str

    @property
    def caption(self) -> str:
        """Short caption for a gallery thumbnail: the (synthetic) class."""
        return self.label

    @property
    def title(self) -> str:
        """Task and class, e.g. ``C-NMC single cell: all``."""
        return f"{TASK_TITLES.get(self.task, self.task)}: {self.label}"


def samples_dir() -> Path:
    """``$LEUK_SAMPLES_DIR`` or ``<repo>/assets/samples``."""
    override = os.environ.get(SAMPLES_ENV)
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "assets" / "samples"


def list_samples(task: str | None = None) -> list[Sample]:
    """Every sample image (of one task when given), sorted by task then file name."""
    root = samples_dir()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if task is not None and folder.name != task:
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and "_" in path.stem:
                found.append(Sample(path=path, task=folder.name, label=path.stem.rsplit("_", 1)[0]))
    return found


def samples_for_labels(labels: Sequence[str]) -> list[Path]:
    """Sample images of the task whose classes are exactly ``labels`` (case-insensitive); ``[]`` if none."""
    wanted = {label.lower() for label in labels}
    by_task: dict[str, list[Sample]] = {}
    for sample in list_samples():
        by_task.setdefault(sample.task, []).append(sample)
    for samples in by_task.values():
        if {s.label.lower() for s in samples} == wanted:
            return [s.path for s in samples]
    return []


def samples_in_model_order(labels: Sequence[str]) -> list[Sample]:
    """Every sample, those of the task whose classes are ``labels`` first (a model's own task leads a gallery)."""
    own = set(samples_for_labels(labels))
    samples = list_samples()
    return [s for s in samples if s.path in own] + [s for s in samples if s.path not in own]
