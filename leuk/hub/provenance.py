"""What a saved model was trained on, read from its ``config.json`` and ``eval_results.json`` (no weights loaded).

The apps' banners, the Models views and the model cards say what a model was trained on from these records
instead of a fixed sentence: real or synthetic data, how many training subjects of each class, and the headline
cross-subject figure (mean ± sd over folds) when ``eval_results.json`` carries a ``cross_subject`` block
(``train/train_real_efficientnet_se.py --ship`` writes one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

#: The cross-subject metric a one-line summary quotes, and how it is named there.
HEADLINE_METRIC = ("f1_weighted", "weighted F1")


@dataclass(frozen=True)
class Headline:
    """A cross-subject figure: mean and standard deviation over folds."""

    metric: str
    name: str
    mean: float
    std: float | None
    n_folds: int | None
    min: float | None = None
    max: float | None = None
    protocol: str = "cross-subject"

    @property
    def text(self) -> str:
        """E.g. ``cross-subject weighted F1 0.645 ± 0.067 over 3 folds``."""
        spread = f" ± {self.std:.3f}" if self.std is not None else ""
        folds = f" over {self.n_folds} folds" if self.n_folds else ""
        return f"{self.protocol} {self.name} {self.mean:.3f}{spread}{folds}"


@dataclass(frozen=True)
class TrainingSummary:
    """What a model was trained on. ``synthetic`` is ``None`` when its records do not say."""

    title: str
    synthetic: bool | None
    data: str | None
    subjects: dict[str, int] = field(default_factory=dict)
    n_subjects: int | None = None
    n_images: int | None = None
    image_unit: str = "images"
    headline: Headline | None = None

    @property
    def real(self) -> bool:
        """Whether the records say the training data was real."""
        return self.synthetic is False

    @property
    def subjects_text(self) -> str:
        """E.g. ``2 HEM + 9 ALL subjects, 1,319 cells`` (what is known of it; ``""`` when nothing is)."""
        parts = []
        if self.subjects:
            parts.append(" + ".join(f"{count} {label}" for label, count in self.subjects.items()) + " subjects")
        elif self.n_subjects:
            parts.append(f"{self.n_subjects} subjects")
        if self.n_images:
            parts.append(f"{self.n_images:,} {self.image_unit}")
        return ", ".join(parts)

    @property
    def text(self) -> str:
        """One line, e.g. ``EfficientNet-SE: trained on real C-NMC cells (2 HEM + 9 ALL subjects, 1,319 cells);
        cross-subject weighted F1 0.645 ± 0.067 over 3 folds`` or ``HybridCN-NAS lite: trained on synthetic smears``."""
        if self.data is None:
            return f"{self.title}: its records do not say what it was trained on"
        text = f"{self.title}: trained on {self.data}"
        if self.real and self.subjects_text:
            text += f" ({self.subjects_text})"
        if self.headline is not None:
            text += f"; {self.headline.text}"
        return text


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    return None


def label_display(label: str) -> str:
    """A class label as cards and banners print it (``ALL``/``HEM`` in capitals)."""
    return label.upper() if label.lower() in ("all", "hem") else label


def _is_synthetic(config: Mapping[str, Any], eval_results: Mapping[str, Any] | None) -> bool | None:
    from leuk.hub.loader import mentions_synthetic_data

    if mentions_synthetic_data(config, eval_results):
        return True
    protocol = config.get("training_protocol") if isinstance(config.get("training_protocol"), Mapping) else {}
    if (eval_results or {}).get("synthetic") is False or protocol.get("synthetic") is False:
        return False
    if str(protocol.get("data", "")).strip().lower() == "real":
        return False
    return None


def _family(model_type: str) -> Any:
    """The registered family of ``model_type`` (:class:`leuk.models.family.ModelFamily`), or ``None``."""
    from leuk.models import FamilyError, get_family

    try:
        return get_family(model_type)
    except FamilyError:
        return None


def _title(config: Mapping[str, Any], family: str) -> str:
    """The model's name: its family's :meth:`~leuk.models.family.ModelFamily.describe`; for a ``model_type`` no
    family is registered under, the type with the variant of its recorded preset."""
    from leuk.hub.architecture import config_backbones
    from leuk.models.family import preset_title

    spec = _family(family)
    if spec is None:
        return preset_title(family or "model", family, config)
    return spec.describe(config, config_backbones(config))[0]


def shipped_model(block: Mapping[str, Any] | None, names: Sequence[str], family: Any) -> str | None:
    """Which model of a ``cross_validation`` block's table is the one shipped: the block's ``shipped`` entry
    when it names one of ``names`` (a table with a second recipe of the family), else the family's
    :meth:`~leuk.models.family.ModelFamily.headline_model`; ``None`` when neither knows."""
    named = (block or {}).get("shipped") if isinstance(block, Mapping) else None
    if named in names:
        return str(named)
    return family.headline_model(list(names)) if family is not None else None


def _block_protocol_headline(eval_results: Mapping[str, Any] | None, family: Any) -> Headline | None:
    """The accuracy of the family's own model (:meth:`leuk.models.family.ModelFamily.headline_model`) over the
    file-number-block folds of a ``cross_validation`` block (real Aria); ``None`` without a family."""
    block = (eval_results or {}).get("cross_validation")
    summary = block.get("summary") if isinstance(block, Mapping) else None
    by_model = (summary or {}).get("block") if isinstance(summary, Mapping) else None
    if family is None or not isinstance(by_model, Mapping):
        return None
    model = shipped_model(block, [str(name) for name in by_model], family)
    figures = by_model.get(model) if model is not None else None
    spread = figures.get("accuracy") if isinstance(figures, Mapping) else None
    if isinstance(spread, Mapping) and _number(spread.get("mean")) is not None:
        n_folds = figures.get("n_folds")
        return Headline("accuracy", "accuracy", float(spread["mean"]), _number(spread.get("sd")),
                        int(n_folds) if isinstance(n_folds, int) else None, _number(spread.get("min")),
                        _number(spread.get("max")), protocol="file-number-block")
    return None


def headline_of(eval_results: Mapping[str, Any] | None, family: Any = None) -> Headline | None:
    """The headline figure of an ``eval_results.json``: cross-subject (C-NMC) or, for the model of ``family``
    (a :class:`leuk.models.family.ModelFamily`), its file-number-block folds (Aria); ``None`` when it has
    neither."""
    if (eval_results or {}).get("cross_subject") is None:
        return _block_protocol_headline(eval_results, family)
    block = (eval_results or {}).get("cross_subject")
    over = ((block or {}).get("summary") or {}).get("over_folds") if isinstance(block, Mapping) else None
    spread = (over or {}).get(HEADLINE_METRIC[0]) if isinstance(over, Mapping) else None
    if not isinstance(spread, Mapping) or _number(spread.get("mean")) is None:
        return None
    n_folds = spread.get("n_folds")
    return Headline(HEADLINE_METRIC[0], HEADLINE_METRIC[1], float(spread["mean"]), _number(spread.get("std")),
                    int(n_folds) if isinstance(n_folds, int) else None, _number(spread.get("min")),
                    _number(spread.get("max")))


def _training_subjects(eval_results: Mapping[str, Any], label_order: list[str]) -> tuple[dict[str, int], int | None]:
    subjects = eval_results.get("training_subjects")
    if not isinstance(subjects, list) or not subjects:
        return {}, None
    block = eval_results.get("cross_subject") if isinstance(eval_results.get("cross_subject"), Mapping) else {}
    per_subject = block.get("per_subject") or eval_results.get("per_subject") or {}
    labels = [per_subject.get(str(s), {}).get("label") if isinstance(per_subject, Mapping) else None
              for s in subjects]
    if any(not isinstance(label, str) for label in labels):
        return {}, len(subjects)
    order = label_order + sorted(set(labels) - set(label_order))
    counts = {label_display(label): labels.count(label) for label in order if label in labels}
    return counts, len(subjects)


def training_images(eval_results: Mapping[str, Any]) -> int | None:
    sizes = eval_results.get("split_sizes")
    if not isinstance(sizes, Mapping):
        return None
    counts = [part.get("n_images") for key, part in sizes.items() if key in ("train", "val") and isinstance(part, Mapping)]
    return int(sum(counts)) if counts and all(isinstance(c, int) for c in counts) else None


def ood_threshold_rule(record: Mapping[str, Any]) -> str:
    """The threshold rule of a stored ``ood_detector.json`` record, as a card or an app should print it: images
    without patient ids (Aria without a patient map: each image its own pseudo-patient) never become
    "subjects" (:func:`leuk.ood.detector.threshold_rule_text`)."""
    from leuk.ood.detector import threshold_rule_text

    return threshold_rule_text(dict(record))


def training_summary(config: Mapping[str, Any], eval_results: Mapping[str, Any] | None = None) -> TrainingSummary:
    """What the model of ``config`` / ``eval_results`` (a folder's two JSON files) was trained on."""
    family = str(config.get("model_type", ""))
    spec = _family(family)
    synthetic = _is_synthetic(config, eval_results)
    if synthetic is None:
        data = None
    elif spec is None:
        data = "synthetic data" if synthetic else "real data"
    else:
        data = spec.synthetic_data if synthetic else spec.real_data
    id2label = config.get("id2label") or {}
    label_order = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))] if id2label else []
    subjects, n_subjects = _training_subjects(eval_results or {}, label_order)
    return TrainingSummary(
        title=_title(config, family),
        synthetic=synthetic,
        data=data,
        subjects=subjects,
        n_subjects=n_subjects,
        n_images=training_images(eval_results or {}),
        image_unit=spec.image_unit if spec is not None else "images",
        headline=headline_of(eval_results, spec),
    )


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def folder_training_summary(model_dir: str | Path) -> TrainingSummary | None:
    """:func:`training_summary` of a saved model folder; ``None`` when it has no readable ``config.json``."""
    from leuk.records import EvalResultsError, read_eval_results

    folder = Path(model_dir)
    config = _read(folder / "config.json")
    if config is None:
        return None
    try:
        eval_results = read_eval_results(folder)
    except EvalResultsError:  # a banner says what the records say; a broken record says nothing
        eval_results = None
    return training_summary(config, eval_results)
