"""The bundled sample images (``assets/samples/<task>/<label>_<n>.<ext>``, made by ``train/make_samples.py``).

A task folder with an ``ATTRIBUTION.md`` holds real images of a public dataset (C-NMC 2019: real cells of
subjects the fold-0 model ``efficientnet-se-v2b3`` never saw; the default model trained on every pool subject,
these included; CC BY 3.0); the others hold synthetic look-alikes (Aria: its images may
not be redistributed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from leuk.io import IMAGE_SUFFIXES

SAMPLES_ENV = "LEUK_SAMPLES_DIR"
#: A task folder holding this file holds real images; the file names their source and licence.
ATTRIBUTION_FILE = "ATTRIBUTION.md"
#: Display names of the sample folders.
TASK_TITLES = {"cnmc": "C-NMC single cell", "aria": "Aria smear"}


@dataclass(frozen=True)
class Sample:
    """One bundled sample image, the task it belongs to and its class (real or synthetic: :attr:`real`)."""

    path: Path
    task: str
    label: str

    @property
    def caption(self) -> str:
        """Short caption for a gallery thumbnail: the class."""
        return self.label

    @property
    def real(self) -> bool:
        """Whether this is a real image of a public dataset (its folder holds an ``ATTRIBUTION.md``)."""
        return (self.path.parent / ATTRIBUTION_FILE).is_file()

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


#: How :func:`samples_description` names the real images of a task.
REAL_SOURCES = {"cnmc": "real C-NMC 2019 cells of the pool (the default model trained on them; efficientnet-se-v2b3 never saw them), CC BY 3.0"}


def samples_description(samples: Sequence[Sample] | None = None) -> str:
    """Where the samples come from, per task: e.g. ``C-NMC single cell: real ...; Aria smear: synthetic``."""
    samples = list_samples() if samples is None else samples
    parts = {}
    for sample in samples:
        if sample.task not in parts:
            source = REAL_SOURCES.get(sample.task, "real images") if sample.real else "synthetic look-alikes"
            parts[sample.task] = f"{TASK_TITLES.get(sample.task, sample.task)}: {source}"
    return "; ".join(parts.values())


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


def task_for_labels(labels: Sequence[str]) -> str | None:
    """The sample task whose classes are exactly ``labels`` (case-insensitive), or ``None``."""
    wanted = {label.lower() for label in labels}
    by_task: dict[str, set[str]] = {}
    for sample in list_samples():
        by_task.setdefault(sample.task, set()).add(sample.label.lower())
    return next((task for task, found in by_task.items() if found == wanted), None)


@dataclass(frozen=True)
class ChosenInput:
    """The one image a single-image view works on: an upload or a bundled sample, by name, and what was set
    aside (``note``: e.g. the sample an upload replaced), so that a result says which file it is about."""

    image: object
    name: str
    note: str = ""


def choose_input(upload_name: str | None, upload: object, sample: "Path | str | None") -> ChosenInput | None:
    """An upload wins over a preselected sample, and says so; ``None`` when there is neither.

    ``upload``: the uploaded bytes (or path); ``sample``: the bundled sample picked (or ``None``).
    """
    if upload is not None:
        note = (f"Using the upload `{upload_name}`; the sample `{Path(sample).name}` is set aside "
                "(remove the upload to use it)." if sample else "")
        return ChosenInput(upload, upload_name or "upload", note)
    if sample:
        return ChosenInput(str(sample), Path(sample).name)
    return None


def without_sample(paths: Sequence[str], sample: "Path | str | None") -> list[str]:
    """``paths`` less the copies of the bundled ``sample`` (same name and bytes): an upload replaces a sample
    clicked before it, so that a patient's images are never mixed with a bundled one."""
    if not sample:
        return list(paths)
    sample = Path(sample)
    try:
        content = sample.read_bytes()
    except OSError:
        return list(paths)

    def is_copy(path: str) -> bool:
        try:
            return Path(path).name == sample.name and Path(path).read_bytes() == content
        except OSError:
            return False

    return [path for path in paths if not is_copy(path)]


def one_per_class(samples: Sequence[Sample]) -> list[Sample]:
    """The first sample of every (task, class), in the given order: an example row shows every class once."""
    seen: set[tuple[str, str]] = set()
    chosen = []
    for sample in samples:
        if (sample.task, sample.label) not in seen:
            seen.add((sample.task, sample.label))
            chosen.append(sample)
    return chosen
