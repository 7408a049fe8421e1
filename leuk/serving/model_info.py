"""What an app shows about a model: card, parameter count, metrics and a pinned ``from_pretrained`` snippet."""

from __future__ import annotations

import math
import re
from pathlib import Path
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

    rows = list(_flatten(eval_results or {}))
    return pd.DataFrame(rows, columns=["metric", "value"])


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
