"""``leuk evaluate --model M --data D [--split test|all] --out DIR``: metrics, per-image predictions and plots.

With ``--split test`` (the default when the model records its training split) only the test patients
recorded with the model are evaluated, so the figure is comparable with the model's ``eval_results.json``.
Writes ``metrics.json``, ``predictions.csv``, ``confusion_matrix.png``, ``roc.png`` and ``reliability.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Hub id[@revision], save_pretrained folder or demo:<name>")
    parser.add_argument("--data", required=True, help="dataset folder (C-NMC or Aria layout)")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics.json, predictions and plots")
    parser.add_argument("--split", choices=("test", "all"), default=None,
                        help="test: the test patients recorded with the model (default when recorded); all: every image")
    parser.add_argument("--dataset", choices=("auto", "cnmc", "aria"), default="auto",
                        help="layout of --data (auto: from the model's labels)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")


def _recorded_split(loaded: Any) -> tuple[dict, Any]:
    """(config.training_protocol, the parsed training_split.json or None) of a loaded model."""
    from leuk.records import read_training_split

    protocol = getattr(loaded.model.config, "training_protocol", None) or {}
    return dict(protocol), read_training_split(loaded.path)


def _trained_on_every_subject(protocol: dict, split_info: Any) -> bool:
    """Whether the model was trained on every subject of its dataset (no test part: a model shipped after a
    cross-validation, which is its estimate)."""
    test = split_info.part("test") if split_info is not None else None
    return split_info is not None and not (test and (test.patients or test.images)) and not protocol.get(
        "test_patients")


def _all_training_images_text(model: str, data: str, n_images: int, trained: set, eval_results: Any) -> str:
    """What ``leuk evaluate`` says instead of a training-set score."""
    lines = [f"{model}: every one of the {n_images} images in {data} is of a subject this model was trained on "
             f"({len(trained)} subjects); a score on them would be a training-set score, so none is printed "
             "(--split all computes it anyway)."]
    cross = (eval_results or {}).get("cross_subject") if isinstance(eval_results, dict) else None
    pooled = ((cross or {}).get("summary") or {}).get("pooled") or {}
    if pooled:
        folds = ((cross or {}).get("summary") or {}).get("over_folds", {}).get("f1_weighted", {}).get("n_folds")
        figures = ", ".join(f"{name} {pooled[key]:.3f}" for key, name in (
            ("f1_weighted", "weighted F1"), ("roc_auc", "AUC"), ("sensitivity", "sensitivity"),
            ("specificity", "specificity")) if pooled.get(key) is not None)
        lines.append(f"Its estimate is the cross-subject validation ({folds} folds, each subject scored by a model "
                     f"that never saw it), pooled: {figures}. The model card and eval_results.json "
                     "(cross_subject) give every fold and subject.")
    lines.append("Score it on subjects it never saw: give a folder of other subjects' images.")
    return "\n".join(lines)


def _test_rows(protocol: dict, split_info: Any, paths: list[str], groups: np.ndarray, root: Path,
               data: str) -> tuple[np.ndarray, str]:
    """Row indices of the recorded test split in this dataset, and a note on how they were matched.

    ``split_info`` is a :class:`leuk.records.TrainingSplit` (any family's format) or ``None``."""
    from leuk.errors import LeukError
    from leuk.records import relative_path

    test = split_info.part("test") if split_info is not None else None
    recorded_patients = protocol.get("test_patients") or (test.patients if test else None)
    split_protocol = protocol.get("split") or (split_info.protocol if split_info is not None else None)
    if split_protocol == "patient" and recorded_patients:
        wanted = {str(p) for p in recorded_patients}
        rows = np.flatnonzero(np.isin(groups, list(wanted)))
        found = set(groups[rows].tolist())
        if not found:
            raise LeukError(f"none of the model's {len(wanted)} test patients is in {data}: "
                            "is this the dataset the model was trained on? (use --split all otherwise)")
        missing = len(wanted - found)
        note = f"{len(found)} recorded test patients" + (f" ({missing} of {len(wanted)} missing from the data)"
                                                          if missing else "")
        return rows, note
    images = test.images if test else None
    if images:
        wanted_images = set(images)
        relative = [relative_path(p, root) for p in paths]
        rows = np.asarray([i for i, rel in enumerate(relative) if rel in wanted_images], dtype=np.int64)
        if len(rows) == 0:
            raise LeukError(f"none of the model's {len(wanted_images)} recorded test images is in {data}")
        return rows, f"{len(rows)} recorded test images ({split_protocol or 'unknown'} protocol)"
    raise LeukError("the model records no test split (no training_protocol.test_patients or training_split.json); "
                    "use --split all")


def _groups_text(patient_ids: bool, n_patients: int, n_images: int, protocol: str | None) -> str:
    """``12 patients, 340 images``, or for images without patient ids (Aria without a patient map, each image its
    own pseudo-patient) ``609 images (no patient ids; blocks of file numbers)``: never a patient count."""
    if patient_ids:
        return f"{n_patients} patients, {n_images} images"
    grouping = "blocks of file numbers" if protocol == "block" else "each image on its own"
    return f"{n_images} images (no patient ids; {grouping})"


def _label_mapping(data_names: list[str], model_names: list[str]) -> np.ndarray:
    from leuk.errors import LeukError

    lower = [name.lower() for name in model_names]
    missing = [name for name in data_names if name.lower() not in lower]
    if missing:
        raise LeukError(f"the data's classes {data_names} do not match the model's {model_names}")
    return np.asarray([lower.index(name.lower()) for name in data_names], dtype=np.int64)


def run(args: argparse.Namespace) -> int:
    from leuk import data as leuk_data
    from leuk.data.splits import patient_set_hash
    from leuk.errors import LeukError
    from leuk.hub import load_model
    from leuk.inference import Predictor
    from leuk.metrics import classification_metrics, format_metrics, plot_confusion_matrix, plot_roc, reliability_diagram
    from leuk.records import has_patient_ids

    if args.batch_size < 1:
        raise LeukError("--batch-size must be at least 1")
    loaded = load_model(args.model, device=args.device)
    predictor = Predictor(loaded.model, loaded.processor, device=args.device, batch_size=args.batch_size)
    model_names = predictor.label_names
    layout = args.dataset
    if layout == "auto":
        layout = "cnmc" if {n.lower() for n in model_names} == {"hem", "all"} else "aria"
    dataset = {"cnmc": leuk_data.load_cnmc, "aria": leuk_data.load_aria}[layout](args.data)
    table = dataset.select_columns(["path", "label", "patient_id"])
    paths = [str(p) for p in table["path"]]
    groups = np.asarray([str(p) for p in table["patient_id"]])
    to_model = _label_mapping(list(dataset.features["label"].names), model_names)
    labels = to_model[np.asarray(table["label"], dtype=np.int64)]
    root = Path(args.data).resolve()

    protocol, split_info = _recorded_split(loaded)
    split = args.split or ("test" if protocol.get("test_patients") or split_info is not None else "all")
    if split == "test" and _trained_on_every_subject(protocol, split_info):
        trained = set(split_info.part("train").patients) | set(split_info.part("val").patients)
        rows = np.flatnonzero(~np.isin(groups, sorted(trained)))
        if len(rows) == 0:
            print(_all_training_images_text(args.model, args.data, len(paths), trained, loaded.eval_results))
            return 0
        split = "unseen subjects"
        note = f"the {len(set(groups[rows].tolist()))} subjects of the data this model never trained on"
    elif split == "test":
        rows, note = _test_rows(protocol, split_info, paths, groups, root, args.data)
    else:
        rows, note = np.arange(len(paths)), "every image"

    predictions = predictor.predict_images([paths[i] for i in rows], progress=True)
    failed = [p for p in predictions if not p.ok]
    for p in failed:
        print(f"error: {p.error}", file=sys.stderr)
    good = np.asarray([i for i, p in enumerate(predictions) if p.ok], dtype=np.int64)
    if len(good) == 0:
        raise LeukError("no image could be read")
    probabilities = np.asarray([[predictions[i].probabilities[n] for n in model_names] for i in good])
    metrics = classification_metrics(labels[rows[good]], probabilities, model_names)

    patients = sorted(set(groups[rows].tolist()))
    patient_ids = has_patient_ids(groups[rows].tolist())
    report = {
        "model": args.model,
        "data": str(root),
        "dataset": layout,
        "split": split,
        "selection": note,
        "protocol": protocol.get("split") or (split_info.protocol if split_info is not None else None),
        "n_patients": len(patients) if patient_ids else None,
        "patient_ids": patient_ids,
        "patients_hash": patient_set_hash(patients),
        "recorded_test_patients_hash": protocol.get("test_patients_hash")
        or (split_info.test_patients_hash if split_info is not None else None),
        "unreadable_images": len(failed),
        "temperature": float(getattr(loaded.model.config, "temperature", 1.0)),
        "metrics": metrics,
    }
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "label", "predicted", "probability", *(f"p_{n}" for n in model_names),
                         "error"])
        for index, prediction in zip(rows, predictions):
            writer.writerow([paths[index], groups[index], model_names[labels[index]], prediction.label or "",
                             "" if prediction.top_probability is None else prediction.top_probability,
                             *(prediction.probabilities.get(n, "") for n in model_names), prediction.error or ""])
    y_true = labels[rows[good]]
    figures = {
        "confusion_matrix.png": plot_confusion_matrix(metrics["confusion_matrix"], model_names),
        "roc.png": plot_roc(y_true, probabilities, model_names),
        "reliability.png": reliability_diagram(y_true, probabilities),
    }
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=120)

    print(f"{args.model} on {args.data} ({split}: {note}; "
          f"{_groups_text(patient_ids, len(patients), metrics['n'], report['protocol'])})")
    print(format_metrics(metrics))
    print(f"written to {out}")
    return 0
