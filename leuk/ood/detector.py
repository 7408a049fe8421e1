"""The fitted out-of-distribution detector: its verdict on images (:class:`OODResult`), its storage next to the
weights and :func:`load_detector`, which never raises. Fitting lives in :mod:`leuk.ood.fit`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leuk.errors import OODError
from leuk.records import has_patient_ids
from leuk.ood.features import _precision_of, mahalanobis_scores, weights_sha256, whitening_of
from leuk.ood.statistics import STD_FLOOR, ReferenceStatistics

__all__ = ["DETECTOR_CONFIG", "DETECTOR_WEIGHTS", "FORMAT_VERSION", "OODDetector", "OODResult", "load_detector"]

#: Files of a stored detector, next to ``model.safetensors``.
DETECTOR_WEIGHTS = "ood_detector.safetensors"
DETECTOR_CONFIG = "ood_detector.json"
FORMAT_VERSION = 1


def leave_one_out_source(n_images: int, groups: Sequence[str]) -> str:
    """How the threshold rule names the left-out scores: of subjects, or, when the groups are pseudo-patients
    (images without patient ids, :func:`leuk.records.has_patient_ids`), of images each left out alone."""
    if not has_patient_ids(groups):
        return (f"the {n_images} training images, each scored with itself left out of the fit (the images carry "
                "no patient ids)")
    return f"the {n_images} training images of {len(groups)} subjects, each scored with its subject left out of the fit"


_SUBJECT_RULE = re.compile(r"the (\d+) training images of \d+ subjects, each scored with its subject left out of the fit")


def threshold_rule_text(info: dict[str, Any]) -> str:
    """A stored detector's threshold rule (``info["threshold_rule"]``), in words that fit its groups: a record
    fitted before :func:`leave_one_out_source` existed spoke of "subjects" for images without patient ids (each
    image its own pseudo-patient); such a rule is reworded from the record's own list of left-out groups."""
    rule = str(info.get("threshold_rule") or "")
    groups = (info.get("fit") or {}).get("leave_one_subject_out_subjects") or []
    if groups and not has_patient_ids(groups):
        rule = _SUBJECT_RULE.sub(lambda match: leave_one_out_source(int(match.group(1)), groups), rule)
    return rule


@dataclass
class OODResult:
    """One image's out-of-distribution check: both scores, their thresholds and the outcome."""

    score: float | None
    threshold: float | None
    stats_score: float | None = None
    stats_threshold: float | None = None

    @property
    def feature_flag(self) -> bool:
        return self.score is not None and self.threshold is not None and self.score > self.threshold

    @property
    def stats_flag(self) -> bool:
        return (self.stats_score is not None and self.stats_threshold is not None
                and self.stats_score > self.stats_threshold)

    @property
    def is_ood(self) -> bool:
        """True when either score lies above its threshold."""
        return self.feature_flag or self.stats_flag

    @property
    def reason(self) -> str | None:
        """``"out of distribution: ..."`` when flagged, else ``None``."""
        parts = []
        if self.feature_flag:
            parts.append(f"feature distance {self.score:.1f} > {self.threshold:.1f}")
        if self.stats_flag:
            parts.append(f"image statistics z {self.stats_score:.1f} > {self.stats_threshold:.1f}")
        if not parts:
            return None
        return "out of distribution: unlike the training images (" + "; ".join(parts) + ")"


@dataclass
class OODDetector:
    """Class-conditional Mahalanobis detector on pooled features, plus the image-statistics gate.

    ``class_means`` ``(K, D)`` and ``precision`` ``(D, D)`` define the feature score (:func:`mahalanobis_scores`);
    ``threshold`` is the feature score above which an image is out of distribution; ``statistics`` and
    ``stats_threshold`` the same for the image statistics (``None``: gate off). ``info`` records how it was
    fitted (images, subjects, rule, weights hash, date).
    """

    class_means: np.ndarray
    precision: np.ndarray
    threshold: float
    statistics: ReferenceStatistics | None = None
    stats_threshold: float | None = None
    labels: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dimension(self) -> int:
        return int(self.class_means.shape[1])

    def feature_scores(self, features: Any) -> np.ndarray:
        """Feature score (Mahalanobis distance to the nearest class mean) of each row of ``features``."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.dimension:
            raise OODError(f"features of shape {features.shape} for a detector of dimension {self.dimension}")
        return mahalanobis_scores(features, self.class_means, self.precision)

    def stats_scores(self, stats: Any) -> np.ndarray | None:
        """Image-statistics score of each row of ``stats`` (``None`` without the gate)."""
        return None if self.statistics is None else self.statistics.score_statistics(stats)

    def assess(self, features: Any, stats: Any | None = None) -> list[OODResult]:
        """One :class:`OODResult` per row of ``features`` (and of ``stats``, the images' statistics)."""
        scores = self.feature_scores(features)
        stat_scores = None if stats is None else self.stats_scores(stats)
        return [OODResult(score=float(s), threshold=self.threshold,
                          stats_score=None if stat_scores is None else float(stat_scores[i]),
                          stats_threshold=None if stat_scores is None else self.stats_threshold)
                for i, s in enumerate(scores)]

    @property
    def description(self) -> str:
        """One line: method, what it was fitted on, the threshold rule."""
        fit = self.info.get("fit", {})
        rule = threshold_rule_text(self.info)
        return (f"Mahalanobis distance on pooled features, fitted on {fit.get('n_train_images', '?')} training "
                f"images; threshold {self.threshold:.1f} ({rule})")

    # -- storage --------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write :data:`DETECTOR_WEIGHTS` and :data:`DETECTOR_CONFIG` into ``folder``."""
        import torch
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights, config = folder / DETECTOR_WEIGHTS, folder / DETECTOR_CONFIG
        # stored as a whitening matrix W (precision = W W^T, W = eigenvectors scaled by sqrt(eigenvalues)): its
        # columns keep float32's relative precision, while float32 (let alone float16) entries of an
        # ill-conditioned precision matrix would not (condition numbers of 1e5 occur)
        save_file({"class_means": torch.from_numpy(np.ascontiguousarray(self.class_means, dtype=np.float32)),
                   "whitening": torch.from_numpy(np.ascontiguousarray(whitening_of(self.precision),
                                                                      dtype=np.float32))},
                  str(weights), metadata={"format": "leuk-ood", "version": str(FORMAT_VERSION)})
        weights.chmod(0o644)
        record = {
            "format_version": FORMAT_VERSION,
            "method": "mahalanobis",
            "score": "min_k || (f - class_means[k]) @ whitening ||, f = pooled features (precision = whitening "
                     "@ whitening.T)",
            "threshold": self.threshold,
            "labels": list(self.labels),
            "dimension": self.dimension,
            "image_statistics": None if self.statistics is None else {
                **self.statistics.to_dict(), "threshold": self.stats_threshold,
                "score": "max_i |stat_i - mean_i| / max(std_i, %g)" % STD_FLOOR},
            **self.info,
        }
        config.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return weights, config

    @classmethod
    def load(cls, folder: str | Path) -> "OODDetector":
        """Read a stored detector (raises :class:`OODError` for a missing or unreadable one)."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        weights, config = folder / DETECTOR_WEIGHTS, folder / DETECTOR_CONFIG
        if not weights.is_file() or not config.is_file():
            raise OODError(f"{folder} holds no out-of-distribution detector ({DETECTOR_WEIGHTS} + {DETECTOR_CONFIG})")
        try:
            record = json.loads(config.read_text(encoding="utf-8"))
            tensors = load_file(str(weights))
        except (OSError, ValueError) as err:
            raise OODError(f"cannot read the detector in {folder}: {str(err).splitlines()[0]}") from err
        if record.get("format_version") != FORMAT_VERSION or record.get("method") != "mahalanobis":
            raise OODError(f"the detector in {folder} has format {record.get('format_version')!r}/"
                           f"{record.get('method')!r}, which this leuk version does not read")
        stats_record = record.get("image_statistics")
        statistics = None if not stats_record else ReferenceStatistics.from_dict(stats_record)
        known = {"format_version", "method", "score", "threshold", "labels", "dimension", "image_statistics"}
        return cls(
            class_means=tensors["class_means"].astype(np.float64),
            precision=_precision_of(tensors["whitening"]),
            threshold=float(record["threshold"]),
            statistics=statistics,
            stats_threshold=None if not stats_record else float(stats_record["threshold"]),
            labels=list(record.get("labels") or []),
            info={key: value for key, value in record.items() if key not in known},
        )


def load_detector(folder: str | Path) -> tuple[OODDetector | None, str | None]:
    """``(detector, None)`` for a model folder with a valid detector fitted for its weights, else
    ``(None, note)`` with a one-line note saying why there is none (never raises)."""
    folder = Path(folder)
    if not (folder / DETECTOR_CONFIG).is_file():
        return None, ("no out-of-distribution detector is stored with this model, so unfamiliar images are not "
                      "flagged; fit one with `leuk ood fit --model <folder> --data <training data>`")
    try:
        detector = OODDetector.load(folder)
    except (OODError, KeyError, TypeError) as err:
        return None, f"the out-of-distribution detector was not used: {err}"
    expected = detector.info.get("model_sha256")
    actual = weights_sha256(folder)
    if expected and actual and expected != actual:
        return None, ("the out-of-distribution detector stored with this model was fitted for other weights and "
                      "is not used; refit it with `leuk ood fit`")
    return detector, None
