"""Ship a model trained on every subject, calibrated on the cross-validation's out-of-fold predictions.

A model trained on all subjects has no held-out subject left to calibrate on or to score. Its estimate is
the cross-subject validation of the same recipe, and its temperature and verdict threshold are fitted on that
validation's **out-of-fold** predictions: every image scored by the fold model that never saw its subject
(:func:`leuk.experiments.cross_subject.out_of_fold_rows`). :func:`calibrate_out_of_fold` does the fitting and
says how well the threshold carries to unseen subjects (fitted on the other folds, applied to each fold);
:func:`ship_all_subject_model` writes the shipped folder: ``config.json``'s temperature, ``calibration.json``,
``out_of_fold.csv`` (the rows it was fitted on), ``eval_results.json`` with the cross-subject table and the
model card.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from leuk.errors import LeukError
from leuk.records import CALIBRATION_FILE, EVAL_RESULTS_FILE, OUT_OF_FOLD_FILE, write_eval_results

__all__ = ["calibrate_out_of_fold", "read_out_of_fold", "ship_all_subject_model"]


def _arrays(rows: Sequence[Mapping[str, Any]], label_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    logits = np.asarray([row["logits"] for row in rows], dtype=np.float64)
    labels = np.asarray([label_names.index(row["label"]) for row in rows], dtype=np.int64)
    folds = np.asarray([int(row["fold"]) for row in rows], dtype=np.int64)
    return logits, labels, folds


def _fit(logits: np.ndarray, labels: np.ndarray, target: float) -> tuple[float, float | None]:
    from leuk.metrics import fit_temperature, softmax
    from leuk.verdict import selective_threshold

    temperature = fit_temperature(logits, labels)
    probs = softmax(logits / temperature)
    return temperature, selective_threshold(probs.max(axis=1), probs.argmax(axis=1) == labels, target=target)


def calibrate_out_of_fold(rows: Sequence[Mapping[str, Any]], label_names: list[str], *,
                          target_accuracy: float = 0.95) -> dict[str, Any]:
    """Temperature and verdict threshold fitted on out-of-fold rows, with what they give.

    Returns ``temperature``, ``uncertain_below`` (the lowest calibrated top probability at which the calls
    kept confident are at least ``target_accuracy`` right; :data:`leuk.verdict.UNCERTAIN_BELOW` when none
    reaches it, with ``target_reached`` false), the in-sample share and accuracy of confident calls overall
    and per subject, and ``leave_one_fold_out``: temperature and threshold fitted on the other folds' rows
    and applied to each fold's, pooled (what to expect on subjects the fit never saw).
    """
    from leuk.metrics import classification_metrics, softmax
    from leuk.verdict import UNCERTAIN_BELOW, selective_summary

    if not rows:
        raise LeukError("no out-of-fold predictions to calibrate on")
    logits, labels, folds = _arrays(rows, label_names)
    temperature, threshold = _fit(logits, labels, target_accuracy)
    used = threshold if threshold is not None else UNCERTAIN_BELOW
    probs = softmax(logits / temperature)
    top, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    subjects = np.asarray([str(row["subject"]) for row in rows])
    per_subject = {}
    for subject in sorted(set(subjects.tolist())):
        mask = subjects == subject
        per_subject[subject] = {"label": label_names[int(labels[mask][0])],
                                **selective_summary(top[mask], correct[mask], used)}
    crossed_margin, crossed_correct, crossed_thresholds = [], [], {}
    for fold in sorted(set(folds.tolist())):
        held, rest = folds == fold, folds != fold
        if not rest.any():
            continue
        fold_t, fold_threshold = _fit(logits[rest], labels[rest], target_accuracy)
        fold_probs = softmax(logits[held] / fold_t)
        fold_used = fold_threshold if fold_threshold is not None else UNCERTAIN_BELOW
        crossed_thresholds[str(fold)] = {"temperature": fold_t, "uncertain_below": fold_used}
        # the margin over the fold's own threshold: confident where it is >= 0
        crossed_margin.append(fold_probs.max(axis=1) - fold_used)
        crossed_correct.append(fold_probs.argmax(axis=1) == labels[held])
    leave_one_fold_out = None
    if crossed_margin:
        leave_one_fold_out = {**selective_summary(np.concatenate(crossed_margin), np.concatenate(crossed_correct), 0.0),
                              "per_fold": crossed_thresholds}
    return {
        "temperature": float(temperature),
        "uncertain_below": float(used),
        "target_accuracy": float(target_accuracy),
        "target_reached": threshold is not None,
        "fitted_on": (f"out-of-fold predictions of {len(set(folds.tolist()))} cross-subject fold models: each of "
                      f"{len(rows)} images scored by the fold model that never saw its subject"),
        "n_images": len(rows),
        "n_subjects": len(per_subject),
        "out_of_fold": {**selective_summary(top, correct, used),
                        "metrics_calibrated": _scalars(classification_metrics(labels, probs, label_names))},
        "per_subject": per_subject,
        "leave_one_fold_out": leave_one_fold_out,
    }


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _write_out_of_fold(path: Path, rows: Sequence[Mapping[str, Any]], label_names: list[str],
                       temperature: float) -> None:
    from leuk.metrics import softmax

    logits, _, _ = _arrays(rows, label_names)
    probs = softmax(logits / temperature)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "subject", "label", "fold", *(f"logit_{n}" for n in label_names),
                         *(f"p_{n}" for n in label_names)])
        for row, p in zip(rows, probs):
            writer.writerow([row["image"], row["subject"], row["label"], row["fold"],
                             *(f"{v:.6f}" for v in row["logits"]), *(f"{v:.6f}" for v in p)])


def read_out_of_fold(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a shipped folder's ``out_of_fold.csv`` in the form :func:`calibrate_out_of_fold` takes."""
    path = Path(folder) / OUT_OF_FOLD_FILE
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        logit_columns = [c for c in reader.fieldnames or () if c.startswith("logit_")]
        return [{"image": r["image"], "subject": r["subject"], "label": r["label"], "fold": int(r["fold"]),
                 "logits": [float(r[c]) for c in logit_columns]} for r in reader]


def _cross_subject_record(result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "protocol": result["protocol"],
        "summary": result["summary"],
        "per_subject": result["per_subject"],
        "folds": [{k: r[k] for k in ("fold", "train_subjects", "test_subjects", "test", "epochs_trained",
                                     "temperature") if k in r} for r in result["folds"]],
        "recipe": result.get("recipe"),
    }


def ship_all_subject_model(final_dir: str | Path, cv_result: Mapping[str, Any], ship: str | Path, *,
                           command: str, baseline: Mapping[str, Any] | None = None,
                           tried: Sequence[tuple[Mapping[str, Any], str]] = (),
                           target_accuracy: float = 0.95) -> dict[str, Any]:
    """Copy the all-subject model ``final_dir`` to ``ship``, calibrated on ``cv_result``'s out-of-fold rows.

    ``cv_result`` is a ``cross_subject.json`` of the same recipe; ``baseline`` another run's
    ``eval_results.json`` whose ``cross_subject`` record (same folds) goes beside it as ``baseline_cross_subject``;
    ``tried``: ``(cross_subject.json, note)`` of recipes run on the same folds before this one (kept as
    ``recipes_tried``, with the note saying how the choice was made).
    Refuses when the model was not trained on every subject the validation scored.
    Returns ``{"calibration", "summary"}``.
    """
    from leuk.hub.cards import write_model_card

    final_dir, ship = Path(final_dir), Path(ship)
    final = json.loads((final_dir / EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
    rows = cv_result.get("out_of_fold") or []
    label_names = list(cv_result["dataset"]["label_names"])
    scored = {str(row["subject"]) for row in rows}
    trained = set(map(str, final["train_subjects"]))
    if scored - trained:
        raise LeukError(f"the model in {final_dir} was not trained on subject(s) {sorted(scored - trained)} "
                        "that the cross-validation scored: it is not the all-subject model of this recipe")
    for fold in cv_result["folds"]:  # no fold's own training subject may feed its out-of-fold rows
        seen = set(map(str, fold["train_subjects"]))
        leaked = {str(r["subject"]) for r in rows if int(r["fold"]) == int(fold["fold"])} & seen
        if leaked:
            raise LeukError(f"fold {fold['fold']} scored its own training subject(s) {sorted(leaked)}")
    calibration = calibrate_out_of_fold(rows, label_names, target_accuracy=target_accuracy)

    if ship.exists():
        shutil.rmtree(ship)
    shutil.copytree(final_dir, ship, ignore=shutil.ignore_patterns("checkpoints"))
    config_path = ship / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["temperature"] = calibration["temperature"]
    protocol = dict(config.get("training_protocol") or {})
    protocol["calibration"] = ("temperature and verdict threshold fitted on out-of-fold predictions of the "
                               "cross-subject folds (calibration.json)")
    config["training_protocol"] = protocol
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (ship / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
    _write_out_of_fold(ship / OUT_OF_FOLD_FILE, rows, label_names, calibration["temperature"])

    eval_results = {
        **final,
        "synthetic": False,
        "dataset": "C-NMC 2019 (real cells; the pool of 14 ALL and 3 HEM subjects)",
        "training_subjects": final["train_subjects"],
        "temperature": calibration["temperature"],
        # the card's and the Hub model-index's figures: the recipe's pooled out-of-fold figures, its estimate
        "split": "cross-subject out-of-fold (every subject scored by a fold model that never saw it)",
        "metrics": cv_result["pooled_test"],
        "cross_subject": _cross_subject_record(cv_result),
        "calibration": {k: calibration[k] for k in ("temperature", "uncertain_below", "target_accuracy",
                                                    "target_reached", "fitted_on", "out_of_fold",
                                                    "leave_one_fold_out")},
        "recipe": cv_result.get("recipe"),
        "command": command,
    }
    if tried:
        eval_results["recipes_tried"] = [{**_cross_subject_record(result), "note": note} for result, note in tried]
    if baseline is not None and baseline.get("cross_subject"):
        eval_results["baseline_cross_subject"] = {
            "model": baseline.get("model"),
            "pretrained_backbone": bool((baseline.get("recipe") or {}).get("pretrained")),
            "image_size": (baseline.get("recipe") or {}).get("image_size"),
            "lr": (baseline.get("recipe") or {}).get("lr"),
            **{k: v for k, v in baseline["cross_subject"].items() if k in ("protocol", "summary", "per_subject",
                                                                            "folds")},
        }
    write_eval_results(ship, eval_results)
    write_model_card(ship)
    oof = calibration["out_of_fold"]
    crossed = calibration["leave_one_fold_out"] or {}
    pooled = cv_result["summary"]["pooled"]
    summary = (f"shipped {final_dir} to {ship}: trained on {len(trained)} subjects; cross-subject pooled weighted "
               f"F1 {pooled['f1_weighted']:.4f}, AUC {pooled['roc_auc']:.4f}, specificity "
               f"{pooled['specificity']:.3f}; temperature {calibration['temperature']:.3f}, confident at "
               f"p >= {calibration['uncertain_below']:.3f}: {oof['confident_share']:.1%} of out-of-fold calls, "
               f"{oof['confident_accuracy'] or float('nan'):.1%} right (leave-one-fold-out: "
               f"{crossed.get('confident_share') or float('nan'):.1%} confident, "
               f"{crossed.get('confident_accuracy') or float('nan'):.1%} right)")
    return {"calibration": calibration, "summary": summary}
