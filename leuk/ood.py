"""Out-of-distribution detection: is this image like the images the model was trained on?

A classifier answers for every input, a photo of a cat or a blood smear it never saw included, and its softmax
can be high on exactly those. leuk therefore checks every image against the model's own training images, in
two steps, before it calls a prediction confident (see :mod:`leuk.verdict`):

1. **Feature distance** (the detector): the image's pooled features (what the classification head reads:
   EfficientNet-SE's SE-weighted global-average pool, HybridCN-NAS's standardised fused feature vector) are
   compared with those of the training images by the Mahalanobis distance to the nearest class mean, with one
   covariance shared by the classes (Lee et al., NeurIPS 2018, "A Simple Unified Framework for Detecting
   Out-of-Distribution Samples and Adversarial Attacks"), estimated with Ledoit-Wolf shrinkage
   (``sklearn.covariance.LedoitWolf``) because there are about as many feature dimensions as images.
   The score is that distance (0 = a class mean; larger = less familiar).
2. **Image statistics** (a cheap gate): ten colour and texture statistics of a thumbnail (:func:`image_statistics`)
   as z-scores against the training images; the score is the largest absolute z-score. It catches gross mismatches
   (blank, saturated or noise images, a different background) whatever the network's features say.

Both are fitted on the model's **training images only** (:func:`fit_detector`; ``leuk ood fit`` for an
existing model folder, run automatically after ``leuk train``). Each threshold is the ``quantile`` (default
0.99) of the scores of the **validation images** (images the fit did not see, of the training subjects), or of
the training images when no validation image exists (then the threshold is optimistic, and the record says so).
The detector is stored next to the weights (:data:`DETECTOR_WEIGHTS` safetensors + :data:`DETECTOR_CONFIG` JSON)
together with the SHA-256 of the weights it was fitted for; :func:`load_detector` refuses a detector of other
weights with a note instead of using it.

What it cannot catch: an image close to the training cells in feature space but wrong anyway (a cell of another
disease, another stain batch that happens to land near a class mean), and, by construction, a share
``1 - quantile`` of genuine in-distribution images is flagged. A low score is no guarantee of a correct answer.

The score is computed from plain tensors (:func:`mahalanobis_scores`); the stored files can be read with
``safetensors`` and ``json`` alone.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from PIL import Image

from leuk.errors import LeukError
from leuk.records import SPLIT_FILE

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DEFAULT_QUANTILE",
    "DETECTOR_CONFIG",
    "DETECTOR_WEIGHTS",
    "FORMAT_VERSION",
    "OODDetector",
    "OODError",
    "OODResult",
    "ReferenceStatistics",
    "STAT_NAMES",
    "feature_space",
    "fit_detector",
    "fit_after_training",
    "fit_detector_for_folder",
    "image_statistics",
    "load_detector",
    "mahalanobis_scores",
    "pooled_features",
    "reference_from_images",
    "weights_sha256",
]

#: Files of a stored detector, next to ``model.safetensors``.
DETECTOR_WEIGHTS = "ood_detector.safetensors"
DETECTOR_CONFIG = "ood_detector.json"
FORMAT_VERSION = 1
#: Share of in-distribution (validation) images the thresholds let through.
DEFAULT_QUANTILE = 0.99
#: Weights file whose hash ties a detector to its model.
MODEL_WEIGHTS = "model.safetensors"


class OODError(LeukError):
    """A detector that cannot be fitted (no training images, a model without pooled features, ...)."""


# ------------------------------------------------------------------------------------------- image statistics

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


# ------------------------------------------------------------------------------------------------- features

def feature_space(model: Any) -> str:
    """What :func:`pooled_features` returns for ``model``, in words (recorded with the detector)."""
    if hasattr(model, "forward_features") and hasattr(model, "pool"):
        return "pooled backbone features (SE channel attention + global average pool), the head's input"
    if hasattr(model, "extract_features") and hasattr(model, "feature_mean"):
        return "fused feature vector of both branches, z-scored with the training statistics (before mRMR)"
    if hasattr(model, "timm_model"):
        return "timm pre-logits features"
    raise OODError(f"{type(model).__name__} exposes no pooled features (forward_features + pool, "
                   "extract_features, or a timm model): no feature-space detector can be fitted")


def pooled_features(model: Any, pixel_values: "torch.Tensor") -> "torch.Tensor":
    """The ``(N, D)`` float32 feature vectors a detector compares (see :func:`feature_space`)."""
    import torch

    with torch.no_grad():
        if hasattr(model, "forward_features") and hasattr(model, "pool"):
            features = model.pool(model.forward_features(pixel_values))
        elif hasattr(model, "extract_features") and hasattr(model, "feature_mean"):
            pixel_values = pixel_values.to(model.feature_mean.dtype)
            features = (model.extract_features(pixel_values) - model.feature_mean) / model.feature_scale
        elif hasattr(model, "timm_model"):
            timm_model = model.timm_model
            features = timm_model.forward_head(timm_model.forward_features(pixel_values), pre_logits=True)
        else:
            feature_space(model)  # raises the explanation
            raise AssertionError  # pragma: no cover
    return features.reshape(len(features), -1).float()


def mahalanobis_scores(features: Any, class_means: Any, precision: Any) -> np.ndarray:
    """Mahalanobis distance of each row of ``features`` ``(N, D)`` to its nearest row of ``class_means``
    ``(K, D)`` under the shared ``precision`` ``(D, D)``: ``sqrt(min_k (f - mu_k)^T P (f - mu_k))``."""
    f = np.asarray(features, dtype=np.float64)
    means = np.asarray(class_means, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    squared = np.empty((len(f), len(means)))
    for k, mean in enumerate(means):
        centred = f - mean
        squared[:, k] = np.einsum("nd,de,ne->n", centred, precision, centred)
    return np.sqrt(np.clip(squared.min(axis=1), 0.0, None))


def whitening_of(precision: np.ndarray) -> np.ndarray:
    """``W`` with ``W @ W.T == precision`` (eigenvectors times the square roots of the eigenvalues)."""
    eigenvalues, eigenvectors = np.linalg.eigh(np.asarray(precision, dtype=np.float64))
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


def _precision_of(whitening: np.ndarray) -> np.ndarray:
    w = np.asarray(whitening, dtype=np.float64)
    return w @ w.T


def weights_sha256(folder: str | Path) -> str | None:
    """SHA-256 of a model folder's ``model.safetensors`` (``None`` when there is none)."""
    path = Path(folder) / MODEL_WEIGHTS
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------- detector

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
        rule = self.info.get("threshold_rule", "")
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


# ------------------------------------------------------------------------------------------------------ fit

def _quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(np.asarray(values, dtype=np.float64), q, method="higher"))


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, *, shrinkage: str | float = "ledoit-wolf"
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Class means ``(K, D)``, shared precision ``(D, D)`` and the shrinkage used, from training features.

    Labels are the class ids of the rows; every class present gets its mean. The covariance is that of the
    class-centred features (divided by N), shrunk towards a scaled identity by Ledoit-Wolf's estimate
    (``sklearn.covariance.LedoitWolf``), or by a fixed ``shrinkage`` in [0, 1] (0: the empirical covariance,
    Lee et al.'s estimator, which needs more images than features)."""
    from sklearn.covariance import EmpiricalCovariance, LedoitWolf, ShrunkCovariance

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(features) < 3:
        raise OODError(f"{len(features)} training images are too few to fit a detector")
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    if shrinkage == "ledoit-wolf":
        estimator = LedoitWolf(assume_centered=True).fit(centred)
        return means, estimator.precision_, float(estimator.shrinkage_)
    amount = float(shrinkage)
    if amount == 0.0:
        return means, EmpiricalCovariance(assume_centered=True).fit(centred).precision_, 0.0
    return means, ShrunkCovariance(assume_centered=True, shrinkage=amount).fit(centred).precision_, amount


class _FeatureReader:
    """Pooled features and image statistics of image files, through the model's own processor."""

    def __init__(self, model: Any, processor: Any, *, device: Any = None, batch_size: int = 32) -> None:
        from leuk.inference import Predictor

        self.predictor = Predictor(model, processor, device=device, batch_size=batch_size)

    def read(self, images: Sequence[Any], *, progress: bool = False, what: str = "images"):
        features, stats, errors = self.predictor.features_and_statistics(images, progress=progress)
        if errors:
            first = next(iter(errors.values()))
            raise OODError(f"{len(errors)} of {len(images)} {what} could not be read, e.g. {first}")
        return features, stats


def leave_one_subject_out_scores(features: np.ndarray, stats: np.ndarray, labels: np.ndarray,
                                 groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature and image-statistics scores of each training image under a detector fitted WITHOUT its subject
    (what an image of a new subject looks like to the detector), and the subjects scored. A subject whose
    class has no other subject is skipped (its class would have no mean)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    feature_scores, stats_scores, scored = [], [], []
    for subject in sorted(set(groups.tolist())):
        held = groups == subject
        rest = ~held
        if not set(labels[held].tolist()) <= set(labels[rest].tolist()) or rest.sum() < 3:
            continue
        means, precision, _ = fit_mahalanobis(features[rest], labels[rest])
        feature_scores.append(mahalanobis_scores(features[held], means, precision))
        stats_scores.append(reference_from_statistics(stats[rest], "rest").score_statistics(stats[held]))
        scored.append(str(subject))
    if not scored:
        return np.zeros(0), np.zeros(0), []
    return np.concatenate(feature_scores), np.concatenate(stats_scores), scored


#: Fewest training subjects for the leave-one-subject-out threshold.
MIN_LOSO_SUBJECTS = 3


def fit_detector(
    model: Any,
    processor: Any,
    train_images: Sequence[Any],
    train_labels: Sequence[int],
    val_images: Sequence[Any] = (),
    *,
    train_groups: Sequence[str] | None = None,
    quantile: float = DEFAULT_QUANTILE,
    device: Any = None,
    batch_size: int = 32,
    progress: bool = False,
    info: dict[str, Any] | None = None,
) -> OODDetector:
    """Fit an :class:`OODDetector` for ``model`` on ``train_images`` (paths or images) only.

    The class means, covariance and image statistics come from the training images. Each threshold is the
    ``quantile`` of in-distribution scores the fit did not see: those of the training images when their own
    subject is left out of the fit (``train_groups``, the subject of each image, with at least
    :data:`MIN_LOSO_SUBJECTS` subjects: what a NEW subject's cells score), and those of ``val_images``; the
    larger of the two quantiles is used. Without either, the training images' own scores are used (optimistic,
    recorded as such). ``info`` is stored with the detector.
    """
    if not 0.5 <= quantile < 1.0:
        raise OODError(f"quantile must lie in [0.5, 1), got {quantile}")
    train_images, val_images = list(train_images), list(val_images)
    if not train_images:
        raise OODError("no training image to fit the detector on")
    labels = np.asarray(train_labels)
    space = feature_space(model)
    reader = _FeatureReader(model, processor, device=device, batch_size=batch_size)
    train_features, train_stats = reader.read(train_images, progress=progress, what="training images")
    means, precision, shrinkage = fit_mahalanobis(train_features, labels)
    statistics = reference_from_statistics(train_stats, source=f"{len(train_images)} training images")
    detector = OODDetector(class_means=means, precision=precision, threshold=float("inf"), statistics=statistics,
                           stats_threshold=float("inf"))
    calibrations: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sources = []
    subjects: list[str] = []
    if train_groups is not None and len(set(map(str, train_groups))) >= MIN_LOSO_SUBJECTS:
        loso_features, loso_stats, subjects = leave_one_subject_out_scores(
            train_features, train_stats, labels, np.asarray([str(g) for g in train_groups]))
        if subjects:
            calibrations["leave_one_subject_out"] = (loso_features, loso_stats)
            sources.append(f"the {len(loso_features)} training images of {len(subjects)} subjects, each scored "
                           "with its subject left out of the fit")
    if val_images:
        val_features, val_stats = reader.read(val_images, progress=progress, what="validation images")
        calibrations["validation"] = (detector.feature_scores(val_features), detector.stats_scores(val_stats))
        sources.append(f"{len(val_images)} validation images, which the fit did not use")
    if not calibrations:
        calibrations["training"] = (detector.feature_scores(train_features), detector.stats_scores(train_stats))
        sources.append(f"the {len(train_images)} training images themselves, as nothing held out was given: "
                       "optimistic")
    detector.threshold = max(_quantile(f, quantile) for f, _ in calibrations.values())
    detector.stats_threshold = max(_quantile(z, quantile) for _, z in calibrations.values())
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    detector.labels = [str(id2label.get(int(c), c)) for c in np.unique(labels)]
    detector.info = {
        "feature_space": space,
        "covariance": f"Ledoit-Wolf shrinkage (sklearn), shared by the classes, shrinkage {shrinkage:.4f}",
        "threshold_rule": f"the larger {quantile:.0%} quantile of the scores of " + " and of ".join(sources),
        "quantile": quantile,
        "fit": {"n_train_images": len(train_images), "n_val_images": len(val_images),
                "leave_one_subject_out_subjects": subjects,
                "train_score_quantiles": _summary(detector.feature_scores(train_features)),
                **{f"{name}_score_quantiles": _summary(f) for name, (f, _) in calibrations.items()},
                **{f"{name}_stats_quantiles": _summary(z) for name, (_, z) in calibrations.items()}},
        "image_size": int(getattr(getattr(model, "config", None), "image_size", 0) or 0) or None,
        "fitted": _dt.date.today().isoformat(),
        **(info or {}),
    }
    return detector


def _summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {key: round(float(np.quantile(values, q)), 4) for key, q in
            (("min", 0.0), ("median", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))}


# --------------------------------------------------------------------------------------------- model folders



def split_images(model_dir: str | Path, data_root: str | Path, part: str) -> tuple[list[str], list[int], list[str]]:
    """Paths, labels and patient ids of split ``part`` (``train``, ``val`` or ``test``) of a model folder's
    ``training_split.json``, found under ``data_root`` (the folder the model was trained on).

    The split names its images (EfficientNet-SE: ``<part>.images``, paths relative to the data folder) or its
    patients (HybridCN-NAS: ``<part>_patients``); labels come from the dataset loader of the split's dataset.
    """
    from leuk import data as leuk_data

    model_dir, data_root = Path(model_dir), Path(data_root).expanduser()
    split_path = model_dir / SPLIT_FILE
    if not split_path.is_file():
        raise OODError(f"{model_dir} has no {SPLIT_FILE}: the training images cannot be told from the others "
                       "(pass them to leuk.ood.fit_detector yourself)")
    split = json.loads(split_path.read_text(encoding="utf-8"))
    loader = (split.get("dataset") or {}).get("loader")
    if loader is None:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        loader = "aria" if "hybrid" in str(config.get("model_type", "")) else "cnmc"
    load = {"cnmc": leuk_data.load_cnmc, "aria": leuk_data.load_aria}.get(loader)
    if load is None:
        raise OODError(f"{split_path}: unknown dataset loader {loader!r}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = load(data_root).select_columns(["path", "label", "patient_id"])
    paths = [str(p) for p in table["path"]]
    labels = [int(v) for v in table["label"]]
    patients = [str(p) for p in table["patient_id"]]
    record = split.get(part)
    if isinstance(record, dict) and record.get("images"):
        wanted = list(record["images"])
        root = data_root.resolve()
        by_relative = {}
        for path, label, patient in zip(paths, labels, patients):
            try:
                by_relative[Path(path).resolve().relative_to(root).as_posix()] = (path, label, patient)
            except ValueError:
                continue
        missing = [name for name in wanted if name not in by_relative]
        if missing:
            raise OODError(f"{len(missing)} of the {len(wanted)} {part} images of {split_path} are not in "
                           f"{data_root} (e.g. {missing[0]}): pass the folder the model was trained on")
        chosen = [by_relative[name] for name in wanted]
        return [c[0] for c in chosen], [c[1] for c in chosen], [c[2] for c in chosen]
    ids = record.get("patients") if isinstance(record, dict) else split.get(f"{part}_patients")
    if not ids:
        raise OODError(f"{split_path} names neither images nor patients of its {part!r} part")
    ids = set(map(str, ids))
    rows = [i for i, patient in enumerate(patients) if patient in ids]
    if not rows:
        raise OODError(f"none of the {part} patients of {split_path} is in {data_root}")
    found = {patients[i] for i in rows}
    if found != ids:
        raise OODError(f"{len(ids - found)} {part} patients of {split_path} are not in {data_root} "
                       f"(e.g. {sorted(ids - found)[0]}): pass the folder the model was trained on")
    return [paths[i] for i in rows], [labels[i] for i in rows], [patients[i] for i in rows]


def fit_detector_for_folder(
    model_dir: str | Path,
    data_root: str | Path,
    *,
    quantile: float = DEFAULT_QUANTILE,
    device: Any = None,
    batch_size: int = 32,
    progress: bool = False,
    model: Any = None,
    processor: Any = None,
) -> OODDetector:
    """Fit the detector of a saved model folder on the training images its ``training_split.json`` names
    (threshold from its validation images), store it in the folder and return it. ``model``/``processor``
    default to the folder's, loaded with :func:`leuk.hub.load_model`."""
    model_dir = Path(model_dir)
    train_paths, train_labels, train_groups = split_images(model_dir, data_root, "train")
    try:
        val_paths, _, _ = split_images(model_dir, data_root, "val")
    except OODError:
        val_paths = []
    if model is None or processor is None:
        from leuk.hub.loader import _load_from_folder, _device_of

        model, processor = _load_from_folder(model_dir, _device_of(device))
    split = json.loads((model_dir / SPLIT_FILE).read_text(encoding="utf-8"))
    detector = fit_detector(
        model, processor, train_paths, train_labels, val_paths, train_groups=train_groups, quantile=quantile,
        device=device, batch_size=batch_size, progress=progress,
        info={"model_sha256": weights_sha256(model_dir),
              "fitted_on": {"split_file": SPLIT_FILE, "train": "the 'train' part (training images only)",
                            "threshold": "leave-one-subject-out scores of the 'train' part"
                            + (" and the 'val' part" if val_paths else ""),
                            "synthetic": bool(split.get("synthetic", False))}},
    )
    detector.save(model_dir)
    return detector


def fit_after_training(model_dir: str | Path, data_root: str | Path, *, batch_size: int = 32,
                       progress: bool = False) -> OODDetector | None:
    """:func:`fit_detector_for_folder` as the training engines call it once a model folder is saved: a detector
    that cannot be fitted is logged as a warning (the trained model is kept) and ``None`` is returned."""
    import logging

    log = logging.getLogger(__name__)
    try:
        detector = fit_detector_for_folder(model_dir, data_root, batch_size=batch_size, progress=progress)
    except LeukError as err:
        log.warning("no out-of-distribution detector was fitted for %s: %s", model_dir, err)
        return None
    log.info("out-of-distribution detector for %s: %s", model_dir, detector.description)
    return detector
