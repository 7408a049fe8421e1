"""Fitting the out-of-distribution detector on a model's training images only: the Mahalanobis fit, the
leave-one-subject-out thresholds, and the fit of a saved model folder from its ``training_split.json``."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from leuk.errors import LeukError, OODError
from leuk.ood.detector import OODDetector, leave_one_out_source
from leuk.ood.features import feature_space, mahalanobis_scores, weights_sha256
from leuk.ood.statistics import reference_from_statistics
from leuk.records import SPLIT_FILE, read_training_split

__all__ = ["DEFAULT_QUANTILE", "fit_after_training", "fit_detector", "fit_detector_for_folder", "fit_mahalanobis",
           "leave_one_subject_out_scores", "split_images"]

#: Share of in-distribution (validation) images the thresholds let through.
DEFAULT_QUANTILE = 0.99


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
            sources.append(leave_one_out_source(len(loso_features), subjects))
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

    The split (read by :func:`leuk.records.read_training_split`, either format) names the part's images
    (paths relative to the data folder) or only its patients; labels come from the dataset loader of the
    split's dataset.
    """
    from leuk import data as leuk_data

    model_dir, data_root = Path(model_dir), Path(data_root).expanduser()
    split_path = model_dir / SPLIT_FILE
    if not split_path.is_file():
        raise OODError(f"{model_dir} has no {SPLIT_FILE}: the training images cannot be told from the others "
                       "(pass them to leuk.ood.fit_detector yourself)")
    split = read_training_split(model_dir)
    loader = (split.record.get("dataset") or {}).get("loader")
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
    recorded = split.part(part)
    if recorded.images:
        wanted = list(recorded.images)
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
    ids = recorded.patients
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
        from leuk.devices import resolve_device
        from leuk.hub.loader import _load_from_folder

        model, processor = _load_from_folder(model_dir, resolve_device(device))
    split = read_training_split(model_dir).record
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
