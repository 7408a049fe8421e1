"""Cross-subject evaluation of one training recipe: leave-one-rare-subject-out folds.

With few subjects of one class (the C-NMC pool here has 3 HEM subjects), a single patient-wise split says
little, so the recipe is trained once per fold of :func:`leuk.data.splits.leave_one_rare_subject_out`:
each fold holds out one subject of the rare class and a share of the other class's subjects, every subject
is tested exactly once. Each fold's model is trained, calibrated and saved with the EfficientNet-SE engine
(:func:`leuk.training.efficientnet_se.fit_classifier`), then scored once on its held-out subjects through
the saved folder. The summary gives every figure per fold, its mean, standard deviation and range over
folds, the pooled figures over all held-out images, and per-subject accuracy (a subject the model calls
wrongly as a whole shows up there, not in the pooled mean).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from leuk.defaults import VAL_SIZE
from leuk.errors import LeukError

__all__ = ["CV_RESULTS_FILE", "SUMMARY_METRICS", "collect_cross_subject", "cross_subject_evaluation",
           "out_of_fold_rows", "summarise_folds", "train_all_subjects"]

CV_RESULTS_FILE = "cross_subject.json"
#: Figures summarised over folds.
SUMMARY_METRICS = ("f1_weighted", "roc_auc", "sensitivity", "specificity", "accuracy", "mcc", "ece")


def _spread(values: list[float | None]) -> dict[str, Any]:
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "min": None, "max": None, "n_folds": 0}
    return {
        "mean": float(np.mean(present)),
        "std": float(np.std(present, ddof=1)) if len(present) > 1 else 0.0,
        "min": float(np.min(present)),
        "max": float(np.max(present)),
        "n_folds": len(present),
    }


def per_subject_accuracy(y_true: np.ndarray, probs: np.ndarray, subjects: np.ndarray,
                         label_names: list[str]) -> dict[str, dict[str, Any]]:
    """Per held-out subject: its label, number of images, share called correctly, mean probability of
    each class."""
    predicted = probs.argmax(axis=1)
    table: dict[str, dict[str, Any]] = {}
    for subject in sorted(set(subjects.tolist())):
        rows = subjects == subject
        label = int(np.bincount(y_true[rows]).argmax())
        table[str(subject)] = {
            "label": label_names[label],
            "n_images": int(rows.sum()),
            "accuracy": float((predicted[rows] == y_true[rows]).mean()),
            "mean_probability": {name: float(probs[rows, i].mean()) for i, name in enumerate(label_names)},
        }
    return table


def out_of_fold_rows(fold: int, rows: np.ndarray, probs: np.ndarray, temperature: float, paths: list[str],
                     labels: np.ndarray, groups: np.ndarray, label_names: list[str], data_root: Path,
                     train_subjects: list[str]) -> list[dict[str, Any]]:
    """One record per held-out image of a fold: the image (relative to the data folder), its subject and
    label, the fold whose model scored it, and that model's ``logits`` up to a per-row constant (``T * log p``,
    so ``softmax(logits / T')`` is the probability at any other temperature ``T'``). Refuses a row whose
    subject the fold trained on: these rows are what a shipped model's calibration may be fitted on."""
    seen = set(map(str, train_subjects))
    out = []
    for row, p in zip(rows.tolist(), probs):
        subject = str(groups[row])
        if subject in seen:
            raise LeukError(f"fold {fold}: image {paths[row]} is of training subject {subject}, not out of fold")
        log_p = np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-300, None))
        out.append({
            "image": Path(paths[row]).resolve().relative_to(data_root).as_posix(), "subject": subject,
            "label": label_names[int(labels[row])], "fold": int(fold),
            "logits": [float(v) for v in temperature * log_p],
        })
    return out


def summarise_folds(folds: list[dict[str, Any]], pooled: dict[str, Any]) -> dict[str, Any]:
    """Mean, standard deviation (ddof 1) and range over folds of :data:`SUMMARY_METRICS`, and the pooled
    figures."""
    return {
        "over_folds": {key: _spread([fold["test"].get(key) for fold in folds]) for key in SUMMARY_METRICS},
        "pooled": {key: pooled.get(key) for key in SUMMARY_METRICS},
    }


def cross_subject_evaluation(
    options: Any,
    out: str | Path,
    *,
    val_size: float = VAL_SIZE,
    folds: list[int] | None = None,
    on_fold: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train the recipe ``options`` (a :class:`leuk.training.efficientnet_se.TrainOptions`; its ``data``
    is the dataset folder) once per leave-one-rare-subject-out fold; save fold ``i``'s model to
    ``out/fold_<i>``; return (and write to ``out/cross_subject.json``) every fold's figures and the summary.
    ``folds`` limits the run to those fold numbers. ``on_fold(i, record)`` is called after each fold.
    """
    from leuk.data.splits import leave_one_rare_subject_out
    from leuk.metrics import classification_metrics
    from leuk.records import training_split_record, write_eval_results
    from leuk.experiments.runs import predict_saved
    from leuk.training.efficientnet_se import fit_split, looks_synthetic

    out = Path(out)
    data_root, (paths, labels, groups, label_names) = _open_recipe_data(options)
    try:
        splits = leave_one_rare_subject_out(labels, groups, seed=options.seed, val_size=val_size)
    except ValueError as err:
        raise LeukError(f"cannot make cross-subject folds of {data_root}: {err}") from err
    synthetic = looks_synthetic(data_root) if options.synthetic is None else options.synthetic
    chosen = list(range(len(splits))) if folds is None else list(folds)
    records: list[dict[str, Any]] = []
    all_true, all_probs, all_subjects, oof = [], [], [], []
    for index in chosen:
        if not 0 <= index < len(splits):
            raise LeukError(f"fold {index} does not exist: there are {len(splits)} folds")
        split = splits[index]
        started = time.perf_counter()
        fold_dir = out / f"fold_{index}"
        fold_options = dataclasses.replace(options, out=str(fold_dir))
        fit = fit_split(fold_options, split, paths, labels, label_names, fold_dir)
        split_info = training_split_record(
            split, paths, labels, groups, label_names, data_root, loader=options.dataset, synthetic=synthetic,
            protocol="leave-one-rare-subject-out", fold=index, n_folds=len(splits), seed=options.seed,
            val_size=val_size,
            validation="images of the training subjects (no test subject informs selection or calibration)")
        state = fit.trainer.state
        _save_with_records(fit, options, fold_dir, split_info, data_root, synthetic, {
            "split": "leave-one-rare-subject-out", "fold": index, "n_folds": len(splits),
            "test_patients": split_info["test"]["patients"],
            "calibration": "temperature scaling on validation images of the training subjects"})
        test_paths = [paths[i] for i in split.test]
        probs = predict_saved(fold_dir, test_paths, options)
        y_true, subjects = labels[split.test], groups[split.test]
        test_metrics = classification_metrics(y_true, probs, label_names)
        record = {
            "fold": index,
            "train_subjects": split_info["train"]["patients"],
            "test_subjects": split_info["test"]["patients"],
            "split_sizes": {name: {k: split_info[name][k] for k in ("n_patients", "n_images", "per_class")}
                            for name in ("train", "val", "test")},
            "temperature": fit.temperature,
            "best_checkpoint": {"validation_f1_weighted": state.best_metric, "global_step": state.best_global_step},
            "epochs_trained": round(float(state.epoch or 0.0), 3),
            "runtime_s": round(time.perf_counter() - started, 1),
            "validation": fit.validation_metrics,
            "test": test_metrics,
            "per_subject": per_subject_accuracy(y_true, probs, subjects, label_names),
        }
        write_eval_results(fold_dir, {
            "model": options.model, "protocol": "leave-one-rare-subject-out", "split": "test", "fold": index,
            "synthetic": synthetic, "dataset": f"{'synthetic ' if synthetic else ''}{options.dataset} "
            f"({data_root.name})", "test_patients_hash": split_info["test_patients_hash"], **record,
        })
        shutil.rmtree(fold_dir / "checkpoints", ignore_errors=True)
        records.append(record)
        all_true.append(y_true)
        all_probs.append(probs)
        all_subjects.append(subjects)
        oof += out_of_fold_rows(index, split.test, probs, fit.temperature, paths, labels, groups, label_names,
                                data_root, record["train_subjects"])
        if on_fold is not None:
            on_fold(index, record)
    result = assemble_cross_subject(records, np.concatenate(all_true), np.concatenate(all_probs), label_names,
                                    options, data_root, paths, groups, synthetic, val_size, oof)
    out.mkdir(parents=True, exist_ok=True)
    (out / CV_RESULTS_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _open_recipe_data(options: Any) -> tuple[Path, tuple[list[str], np.ndarray, np.ndarray, list[str]]]:
    """Validate the recipe ``options`` and read its dataset folder: ``(data_root, (paths, labels, subjects,
    label_names))``; one clear error for a folder that does not exist."""
    from leuk.training.efficientnet_se import load_table

    options.validate()
    data_root = Path(options.data).resolve()
    if not data_root.is_dir():
        raise LeukError(f"data folder {options.data} does not exist")
    return data_root, load_table(options)


def _save_with_records(fit: Any, options: Any, folder: Path, split_info: dict[str, Any], data_root: Path,
                       synthetic: bool, protocol: dict[str, Any]) -> None:
    """Save a fitted model with its ``training_protocol`` (``protocol`` plus what every run records),
    ``training_split.json`` and an out-of-distribution detector fitted on its training images only (the
    threshold from its validation images)."""
    from leuk.records import write_training_split
    from leuk.training.efficientnet_se import save_model

    state = fit.trainer.state
    fit.model.config.training_protocol = {
        **protocol, "train_patients": split_info["train"]["patients"],
        "model_selection": "best checkpoint by weighted F1 on validation images of the training subjects",
        "epochs_trained": round(float(state.epoch or 0.0), 3), "global_step": int(state.global_step),
        "augmentation": repr(fit.augment) if fit.augment is not None else "none",
        "balanced_sampling": "minority oversampling (training set only)" if options.balanced else "none",
        "pretrained_backbone": options.pretrained, "backbone_lr_scale": options.backbone_lr_scale,
        "data": "synthetic (leuk synth)" if synthetic else "real",
    }
    folder.mkdir(parents=True, exist_ok=True)
    save_model(fit.model, fit.processor, folder, options.dtype)
    write_training_split(folder, split_info)
    if getattr(options, "fit_ood", True):
        from leuk.ood import fit_after_training

        fit_after_training(folder, data_root, batch_size=options.eval_batch_size or options.batch_size)


def train_all_subjects(options: Any, out: str | Path, *, val_size: float = VAL_SIZE) -> dict[str, Any]:
    """Train the recipe ``options`` on every subject of the dataset folder (the model shipped after the
    cross-validation, whose figures are its estimate) and save it to ``out`` with ``training_split.json``
    (no test part) and an out-of-distribution detector fitted on all its training images.

    ``val_size`` of each subject's images are held back for early stopping and checkpoint selection only.
    The temperature the fit sets is that of those seen-subject images; the recipe replaces it with one
    fitted on the cross-validation's out-of-fold predictions. Returns the training record.
    """
    from leuk.data.splits import all_subjects_split
    from leuk.records import training_split_record
    from leuk.training.efficientnet_se import fit_split, looks_synthetic

    out = Path(out)
    data_root, (paths, labels, groups, label_names) = _open_recipe_data(options)
    split = all_subjects_split(labels, groups, seed=options.seed, val_size=val_size)
    started = time.perf_counter()
    fit = fit_split(dataclasses.replace(options, out=str(out)), split, paths, labels, label_names, out)
    synthetic = looks_synthetic(data_root) if options.synthetic is None else options.synthetic
    split_info = training_split_record(
        split, paths, labels, groups, label_names, data_root, loader=options.dataset, synthetic=synthetic,
        protocol="all-subjects", seed=options.seed, val_size=val_size,
        validation="images of the training subjects, for early stopping and checkpoint selection only")
    state = fit.trainer.state
    _save_with_records(fit, options, out, split_info, data_root, synthetic,
                       {"split": "all-subjects", "test_patients": []})
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    record = {
        "model": options.model, "protocol": "all-subjects", "split": "none (every subject trained on)",
        "synthetic": synthetic, "train_subjects": split_info["train"]["patients"],
        "split_sizes": {name: {k: split_info[name][k] for k in ("n_patients", "n_images", "per_class")}
                        for name in ("train", "val")},
        "validation_temperature": fit.temperature,
        "best_checkpoint": {"validation_f1_weighted": state.best_metric, "global_step": state.best_global_step},
        "epochs_trained": round(float(state.epoch or 0.0), 3),
        "runtime_s": round(time.perf_counter() - started, 1),
        "validation": fit.validation_metrics,
    }
    from leuk.records import write_eval_results

    write_eval_results(out, record)
    return record


def assemble_cross_subject(records, y_true, probs, label_names, options, data_root: Path, paths, groups,
                           synthetic: bool, val_size: float, oof: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``cross_subject.json`` mapping from every fold's record, the pooled test labels/probabilities and the
    out-of-fold rows (``options``: the recipe, a dataclass; its ``as_record()`` when it has one)."""
    from leuk.metrics import classification_metrics

    pooled = classification_metrics(y_true, probs, label_names)
    return {
        "protocol": "leave-one-rare-subject-out",
        "dataset": {"loader": options.dataset, "folder": data_root.name, "n_images": len(paths),
                    "n_subjects": len(set(groups.tolist())), "label_names": label_names, "synthetic": synthetic},
        "recipe": (options.as_record() if hasattr(options, "as_record") else
                   {key: value for key, value in dataclasses.asdict(options).items() if key not in ("data", "out")}),
        "val_size": val_size,
        "folds": records,
        "pooled_test": pooled,
        "per_subject": {s: v for record in records for s, v in record["per_subject"].items()},
        "summary": summarise_folds(records, pooled),
        #: every pool image once, scored by the fold model that never saw its subject
        "out_of_fold": oof,
    }


def collect_cross_subject(options: Any, fold_dirs: list[str | Path], out: str | Path, *,
                          val_size: float = VAL_SIZE) -> dict[str, Any]:
    """Assemble :data:`CV_RESULTS_FILE` from fold folders trained separately (e.g. one process per fold,
    ``cross_subject_evaluation(..., folds=[i])``): each fold's record comes from its ``eval_results.json``,
    and its test images (``training_split.json``) are predicted again through the saved folder for the
    pooled figures; a fold whose recomputed weighted F1 differs from its record is refused."""
    from leuk.metrics import classification_metrics
    from leuk.experiments.runs import predict_saved
    from leuk.training.efficientnet_se import EVAL_RESULTS_FILE, SPLIT_FILE, load_table

    data_root = Path(options.data).resolve()
    paths, labels, groups, label_names = load_table(options)
    row_of = {Path(path).resolve().relative_to(data_root).as_posix(): i for i, path in enumerate(paths)}
    records, all_true, all_probs, oof = [], [], [], []
    for fold_dir in sorted((Path(d) for d in fold_dirs), key=lambda d: d.name):
        record = json.loads((fold_dir / EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
        split = json.loads((fold_dir / SPLIT_FILE).read_text(encoding="utf-8"))
        missing = [rel for rel in split["test"]["images"] if rel not in row_of]
        if missing:
            raise LeukError(f"{fold_dir}: {len(missing)} test image(s) are not in {data_root}, e.g. {missing[0]}")
        rows = np.asarray([row_of[rel] for rel in split["test"]["images"]], dtype=np.int64)
        probs = predict_saved(fold_dir, [paths[i] for i in rows], options)
        again = classification_metrics(labels[rows], probs, label_names)["f1_weighted"]
        if abs(again - record["test"]["f1_weighted"]) > 1e-6:
            raise LeukError(f"{fold_dir}: its saved model gives weighted F1 {again:.6f}, its record says "
                            f"{record['test']['f1_weighted']:.6f}")
        records.append({key: record[key] for key in (
            "fold", "train_subjects", "test_subjects", "split_sizes", "temperature", "best_checkpoint",
            "epochs_trained", "runtime_s", "validation", "test", "per_subject") if key in record})
        all_true.append(labels[rows])
        all_probs.append(probs)
        oof += out_of_fold_rows(record["fold"], rows, probs, record["temperature"], paths, labels, groups,
                                label_names, data_root, record["train_subjects"])
    records.sort(key=lambda r: r["fold"])
    oof.sort(key=lambda r: r["fold"])
    result = assemble_cross_subject(records, np.concatenate(all_true), np.concatenate(all_probs), label_names,
                                    options, data_root, paths, groups, bool(options.synthetic), val_size, oof)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CV_RESULTS_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
