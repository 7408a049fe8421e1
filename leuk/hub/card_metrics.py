"""What an evaluation or Monte Carlo record becomes on a card: metric names and Hub ids, the ``model-index``
entries, and the Monte Carlo summary table. Plain mappings in, plain values out."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping

from leuk.errors import LeukError
from leuk.records import EVAL_RESULTS_VERSION_KEY

__all__ = ["TASK_TYPE", "eval_results_to_card", "format_number", "is_number", "load_mc_summary", "meta_text", "metric_entries",
           "metric_id_and_name", "monte_carlo_table", "read_json_file", "split_eval_json"]

TASK_TYPE = "image-classification"

# leuk metric name -> (Hub metric id, display name); averages (_macro, _weighted...) are split off first
_METRIC_IDS: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "Accuracy"),
    "balanced_accuracy": ("balanced_accuracy", "Balanced accuracy"),
    "f1": ("f1", "F1"),
    "precision": ("precision", "Precision"),
    "recall": ("recall", "Recall"),
    "roc_auc": ("roc_auc", "ROC AUC"),
    "auc": ("roc_auc", "ROC AUC"),
    "mcc": ("matthews_correlation", "MCC"),
    "sensitivity": ("recall", "Sensitivity"),
    "specificity": ("specificity", "Specificity"),
    "ece": ("ece", "Expected calibration error"),
    "cohen_kappa": ("cohen_kappa", "Cohen's kappa"),
}
_AVERAGES = ("macro", "weighted", "micro", "binary", "samples", "ovr", "ovo")
# keys of an eval JSON that describe the run rather than measure it
_METADATA_KEYS = {"n", "positive_label", "label_names", "confusion_matrix", "per_class", "seed", "iteration"}


def read_json_file(path: str | Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise LeukError(f"{what} {path} does not exist") from err
    except (OSError, ValueError) as err:
        raise LeukError(f"{what} {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise LeukError(f"{what} {path} must hold a JSON object")
    return data


def split_eval_json(data: Mapping[str, Any]) -> tuple[dict, dict]:
    """(metrics, metadata) of an eval JSON: metrics may sit under ``metrics``/``test`` or at the top level. The
    schema version (:data:`leuk.records.EVAL_RESULTS_VERSION_KEY`) marks the record, so it is in neither."""
    data = {k: v for k, v in data.items() if k != EVAL_RESULTS_VERSION_KEY}
    for key in ("metrics", "test_metrics", "test"):
        if isinstance(data.get(key), Mapping):
            return dict(data[key]), {k: v for k, v in data.items() if k != key}
    return dict(data), {}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def metric_id_and_name(key: str) -> tuple[str, str, str]:
    """(Hub metric id, display name, average) of a leuk metric key such as ``f1_weighted``."""
    base, _, average = key.rpartition("_")
    if not base or average not in _AVERAGES:
        base, average = key, ""
    metric_id, display = _METRIC_IDS.get(base, (base, base.replace("_", " ").capitalize()))
    return metric_id, (f"{display} ({average})" if average else display), average


def metric_entries(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every scalar metric as ``{key, type, name, config, value}``, per-class sensitivity/specificity included."""
    entries = []
    for key, value in metrics.items():
        if key in _METADATA_KEYS or not is_number(value):
            continue
        metric_id, name, average = metric_id_and_name(key)
        entries.append({"key": key, "type": metric_id, "name": name, "config": average or None, "value": float(value)})
    per_class = metrics.get("per_class")
    if isinstance(per_class, Mapping) and "sensitivity" not in metrics:
        for label, values in per_class.items():
            for key in ("sensitivity", "specificity"):
                value = values.get(key) if isinstance(values, Mapping) else None
                if is_number(value):
                    metric_id, display = _METRIC_IDS[key]
                    entries.append({"key": f"{key}_{label}", "type": metric_id, "name": f"{display} ({label})",
                                    "config": str(label), "value": float(value)})
    return entries


def eval_results_to_card(
    eval_json: Mapping[str, Any], *, dataset_name: str, dataset_type: str, dataset_split: str | None = None
) -> list:
    """``huggingface_hub.EvalResult`` list (one per scalar metric) for a card's ``model-index``."""
    from huggingface_hub import EvalResult

    metrics, _ = split_eval_json(eval_json)
    return [
        EvalResult(
            task_type=TASK_TYPE,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=entry["type"],
            metric_name=entry["name"],
            metric_config=entry["config"],
            metric_value=round(entry["value"], 6),
        )
        for entry in metric_entries(metrics)
    ]


def _summary_rows(data: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Mapping]]:
    if isinstance(data, Mapping):
        if "mean" in data and is_number(data.get("mean")):
            yield prefix, data
            return
        for key, value in data.items():
            yield from _summary_rows(value, prefix + (str(key),))


def meta_text(metadata: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    """``key: `value`; ...`` for the scalar entries of a metadata mapping."""
    items = [f"{key}: `{value}`" for key, value in metadata.items()
             if key not in skip and not isinstance(value, (Mapping, list, tuple))]
    return "; ".join(items)


def format_number(value: Any, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, ``n/a`` when it is not a finite number."""
    return f"{float(value):.{digits}f}" if is_number(value) else "n/a"


def monte_carlo_table(summary: Mapping[str, Any]) -> str:
    """Markdown table of a Monte Carlo summary: every ``{mean, sd, p2_5, p97_5, n}`` leaf becomes one row."""
    rows = list(_summary_rows(summary))
    if not rows:
        raise LeukError("Monte Carlo summary holds no {mean, sd, ...} entries")
    lines = ["| metric | mean | sd | 95% interval | iterations |", "|---|---|---|---|---|"]
    for path, stats in rows:
        low = stats.get("p2_5", stats.get("ci_low"))
        high = stats.get("p97_5", stats.get("ci_high"))
        if isinstance(stats.get("interval"), (list, tuple)) and len(stats["interval"]) == 2:
            low, high = stats["interval"]
        interval = f"{format_number(low)} – {format_number(high)}" if is_number(low) and is_number(high) else "n/a"
        sd = stats.get("sd", stats.get("std"))
        count = stats.get("n", "")
        label = " / ".join(part for part in path if part not in ("metrics", "summary")) or "value"
        lines.append(f"| {label} | {format_number(stats['mean'])} | {format_number(sd)} | {interval} | {count} |")
    return "\n".join(lines)


def load_mc_summary(mc_summary: str | Path | Mapping | None) -> tuple[str | None, dict]:
    """(markdown, metadata) for a Monte Carlo summary given as a dict, a ``summary.json`` or a ``summary.md``."""
    if mc_summary is None:
        return None, {}
    if isinstance(mc_summary, Mapping):
        data = dict(mc_summary)
    else:
        path = Path(mc_summary)
        if path.is_dir():
            candidates = [path / "summary.json", path / "summary.md"]
            path = next((c for c in candidates if c.is_file()), candidates[0])
        if path.suffix.lower() == ".md":
            if not path.is_file():
                raise LeukError(f"Monte Carlo summary {path} does not exist")
            return path.read_text(encoding="utf-8").strip(), {}
        data = read_json_file(path, "Monte Carlo summary")
    metadata = {k: v for k, v in data.items() if not isinstance(v, (Mapping, list))}
    return monte_carlo_table(data), metadata
