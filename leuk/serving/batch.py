"""Batch classification for the apps: many files or a zip archive, one CSV row per image, per-patient aggregates.

Built only on :func:`leuk.serving.classify` and :func:`leuk.serving.aggregate`, called in chunks so that a
view can show progress and a batch may exceed :data:`leuk.serving.MAX_IMAGES`.

Patient ids are taken, when known, from the C-NMC file name (``UID_<subject>_...``, the subject as
:func:`leuk.data.loaders.cnmc_subject` reads it) or else from the folder holding the image inside a zip
archive (unless that folder is named after a class, as in ``all/`` or ``Benign/``).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Callable, Sequence

from leuk.errors import ImageReadError, LeukError
from leuk.io import IMAGE_SUFFIXES, MAX_FILE_BYTES, ImageSource
from leuk.serving.assessment import NOT_ASSESSED
from leuk.serving.classify import ClassifyResult, ImageResult, aggregate, classify
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.rows import BATCH_CSV, PredictionRow

if TYPE_CHECKING:
    import pandas as pd

#: Most images one batch (files or a zip archive) may hold.
MAX_BATCH_IMAGES = 2000
#: Largest total uncompressed size of the images in one zip archive (guards against zip bombs).
MAX_ZIP_BYTES = 1024 * 1024 * 1024
#: Images classified per call of :func:`leuk.serving.classify` (one progress step).
BATCH_CHUNK = 16
#: Patient column value of the images whose patient is unknown, when others are known.
UNKNOWN_PATIENT = "(unknown)"
#: Patient column value of the single group formed when no patient id is known at all.
ALL_IMAGES = "(all images)"

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class NamedImage:
    """One input of a batch: its display name, its content (path, bytes, ...), the folder it came from in an
    archive, and the error met while extracting it (then ``source`` is ignored)."""

    name: str
    source: ImageSource
    folder: str | None = None
    error: str | None = None


def patient_id_for(name: str, folder: str | None = None, labels: Sequence[str] = ()) -> str | None:
    """The patient of an image: the C-NMC subject of its file name, else its archive folder (unless the folder
    is named after one of ``labels``), else ``None``."""
    from leuk.data.loaders import cnmc_subject
    from leuk.errors import DatasetLayoutError

    try:
        return cnmc_subject(PurePosixPath(name).name)
    except DatasetLayoutError:
        pass
    if folder and folder.lower() not in {label.lower() for label in labels}:
        return folder
    return None


def _is_image_member(info: zipfile.ZipInfo) -> bool:
    path = PurePosixPath(info.filename)
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in path.parts)
    return not info.is_dir() and not hidden and path.suffix.lower() in IMAGE_SUFFIXES


def read_zip_images(archive: bytes, *, archive_name: str = "archive.zip", max_images: int = MAX_BATCH_IMAGES,
                    max_total_bytes: int = MAX_ZIP_BYTES) -> list[NamedImage]:
    """The image files inside a zip archive (hidden files and ``__MACOSX`` skipped), in archive order.

    Each image keeps its path inside the archive as its name and its parent folder as ``folder``. A member
    that cannot be extracted becomes a :class:`NamedImage` with ``error`` set. Raises :class:`ImageReadError`
    for a file that is not a zip archive, one with no image, more than ``max_images`` images, or images whose
    uncompressed size exceeds ``max_total_bytes``.
    """
    try:
        bundle = zipfile.ZipFile(io.BytesIO(archive))
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise ImageReadError(f"{archive_name}: not a readable zip archive ({err})") from None
    with bundle:
        members = [info for info in bundle.infolist() if _is_image_member(info)]
        if not members:
            raise ImageReadError(f"{archive_name}: holds no image file ({', '.join(IMAGE_SUFFIXES)})")
        if len(members) > max_images:
            raise ImageReadError(f"{archive_name}: {len(members)} images; one batch may hold at most {max_images}")
        total = sum(info.file_size for info in members)
        if total > max_total_bytes:
            raise ImageReadError(f"{archive_name}: its images unpack to {total / 2**20:.0f} MiB; "
                                 f"the limit is {max_total_bytes / 2**20:.0f} MiB")
        images = []
        for info in members:
            path = PurePosixPath(info.filename)
            folder = path.parent.name or None
            if info.file_size > MAX_FILE_BYTES:
                images.append(NamedImage(info.filename, b"", folder,
                                         f"{path.name}: file is larger than {MAX_FILE_BYTES // 2**20} MiB"))
                continue
            try:
                images.append(NamedImage(info.filename, bundle.read(info), folder))
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as err:
                images.append(NamedImage(info.filename, b"", folder, f"{path.name}: cannot extract ({err})"))
        return images


@dataclass
class BatchResult:
    """A classified batch: every image's outcome (with the aggregate over all of them) and its patient."""

    result: ClassifyResult
    patient_ids: list[str | None]

    @property
    def labels(self) -> list[str]:
        """Class names, in logit order."""
        return self.result.labels

    def table(self) -> "pd.DataFrame":
        """One row per image, for CSV export: ``file``, ``patient_id`` (only when some patient is known),
        ``label``, ``p_<class>`` for each class, ``top_probability``, ``assessed`` (bool: read and not out of
        distribution, :mod:`leuk.serving.assessment`), ``uncertain`` (bool), ``uncertain_reasons``, ``ood_score``
        and ``error``. The numbers are kept for images that are not assessed; :meth:`display_table` hides them."""
        import pandas as pd

        known = any(pid is not None for pid in self.patient_ids)
        rows = []
        for item, patient in zip(self.result.images, self.patient_ids):
            row = BATCH_CSV.render(PredictionRow.of(item, item.name), self.labels)
            # the batch's own column, after the file
            rows.append({"file": row.pop("file"), **({"patient_id": patient or ""} if known else {}), **row})
        headers = BATCH_CSV.headers(self.labels)
        columns = [headers[0], *(["patient_id"] if known else []), *headers[1:]]
        return pd.DataFrame(rows, columns=columns)

    def display_table(self) -> "pd.DataFrame":
        """:meth:`table` as an app shows it: an image that is not assessed has :data:`NOT_ASSESSED` as its label
        and no probabilities (:meth:`ClassifyResult.not_assessed_lines` has them, for a collapsed detail)."""
        table = self.table()
        hidden = ~table["assessed"] & (table["error"] == "")
        table.loc[hidden, "label"] = NOT_ASSESSED
        table.loc[hidden, [*(f"p_{n}" for n in self.labels), "top_probability"]] = None
        return table.drop(columns=["assessed"])

    def patient_table(self) -> "pd.DataFrame":
        """One row per patient (or one for all images when no patient is known): images assessed (``images``),
        images left out as not assessed (``left_out``), label from the mean probabilities of the assessed images
        (:data:`NOT_ASSESSED` when there is none), majority vote, mean ``p_<class>``, and the uncertainty flag
        with its reasons (see :func:`leuk.serving.aggregate`). Patients none of whose images could be read are
        left out."""
        import pandas as pd

        known = any(pid is not None for pid in self.patient_ids)
        groups: dict[str, list[ImageResult]] = {}
        for item, patient in zip(self.result.images, self.patient_ids):
            key = (patient or UNKNOWN_PATIENT) if known else ALL_IMAGES
            groups.setdefault(key, []).append(item)
        rows = []
        for patient, items in groups.items():
            agg = aggregate(items, self.labels, self.result.threshold)
            if agg is None:
                continue
            rows.append({"patient_id": patient, "images": agg.n_images, "left_out": agg.n_left_out,
                         "label": agg.label or NOT_ASSESSED, "majority_label": agg.majority_label or "",
                         "votes": ", ".join(f"{name} {agg.votes[name]}" for name in self.labels),
                         **{f"mean_p_{name}": agg.mean_probabilities.get(name) for name in self.labels},
                         "uncertain": agg.uncertain, "uncertain_reasons": "; ".join(agg.reasons)})
        columns = ["patient_id", "images", "left_out", "label", "majority_label", "votes",
                   *(f"mean_p_{name}" for name in self.labels), "uncertain", "uncertain_reasons"]
        return pd.DataFrame(rows, columns=columns)

    def csv_bytes(self) -> bytes:
        """:meth:`table` as UTF-8 CSV."""
        return self.table().to_csv(index=False).encode("utf-8")


def classify_batch(
    images: Sequence[NamedImage],
    model_name: str | None = None,
    *,
    chunk_size: int = BATCH_CHUNK,
    progress: ProgressCallback | None = None,
    registry: ModelRegistry | None = None,
) -> BatchResult:
    """Classify a batch of images with the configured model ``model_name`` (default: the first).

    Images go to :func:`leuk.serving.classify` ``chunk_size`` at a time; ``progress(done, total)`` is called
    after each chunk. Unreadable images get an error row and never stop the others. Raises
    :class:`ImageReadError` when no image or more than :data:`MAX_BATCH_IMAGES` are given.
    """
    registry = registry or get_registry()
    name = registry.check_name(model_name)
    images = list(images)
    if not images:
        raise ImageReadError("no image given: upload at least one image or a zip archive of images")
    if len(images) > MAX_BATCH_IMAGES:
        raise ImageReadError(f"{len(images)} images in one batch; the limit is {MAX_BATCH_IMAGES}")
    if chunk_size < 1:
        raise LeukError("chunk_size must be at least 1")
    labels = list(registry.get(name).labels)
    threshold = registry.get(name).uncertain_below

    outcomes: list[ImageResult] = []
    ood_reference: str | None = None
    ood_note: str | None = None
    for start in range(0, len(images), chunk_size):
        chunk = images[start:start + chunk_size]
        readable = [item for item in chunk if item.error is None]
        by_item: dict[int, ImageResult] = {}
        if readable:
            try:
                result = classify([item.source for item in readable], name,
                                  names=[item.name for item in readable], registry=registry)
                ood_reference = ood_reference or result.ood_reference
                ood_note = ood_note or result.ood_note
                by_item = {id(item): row for item, row in zip(readable, result.images)}
            except ImageReadError:
                # every image of the chunk is unreadable: classify each alone to keep each one's own message
                for item in readable:
                    try:
                        alone = classify([item.source], name, names=[item.name], registry=registry)
                        by_item[id(item)] = alone.images[0]
                    except ImageReadError as err:
                        by_item[id(item)] = ImageResult(name=item.name, error=str(err))
        for item in chunk:
            outcomes.append(by_item.get(id(item)) or ImageResult(name=item.name, error=item.error))
        if progress is not None:
            progress(min(start + chunk_size, len(images)), len(images))

    combined = ClassifyResult(model_name=name, labels=labels, images=outcomes,
                              aggregate=aggregate(outcomes, labels, threshold), is_demo=registry.is_demo(name),
                              ood_reference=ood_reference, ood_note=ood_note, threshold=threshold)
    patients = [patient_id_for(item.name, item.folder, labels) for item in images]
    return BatchResult(result=combined, patient_ids=patients)
