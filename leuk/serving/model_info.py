"""What an app shows about a model: card, parameter count, held-out figures, every metric and a pinned
``from_pretrained`` snippet."""

from __future__ import annotations

import math
import re
from pathlib import Path
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from leuk.serving.registry import ModelRegistry, get_registry

if TYPE_CHECKING:
    import pandas as pd
    from leuk.hub import LoadedModel
    from leuk.hub.provenance import TrainingSummary
    from leuk.serving.samples import Sample

_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*(\n|\Z)", re.DOTALL)


@dataclass
class ModelInfo:
    """A model's description for the Models view."""

    name: str
    source: str
    revision: str | None
    is_demo: bool
    num_parameters: int
    labels: list[str]
    model_type: str
    card_markdown: str
    metrics: "pd.DataFrame"
    snippet: str
    #: What its records say it was trained on (:attr:`leuk.hub.provenance.TrainingSummary.text`), or ``""``.
    training: str = ""
    #: Its held-out figures: headline and per-subject / per-fold tables (:func:`evaluation_tables`).
    evaluation: "Evaluation | None" = None

    @property
    def summary_markdown(self) -> str:
        """One short Markdown paragraph: type, classes, size, source, revision and training data."""
        revision = f" at revision `{self.revision}`" if self.revision else ""
        demo = f" {self.training}." if self.training else (" Demo weights (no record of its training data)."
                                                          if self.is_demo else "")
        return (f"**{self.name}**: `{self.model_type}`, {self.num_parameters:,} parameters "
                f"({self.num_parameters / 1e6:.2f} M); classes: {', '.join(self.labels)}; "
                f"source: {self.source}{revision}.{demo}")


def strip_front_matter(card_text: str | None) -> str:
    """A model card without its YAML header (the metadata is shown as a table instead)."""
    if not card_text:
        return "_This model has no model card (README.md)._"
    return _FRONT_MATTER.sub("", card_text, count=1).strip() or "_The model card is empty._"


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, inner in enumerate(value):
            label = inner.get("name") or inner.get("metric") or inner.get("type") if isinstance(inner, dict) else None
            yield from _flatten(inner, f"{prefix}.{label or index}" if prefix else str(label or index))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        yield prefix, float(value)


def metrics_table(eval_results: dict | None) -> "pd.DataFrame":
    """Every finite number in a model's ``eval_results.json`` as ``metric`` / ``value`` rows (nested keys joined by dots)."""
    import pandas as pd

    from leuk.records import EVAL_RESULTS_VERSION_KEY

    rows = [row for row in _flatten(eval_results or {}) if row[0] != EVAL_RESULTS_VERSION_KEY]  # a marker, no figure
    return pd.DataFrame(rows, columns=["metric", "value"])


#: Decimals of every figure in the Models views' tables.
DECIMALS = 3
#: The per-fold metrics of a ``cross_validation`` block (Aria smears) shown in its headline and fold tables.
_CV_METRICS = ("accuracy", "f1_macro", "f1_weighted", "roc_auc")


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return round(float(value), DECIMALS)
    return None


def _mean_sd(spread: Mapping[str, Any]) -> str:
    mean, sd = _number(spread.get("mean")), _number(spread.get("std", spread.get("sd")))
    if mean is None:
        return "n/a"
    return f"{mean:.{DECIMALS}f} ± {sd:.{DECIMALS}f}" if sd is not None else f"{mean:.{DECIMALS}f}"


def _range(spread: Mapping[str, Any]) -> str:
    low, high = _number(spread.get("min")), _number(spread.get("max"))
    return f"{low:.{DECIMALS}f} – {high:.{DECIMALS}f}" if low is not None and high is not None else "n/a"


@dataclass
class Evaluation:
    """A model's held-out figures for the Models views, from its ``eval_results.json``.

    ``headline``: one row per metric (``mean ± sd over folds``, ``pooled`` over every held-out image, ``range
    over folds``, ``folds``; a ``cross_validation`` record adds ``protocol`` and ``model`` columns and has no
    pooled figure; a single split has ``held-out value`` only). ``breakdown``: one row per held-out subject
    (``cross_subject``) or per fold (``cross_validation``), titled by ``breakdown_title``. ``note``: Markdown
    naming the protocol and, when fitted, the calibration. Numbers are rounded to :data:`DECIMALS`.
    """

    headline: "pd.DataFrame"
    breakdown: "pd.DataFrame"
    breakdown_title: str = ""
    note: str = ""
    #: Which record the figures come from: ``cross_subject``, ``cross_validation``, ``test``, ``metrics`` or ``""``.
    source: str = ""
    #: In a ``cross_validation`` table with baselines: the row (``model``) of these weights, when the record says.
    shipped: str | None = None


def evaluation_tables(eval_results: Mapping[str, Any] | None, label_names: list[str] | None = None) -> Evaluation:
    """The headline and per-subject / per-fold tables of an ``eval_results.json`` of any bundled shape.

    The rows are those of the model card (:func:`leuk.hub.cards.cross_subject_context`,
    :func:`leuk.hub.cards.aria_protocols_context`, :func:`leuk.hub.cards.calibration_context`), so the apps and
    the card say the same thing.
    """
    import pandas as pd

    from leuk.hub.card_metrics import metric_id_and_name
    from leuk.hub.cards import aria_protocols_context, calibration_context, cross_subject_context

    record = eval_results if isinstance(eval_results, Mapping) else {}
    notes: list[str] = []
    shipped = None
    context = cross_subject_context(record, label_names)
    if context is not None and context["metrics"]:
        block = record["cross_subject"]
        summary = block.get("summary") or {}
        over, pooled = summary.get("over_folds") or {}, summary.get("pooled") or {}
        headline = pd.DataFrame([{
            "metric": row["name"], "mean ± sd over folds": _mean_sd(over[row["key"]]),
            "pooled": _number(pooled.get(row["key"])), "range over folds": _range(over[row["key"]]),
            "folds": over[row["key"]].get("n_folds", context["n_folds"]),
        } for row in context["metrics"]])
        per_subject = block.get("per_subject") or {}
        breakdown = pd.DataFrame([{
            "subject": row["subject"], "class": row["label_display"], "images": row["n_images"],
            "accuracy": _number((per_subject.get(row["subject"]) or {}).get("accuracy")),
            "held out in fold": row["fold"],
        } for row in context["subjects"]], columns=["subject", "class", "images", "accuracy", "held out in fold"])
        notes.append(f"**Held-out figures**: protocol `{context['protocol']}`, {context['n_folds']} folds; each "
                     "subject is scored by the fold model that never saw it"
                     + (f" ({context['pool_text']})" if context["pool_text"] else "")
                     + ". *Pooled*: over every held-out image of every fold.")
        source, title = "cross_subject", f"Per subject ({len(breakdown)} subjects, each held out by one fold)"
    else:
        aria = aria_protocols_context(record)
        if aria is not None and aria["rows"]:
            summary = (record.get("cross_validation") or {}).get("summary") or {}
            rows = []
            for key in _CV_METRICS:
                for row in aria["rows"]:
                    spread = (summary.get(row["protocol"]) or {}).get(row["model"]) or {}
                    if isinstance(spread.get(key), Mapping):
                        rows.append({"metric": metric_id_and_name(key)[1], "protocol": row["protocol"],
                                     "model": row["model"], "mean ± sd over folds": _mean_sd(spread[key]),
                                     "range over folds": _range(spread[key]), "folds": row["n_folds"]})
            headline = pd.DataFrame(rows)
            folds = [f for f in (record.get("cross_validation") or {}).get("folds") or [] if isinstance(f, Mapping)]
            breakdown = pd.DataFrame([{
                "protocol": f.get("protocol"), "model": f.get("model"), "fold": f.get("fold"),
                "test images": f.get("n_test"), **{metric_id_and_name(k)[1]: _number(f.get(k)) for k in _CV_METRICS},
            } for f in folds])
            described = "; ".join(f"`{name}`: {text}" for name, text in aria["descriptions"].items())
            notes.append(f"**Held-out figures**: {aria['n_folds']}-fold cross-validation under "
                         f"{len(aria['descriptions']) or 'its'} protocols" + (f" ({described})" if described else "")
                         + "." + (f" {aria['note']}" if aria["note"] else ""))
            source, title = "cross_validation", f"Per fold ({len(breakdown)} folds: protocol × model × fold)"
            shipped = aria["shipped"]
        else:
            split = next((key for key in ("test", "metrics") if isinstance(record.get(key), Mapping)), "")
            metrics = record.get(split) or {}
            headline = pd.DataFrame([{"metric": metric_id_and_name(key)[1], "held-out value": _number(value)}
                                     for key, value in metrics.items() if _number(value) is not None],
                                    columns=["metric", "held-out value"])
            breakdown = pd.DataFrame(columns=["subject", "class", "images", "accuracy"])
            if split:
                notes.append(f"**Held-out figures**: the `{split}` split only (one split, no spread over folds).")
            source, title = split, ""
    calibration = calibration_context(record)
    if calibration is not None:
        notes.append(f"**Calibration**: temperature {calibration['temperature']}; a verdict is *confident* at a "
                     f"probability ≥ {calibration['threshold']}: out of fold, {calibration['confident_share']} of "
                     f"images are confident and {calibration['confident_accuracy']} of those are right "
                     f"(target {calibration['target']}).")
    return Evaluation(headline=headline, breakdown=breakdown, breakdown_title=title, note="\n\n".join(notes),
                      source=source, shipped=shipped)


def from_pretrained_snippet(loaded: "LoadedModel") -> str:
    """Python that loads this exact model with plain transformers (pinned revision) and prints the logits of an
    image: it runs as printed, on a CPU, in a Python without leuk (:func:`leuk.hub.cards.loading_snippet`).

    A bundled demo folder and a bundled sample of its task are named by their paths inside the repository (run
    it from the root of a clone); another folder by its absolute path; a Hub model by its id and revision (with
    ``cell.png`` standing for your image).
    """
    from leuk.hub.cards import loading_snippet
    from leuk.serving.samples import samples_for_labels

    repo = Path(__file__).resolve().parents[2]

    def shown(path: Path) -> str:
        try:
            return path.resolve().relative_to(repo).as_posix()
        except ValueError:
            return str(path)

    if loaded.source == "hub":
        target = loaded.spec.split("@", 1)[0]
        leuk_spec = f"{target}@{loaded.revision}" if loaded.revision else target
        return loading_snippet(target, revision=loaded.revision, leuk_spec=leuk_spec, image="cell.png")
    target = shown(Path(loaded.path)) if loaded.path is not None else loaded.spec
    samples = samples_for_labels(list(loaded.labels))
    image = (shown(samples[0]) if not Path(target).is_absolute() else str(samples[0])) if samples else "cell.png"
    return loading_snippet(target, image=image, leuk_spec=loaded.spec)


def model_info(model_name: str | None = None, *, registry: ModelRegistry | None = None) -> ModelInfo:
    """Card, size, metrics and loading snippet of a configured model (default: the first)."""
    registry = registry or get_registry()
    name = registry.check_name(model_name)
    loaded = registry.get(name)
    return ModelInfo(
        name=name,
        source=loaded.source,
        revision=loaded.revision,
        is_demo=loaded.is_demo,
        num_parameters=int(loaded.num_parameters),
        labels=list(loaded.labels),
        model_type=str(getattr(loaded.model.config, "model_type", type(loaded.model).__name__)),
        card_markdown=strip_front_matter(loaded.card_text),
        metrics=metrics_table(loaded.eval_results),
        snippet=from_pretrained_snippet(loaded),
        training=_training_text(name, registry),
        evaluation=evaluation_tables(loaded.eval_results, list(loaded.labels)),
    )


def _training_text(name: str, registry: ModelRegistry) -> str:
    summary = training_summary_for(name, registry=registry)
    return summary.text if summary is not None and summary.synthetic is not None else ""


def training_summary_for(model_name: str | None, *, registry: ModelRegistry | None = None,
                         load: bool = True) -> "TrainingSummary | None":
    """What a configured model was trained on, from its ``config.json`` / ``eval_results.json``.

    A bundled ``demo:<name>`` is answered from its folder's JSON files without loading it; other models are
    loaded (``load=False``: ``None`` for them).
    """
    from leuk.hub.loader import DEMO_PREFIX, demo_models_dir
    from leuk.hub.provenance import folder_training_summary, training_summary

    registry = registry or get_registry()
    name = registry.check_name(model_name)
    if name.startswith(DEMO_PREFIX):
        return folder_training_summary(demo_models_dir() / name[len(DEMO_PREFIX):].strip())
    if not load:
        return None
    loaded = registry.get(name)
    config = loaded.model.config.to_dict() if hasattr(loaded.model.config, "to_dict") else {}
    return training_summary(config, loaded.eval_results)


def banner_for(model_name: str | None, *, registry: ModelRegistry | None = None, load: bool = True) -> str:
    """The banner of a bundled model (``demo:<name>``) or of one trained on synthetic data, else ``""``.

    What it says comes from the model's records (:func:`training_summary_for`): synthetic look-alikes (the
    demo-weights warning), or real data with its training subjects and headline cross-subject figure.
    ``load=False`` answers from the spec and the bundled folder alone, for page layout before models are loaded.
    """
    from leuk.serving.notices import model_banner

    registry = registry or get_registry()
    name = registry.check_name(model_name)
    demo = name.startswith("demo:") if not load else registry.is_demo(name)
    if not demo:
        return ""
    return model_banner(name, training_summary_for(name, registry=registry, load=load))


def sample_task(model_name: str | None = None, *, registry: ModelRegistry | None = None) -> str | None:
    """The bundled sample task a model takes (``cnmc`` single cells, ``aria`` smears): its family's dataset
    (:attr:`leuk.models.family.ModelFamily.dataset`), else the task whose classes are the model's; ``None`` when
    neither says."""
    from leuk.serving.samples import TASK_TITLES, task_for_labels

    registry = registry or get_registry()
    loaded = registry.get(model_name)
    family = getattr(loaded, "family", None)
    dataset = getattr(family, "dataset", None)
    if dataset in TASK_TITLES:
        return dataset
    return task_for_labels(list(loaded.labels))


def samples_for_model(model_name: str | None = None, *, registry: ModelRegistry | None = None) -> list["Sample"]:
    """The bundled samples the model takes (those of :func:`sample_task`); every sample when no task is known."""
    from leuk.serving.samples import list_samples

    task = sample_task(model_name, registry=registry)
    return list_samples(task) if task is not None else list_samples()


def model_labels(model_name: str | None = None, *, registry: ModelRegistry | None = None) -> list[str]:
    """Class names of a configured model, in logit order."""
    registry = registry or get_registry()
    return list(registry.get(model_name).labels)
