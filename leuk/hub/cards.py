"""Model and dataset cards: Jinja templates in ``model_cards/`` rendered through ``huggingface_hub``.

Evaluation JSON (``leuk.metrics.classification_metrics`` output, optionally wrapped with metadata) becomes the
card's ``model-index``; a Monte Carlo summary (``summary.json`` / ``summary.md``) becomes a table. Those
conversions live in :mod:`leuk.hub.card_metrics`, what the model is (backbones, architecture, size) in
:mod:`leuk.hub.architecture`; both stay importable from here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from leuk.errors import LeukError
from leuk.hub.architecture import (  # noqa: F401  (timm_hub_id and count_parameters_in_folder re-exported)
    backbone_sources,
    base_models,
    config_backbones,
    count_parameters_in_folder,
    folder_image_size,
    timm_hub_id,
)
from leuk.hub.card_metrics import (  # noqa: F401  (the card's metric helpers stay importable from here)
    TASK_TYPE,
    eval_results_to_card,
    format_number,
    is_number,
    load_mc_summary,
    meta_text,
    metric_entries,
    metric_id_and_name,
    monte_carlo_table,
    read_json_file,
    split_eval_json,
)
from leuk.hub.provenance import label_display, shipped_model, training_images
from leuk.hub.recipe_text import backbone_note, recipe_name, recipe_text
from leuk.records import upgrade_eval_results, validate_eval_results

CARDS_DIR_ENV = "LEUK_MODEL_CARDS_DIR"
LICENSE = "apache-2.0"



#: The tags every card carries before its family's own (``ModelFamily.card_tags``).
_COMMON_TAGS = ("leukemia", "acute-lymphoblastic-leukemia", "microscopy", "medical-imaging")


def _card_family(model_type: str) -> Any:
    """The registered family a card is written for (:class:`leuk.models.family.ModelFamily`): what its card
    says of it (template, dataset, tags, sections) is the family's, never decided here by its name."""
    from leuk.models import FamilyError, get_family

    try:
        return get_family(model_type)
    except FamilyError as err:
        raise LeukError(f"no model card for family {model_type!r}: {err}") from err


def loading_snippet(model: str, *, image: str, revision: str | None = None, leuk_spec: str | None = None) -> str:
    """Python that loads ``model`` (a Hub id or a folder) with transformers alone and prints the logits and class
    probabilities of ``image``: it runs as printed on a CPU, in a Python without leuk (``trust_remote_code=True``
    runs the model's own code). ``revision`` pins a Hub commit or tag; ``leuk_spec`` adds the leuk way, as a
    comment. The Models views and the model cards show this text."""
    lines = [
        "import torch",
        "from PIL import Image",
        "from transformers import AutoImageProcessor, AutoModelForImageClassification",
        "",
        f"MODEL = {json.dumps(model)}",
    ]
    pin = ""
    if revision is not None:
        lines.append(f"REVISION = {json.dumps(revision)}  # the code you run is the code you reviewed")
        pin = ", revision=REVISION"
    lines += [
        f"model = AutoModelForImageClassification.from_pretrained(MODEL{pin}, trust_remote_code=True).eval()",
        f"processor = AutoImageProcessor.from_pretrained(MODEL{pin}, trust_remote_code=True)",
        "",
        f"image = Image.open({json.dumps(image)}).convert(\"RGB\")",
        "with torch.no_grad():",
        "    logits = model(**processor(images=image, return_tensors=\"pt\")).logits",
        "print(\"logits:\", logits.tolist())",
        "print({model.config.id2label[i]: round(p, 4) for i, p in enumerate(logits.softmax(-1)[0].tolist())})",
    ]
    if leuk_spec:
        lines += ["", "# with leuk installed (no remote code executed):",
                  "# from leuk.hub import load_model",
                  f"# loaded = load_model({json.dumps(leuk_spec)})"]
    return "\n".join(lines) + "\n"


def example_image_path(family: str, *, relative_to: Path | None = None) -> str | None:
    """A bundled sample image of ``family``'s task (``assets/samples/<dataset>/``, the family's
    ``ModelFamily.dataset``), relative to ``relative_to`` when inside it, else absolute; ``None`` when none is
    bundled or no family is registered under ``family``."""
    from leuk.models import FamilyError, get_family

    try:
        task = get_family(family).dataset
    except FamilyError:
        return None
    folder = Path(__file__).resolve().parents[2] / "assets" / "samples" / task
    if not task or not folder.is_dir():
        return None
    from leuk.io import IMAGE_SUFFIXES

    images = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        return None
    if relative_to is not None:
        try:
            return images[0].relative_to(relative_to.resolve()).as_posix()
        except ValueError:
            pass
    return str(images[0])


def model_cards_dir() -> Path:
    """Folder of the card templates (``$LEUK_MODEL_CARDS_DIR`` or ``<repo>/model_cards``)."""
    override = os.environ.get(CARDS_DIR_ENV)
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "model_cards"


def template_path(name: str) -> Path:
    """The card template ``name``: a file of :func:`model_cards_dir`, or an absolute path (a family may keep its
    template beside its code)."""
    path = Path(name) if Path(name).is_absolute() else model_cards_dir() / name
    if not path.is_file():
        raise LeukError(f"card template {path} is missing (set {CARDS_DIR_ENV} to the model_cards folder)")
    return path


def _subject_key(subject: str) -> tuple:
    """Natural order of subject ids: ``2`` before ``11``, ``H10`` before ``H14``."""
    digits = "".join(ch for ch in subject if ch.isdigit())
    return ("".join(ch for ch in subject if not ch.isdigit()), int(digits) if digits else -1, subject)


def _count_text(counts: Mapping[str, int]) -> str:
    return " / ".join(f"{count} {label_display(label)}" for label, count in counts.items())


def cross_subject_context(eval_json: Mapping[str, Any] | None, label_names: list[str] | None = None,
                          *, unit: str = "images") -> dict | None:
    """What a card shows of the ``cross_subject`` block of an ``eval_results.json`` (``None`` when absent).

    ``metrics``: one row per metric (mean ± sd over folds, range, pooled over every held-out image);
    ``subjects``: per-subject accuracy with the fold that held the subject out; ``pool``: subjects per class and
    images of the whole pool; the shipped fold with its training and held-out subjects.
    """
    block = (eval_json or {}).get("cross_subject")
    if not isinstance(block, Mapping):
        return None
    summary = block.get("summary") if isinstance(block.get("summary"), Mapping) else {}
    over = summary.get("over_folds") if isinstance(summary.get("over_folds"), Mapping) else {}
    pooled = summary.get("pooled") if isinstance(summary.get("pooled"), Mapping) else {}
    rows, n_folds = [], None
    for key, spread in over.items():
        if not isinstance(spread, Mapping) or not is_number(spread.get("mean")):
            continue
        n_folds = spread.get("n_folds", n_folds)
        low, high = spread.get("min"), spread.get("max")
        rows.append({
            "key": key, "name": metric_id_and_name(key)[1],
            "mean_sd": f"{float(spread['mean']):.4f} ± {format_number(spread.get('std', spread.get('sd')))}",
            "range": f"{format_number(low)} – {format_number(high)}" if is_number(low) and is_number(high) else "n/a",
            "pooled": format_number(pooled.get(key)),
        })
    folds = [f for f in block.get("folds") or [] if isinstance(f, Mapping)]
    fold_of = {str(subject): f.get("fold") for f in folds for subject in f.get("test_subjects") or []}
    per_subject = block.get("per_subject") if isinstance(block.get("per_subject"), Mapping) else {}
    order = {label: i for i, label in enumerate(label_names or [])}
    subjects = []
    for subject, record in per_subject.items():
        if not isinstance(record, Mapping):
            continue
        subjects.append({
            "subject": str(subject), "label": str(record.get("label", "")),
            "label_display": label_display(str(record.get("label", ""))),
            "n_images": record.get("n_images"), "accuracy": format_number(record.get("accuracy"), 3),
            "fold": fold_of.get(str(subject), ""),
        })
    subjects.sort(key=lambda r: (order.get(r["label"], len(order)), r["label"], _subject_key(r["subject"])))
    subjects_per_label: dict[str, int] = {}
    for row in subjects:
        subjects_per_label[row["label"]] = subjects_per_label.get(row["label"], 0) + 1
    n_images = sum(int(r["n_images"]) for r in subjects if isinstance(r["n_images"], int))
    label_of = {row["subject"]: row["label"] for row in subjects}
    training = [str(s) for s in (eval_json or {}).get("training_subjects") or []]
    training_counts: dict[str, int] = {}
    for subject in sorted(training, key=_subject_key):
        label = label_of.get(subject, "?")
        training_counts[label] = training_counts.get(label, 0) + 1
    # the pool's classes in label order: "14 ALL / 3 HEM" reads the majority first
    pool_counts = dict(sorted(subjects_per_label.items(), key=lambda item: -item[1]))
    return {
        "protocol": block.get("protocol") or "cross-subject",
        "n_folds": n_folds if n_folds is not None else (len(folds) or None),
        "metrics": rows,
        "subjects": subjects,
        "pool_text": (f"{_count_text(pool_counts)} subjects, {n_images:,} {unit}" if subjects else None),
        "n_pool_images": n_images or None,
        "shipped_fold": (eval_json or {}).get("shipped_fold"),
        "training_subjects": sorted(training, key=_subject_key),
        "training_text": _count_text(training_counts) + " subjects" if training_counts else None,
        "held_out_subjects": sorted(((eval_json or {}).get("held_out_subjects") or []), key=lambda s: _subject_key(str(s))),
    }


def comparison_context(eval_json: Mapping[str, Any] | None) -> dict | None:
    """The shipped recipe's cross-subject figures beside the other recipes run on the same folds: those tried
    before it (``recipes_tried``) and the baseline (``baseline_cross_subject``) of an ``eval_results.json``;
    ``None`` when there is no other recipe. ``columns``: one name per recipe, the shipped one first; each row
    holds one ``(mean ± sd, pooled)`` pair per column."""
    eval_json = eval_json or {}
    own = eval_json.get("cross_subject")
    others = [block for block in (*(eval_json.get("recipes_tried") or []), eval_json.get("baseline_cross_subject"))
              if isinstance(block, Mapping)]
    if not isinstance(own, Mapping) or not others:
        return None

    def figures(block: Mapping[str, Any], key: str) -> tuple[str, str]:
        summary = block.get("summary") or {}
        spread = (summary.get("over_folds") or {}).get(key) or {}
        mean_sd = (f"{float(spread['mean']):.3f} ± {float(spread.get('std') or 0):.3f}"
                   if is_number(spread.get("mean")) else "n/a")
        return mean_sd, format_number((summary.get("pooled") or {}).get(key), 3)

    def name(block: Mapping[str, Any], recipe: Mapping[str, Any]) -> str:
        return recipe_name(recipe.get("model", block.get("model")),
                            recipe.get("pretrained", block.get("pretrained_backbone")),
                            recipe.get("image_size", block.get("image_size")), recipe.get("lr", block.get("lr")),
                            recipe.get("frozen_backbone", False))

    recipe = eval_json.get("recipe") or own.get("recipe") or {}
    blocks = [own, *others]
    columns = [name(own, recipe) + " (shipped)"] + [name(b, b.get("recipe") or {}) for b in others]
    rows = [{"name": metric_id_and_name(key)[1], "cells": [figures(b, key) for b in blocks]}
            for key in ("f1_weighted", "roc_auc", "sensitivity", "specificity", "accuracy", "mcc", "ece")]
    per_subject = [b.get("per_subject") or {} for b in blocks]
    subjects = []
    for subject in sorted(set().union(*per_subject), key=_subject_key):
        record = next((p[subject] for p in per_subject if subject in p), {})
        subjects.append({"subject": subject, "label_display": label_display(str(record.get("label", ""))),
                         "accuracies": [format_number((p.get(subject) or {}).get("accuracy"), 3)
                                        for p in per_subject]})
    notes = [str(b["note"]) for b in others if b.get("note")]
    return {"columns": columns, "rows": rows, "subjects": subjects, "notes": notes}


def calibration_context(eval_json: Mapping[str, Any] | None) -> dict | None:
    """What a card says of a temperature and verdict threshold fitted on out-of-fold predictions."""
    block = (eval_json or {}).get("calibration")
    if not isinstance(block, Mapping) or not is_number(block.get("uncertain_below")):
        return None
    oof = block.get("out_of_fold") or {}
    crossed = block.get("leave_one_fold_out") or {}

    def share(value: Any) -> str:
        return f"{float(value):.1%}" if is_number(value) else "n/a"

    return {
        "temperature": f"{float(block['temperature']):.3f}",
        "threshold": f"{float(block['uncertain_below']):.3f}",
        "target": share(block.get("target_accuracy")),
        "target_reached": bool(block.get("target_reached")),
        "fitted_on": block.get("fitted_on"),
        "confident_share": share(oof.get("confident_share")),
        "confident_accuracy": share(oof.get("confident_accuracy")),
        "uncertain_accuracy": share(oof.get("uncertain_accuracy")),
        "n": oof.get("n"),
        "crossed_share": share(crossed.get("confident_share")),
        "crossed_accuracy": share(crossed.get("confident_accuracy")),
    }


def _spread_text(figures: Any) -> str:
    """``0.9512 ± 0.0123 (0.9301 – 0.9705)`` from ``{mean, sd, min, max}``; ``n/a`` without a mean."""
    if not isinstance(figures, Mapping) or not is_number(figures.get("mean")):
        return "n/a"
    text = f"{float(figures['mean']):.4f} ± {format_number(figures.get('sd'))}"
    if is_number(figures.get("min")) and is_number(figures.get("max")):
        text += f" ({format_number(figures['min'])} – {format_number(figures['max'])})"
    return text


def aria_protocols_context(eval_json: Mapping[str, Any] | None, family: Any = None) -> dict | None:
    """What a card shows of the ``cross_validation`` block (both protocols, every model; ``shipped``: the row
    of these weights, :func:`leuk.hub.provenance.shipped_model` with ``family``, a
    :class:`~leuk.models.family.ModelFamily`) and of the ``segmentation_reference`` block of an
    ``eval_results.json``; ``None`` when neither is there."""
    eval_json = eval_json or {}
    block = eval_json.get("cross_validation") if isinstance(eval_json.get("cross_validation"), Mapping) else {}
    summary = block.get("summary") if isinstance(block.get("summary"), Mapping) else {}
    descriptions = block.get("protocols") if isinstance(block.get("protocols"), Mapping) else {}
    rows = []
    for protocol in descriptions or [key for key in summary if key != "gap_image_minus_block"]:
        for model, figures in (summary.get(protocol) or {}).items():
            rows.append({"protocol": protocol, "model": model, "n_folds": figures.get("n_folds"),
                         "accuracy": _spread_text(figures.get("accuracy")),
                         "f1_macro": _spread_text(figures.get("f1_macro"))})
    gaps = [{"model": model, "accuracy": f"{float(gap['accuracy']):+.4f}" if is_number(gap.get("accuracy")) else "n/a",
             "f1_macro": f"{float(gap['f1_macro']):+.4f}" if is_number(gap.get("f1_macro")) else "n/a"}
            for model, gap in (summary.get("gap_image_minus_block") or {}).items() if isinstance(gap, Mapping)]
    reference = eval_json.get("segmentation_reference") if isinstance(eval_json.get("segmentation_reference"),
                                                                      Mapping) else {}
    segmenters = [{"name": name, "dice": format_number(scores.get("dice"), 3), "iou": format_number(scores.get("iou"), 3)}
                  for name, scores in reference.items() if isinstance(scores, Mapping) and "dice" in scores]
    if not rows and not segmenters:
        return None
    shipped = shipped_model(block, [row["model"] for row in rows], family)
    return {"rows": rows, "gaps": gaps, "descriptions": dict(descriptions), "paper": block.get("paper"),
            "shipped": shipped, "shortfalls": _shortfalls(summary, shipped),
            "recipes": dict(block.get("recipes")) if isinstance(block.get("recipes"), Mapping) else {},
            "note": block.get("note"), "n_folds": block.get("n_folds"), "segmenters": segmenters,
            "n_reference": reference.get("n"), "reference": reference.get("reference")}


def _shortfalls(summary: Mapping[str, Any], shipped: str | None) -> list[dict]:
    """Per protocol, the models of the table whose mean accuracy beats the shipped model's, and by how much
    (what a card must say in its first lines)."""
    found = []
    for protocol, by_model in summary.items():
        if protocol == "gap_image_minus_block" or not isinstance(by_model, Mapping) or shipped not in by_model:
            continue
        own = (by_model[shipped].get("accuracy") or {}).get("mean")
        for model, figures in by_model.items():
            other = (figures.get("accuracy") or {}).get("mean") if isinstance(figures, Mapping) else None
            if model != shipped and is_number(own) and is_number(other) and other > own:
                found.append({"protocol": protocol, "model": model, "by": f"{other - own:.3f}",
                              "accuracy": f"{other:.3f}", "own": f"{own:.3f}"})
    return found


def _training_images_text(eval_json: Mapping[str, Any] | None, unit: str) -> str | None:
    """``1,319 cells``: training plus validation images of a recorded split, or ``None``."""
    count = training_images(eval_json or {})
    return f"{count:,} {unit}" if count else None


def _local_names(model_dir: Path) -> tuple[str, str]:
    """(leuk spec, path for ``from_pretrained``) of a local folder: ``demo:<name>`` and a repo-relative path
    for a bundled demo, else the folder itself."""
    from leuk.hub.loader import DEMO_PREFIX, demo_models_dir

    folder = model_dir.resolve()
    demos = demo_models_dir().resolve()
    if folder.parent == demos:
        repo = Path(__file__).resolve().parents[2]
        try:
            path = folder.relative_to(repo).as_posix()
        except ValueError:
            path = str(folder)
        return f"{DEMO_PREFIX}{folder.name}", path
    return str(model_dir), str(model_dir)


def build_model_card(
    model_dir: str | Path,
    *,
    repo_id: str | None = None,
    eval_results: str | Path | Mapping | None = None,
    mc_summary: str | Path | Mapping | None = None,
    family: str | None = None,
    pinned_revision: str | None = None,
    num_parameters: int | None = None,
    datasets: list[str] | None = None,
    base_model: str | list[str] | None = None,
):
    """The ``huggingface_hub.ModelCard`` of a saved leuk model.

    ``repo_id`` is the Hub repo the card is for; ``None`` writes the card of a local folder (a bundled demo:
    its loading snippets name ``demo:<name>`` and the folder). ``eval_results`` defaults to the folder's
    ``eval_results.json`` (a ``cross_subject`` block there becomes the cross-subject tables); ``family`` to the
    config's ``model_type``. ``pinned_revision`` (a tag or commit) goes into the loading snippets.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from leuk import __version__
    from leuk.hub.loader import EVAL_RESULTS_FILE, mentions_synthetic_data

    model_dir = Path(model_dir)
    config = read_json_file(model_dir / "config.json", "model config")
    family = family or str(config.get("model_type", ""))
    spec = _card_family(family)

    if eval_results is None and (model_dir / EVAL_RESULTS_FILE).is_file():
        eval_results = model_dir / EVAL_RESULTS_FILE
    eval_json = read_json_file(eval_results, "eval results") if isinstance(eval_results, (str, Path)) else eval_results
    if eval_json is not None:  # older records through the one upgrade path; the card renders only a valid record
        eval_json = validate_eval_results(upgrade_eval_results(dict(eval_json)), source=str(eval_results
                                          if isinstance(eval_results, (str, Path)) else "eval_results"))
    metrics, eval_meta = split_eval_json(eval_json or {})
    synthetic = mentions_synthetic_data(config, eval_json, eval_meta)
    dataset_name = eval_meta.get("dataset_name") or (
        f"Synthetic {spec.card_dataset_name} look-alike" if synthetic else spec.card_dataset_name
    )
    dataset_type = eval_meta.get("dataset_type") or (
        f"synthetic-{spec.card_dataset_type}" if synthetic else spec.card_dataset_type
    )
    split = eval_meta.get("split") or eval_meta.get("dataset_split") or ("test" if eval_json else None)
    results = eval_results_to_card(eval_json, dataset_name=dataset_name, dataset_type=dataset_type,
                                   dataset_split=split) if eval_json else None
    mc_table, mc_meta = load_mc_summary(mc_summary)

    backbones = config_backbones(config)
    if base_model is None:
        base_model = base_models(config, backbones)
    recorded, sources = backbone_sources(config)
    backbone_init = "; ".join(sources) if sources else ("random (no ImageNet weights)" if recorded else None)
    if num_parameters is None:
        num_parameters = count_parameters_in_folder(model_dir)
    labels = [config.get("id2label", {}).get(str(i)) for i in range(len(config.get("id2label", {})))]

    title, architecture = spec.describe(config, backbones)  # "HybridCN-NAS lite" for the lite preset
    branches = spec.card_backbones(config, backbones)
    sections = spec.card_sections

    label_names = [label for label in labels if label is not None]
    cross_subject = cross_subject_context(eval_json, label_names, unit=spec.image_unit)
    recipe = (eval_json or {}).get("recipe")
    if cross_subject is not None and backbone_init is None and isinstance(recipe, Mapping) and "pretrained" in recipe:
        backbone_init = "ImageNet weights" if recipe["pretrained"] else "random (no ImageNet weights)"
    leuk_spec, local_path = _local_names(model_dir)
    display_id = repo_id or leuk_spec
    if repo_id:
        example = spec.example_image
        revision = pinned_revision or f"<commit hash from https://huggingface.co/{repo_id}/commits/main>"
        snippet = loading_snippet(repo_id, image=example, revision=revision)
    else:  # a bundled demo: its folder and a bundled sample, both named from the repository's root
        example = example_image_path(family, relative_to=Path(__file__).resolve().parents[2]) or spec.example_image
        snippet = loading_snippet(local_path, image=example)

    tags = [*_COMMON_TAGS, *spec.card_tags] + (["synthetic-data"] if synthetic else []) + ["leuk"]
    card_data = ModelCardData(
        model_name=display_id.split("/")[-1].split(":")[-1] if results else None,
        license=LICENSE,
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        tags=tags,
        datasets=datasets,
        base_model=base_model,
        eval_results=results,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path(spec.card_template)),
        repo_id=repo_id,
        display_id=display_id,
        leuk_spec=leuk_spec,
        local_path=local_path,
        snippet=snippet.rstrip("\n"),
        example_image=example,
        family_title=title,
        architecture=architecture,
        mask_dilation=int(config.get("mask_dilation") or 0),
        model_type=family,
        synthetic=synthetic,
        dataset_name=dataset_name,
        protocol=(eval_meta.get("protocol") or config.get("protocol")
                  or (config.get("training_protocol") or {}).get("protocol")
                  or spec.default_protocol),
        eval_meta_text=meta_text(eval_meta, skip=("dataset_name", "dataset_type", "command", "best_checkpoint")),
        cross_subject=cross_subject,
        all_subjects=(eval_json or {}).get("protocol") == "all-subjects",
        backbone_note=backbone_note(config) if "backbone_note" in sections else None,
        comparison=comparison_context(eval_json) if "comparison" in sections else None,
        calibration=calibration_context(eval_json),
        aria_protocols=aria_protocols_context(eval_json, spec) if "aria_protocols" in sections else None,
        ood_text=_ood_text(model_dir),
        recipe_text=recipe_text(recipe),
        command=(eval_json or {}).get("command"),
        trained_from_scratch=backbone_init is not None and backbone_init.startswith("random"),
        training_images=_training_images_text(eval_json, spec.image_unit),
        metrics_rows=metric_entries(metrics),
        n_eval=metrics.get("n"),
        mc_table=mc_table,
        mc_meta_text=meta_text(mc_meta),
        backbones=branches,
        backbone_init=backbone_init,
        training_protocol_text=meta_text(config.get("training_protocol") or {}),
        frozen_backbone=bool((config.get("training_protocol") or {}).get("frozen_backbone")),
        num_parameters=f"{num_parameters:,}",
        num_parameters_m=f"{num_parameters / 1e6:.2f}M",
        image_size=folder_image_size(model_dir, config),
        labels=label_names,
        revision=pinned_revision,
        leuk_version=__version__,
    )


def _ood_text(model_dir: str | Path) -> str | None:
    """What the folder's stored out-of-distribution detector is and how it was fitted (``None`` without one)."""
    from leuk.hub.loader import _read_json

    record = _read_json(Path(model_dir) / "ood_detector.json")
    if not record:
        return None
    fit = record.get("fit") or {}
    parts = [f"`ood_detector.safetensors` / `ood_detector.json` hold a {record.get('method', 'distance')} detector "
             f"on {record.get('feature_space', 'pooled features')} ({record.get('dimension')} dimensions; "
             f"{record.get('covariance', 'covariance fitted on the training images')})"]
    if fit.get("n_train_images"):
        parts.append(f"fitted on the {fit['n_train_images']} training images only")
    if record.get("threshold_rule"):
        from leuk.hub.provenance import ood_threshold_rule

        parts.append(f"threshold {record.get('threshold', float('nan')):.2f}: {ood_threshold_rule(record)}")
    return ("; ".join(parts) + ". An image above the threshold, or whose image statistics are far from the "
            "training images', is reported as out of distribution and never called confident (`leuk.verdict`). "
            "It catches gross mismatches (smears, photos, blank or noise images, other stains); it cannot tell "
            "a cell of an unfamiliar subject from a familiar one, nor vouch for a prediction.")


def write_model_card(model_dir: str | Path, *, repo_id: str | None = None, **options: Any) -> Path:
    """Render the model card of a saved folder into its ``README.md`` (the apps' Models views show it) and
    return that path; ``options`` go to :func:`build_model_card`. Every script that saves a demo folder calls it."""
    from leuk.hub.loader import CARD_FILE

    folder = Path(model_dir)
    card = build_model_card(folder, repo_id=repo_id, **options)
    path = folder / CARD_FILE
    card.save(path)
    return path


def write_demo_cards(root: str | Path | None = None) -> list[Path]:
    """:func:`write_model_card` for every model folder under ``root`` (default: the bundled demo models)."""
    from leuk.hub.loader import demo_models_dir

    base = Path(root) if root is not None else demo_models_dir()
    return [write_model_card(folder) for folder in sorted(base.iterdir()) if (folder / "config.json").is_file()]


def build_results_card(
    repo_id: str,
    *,
    num_rows: int,
    columns: list[str],
    summary: str | Path | Mapping | None = None,
    models: list[str] | None = None,
):
    """The ``huggingface_hub.DatasetCard`` of a Monte Carlo results table."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from leuk import __version__

    summary_table, summary_meta = load_mc_summary(summary)
    card_data = DatasetCardData(
        license=LICENSE,
        tags=["leuk", "monte-carlo", "leukemia", "evaluation-results"],
        size_categories=["n<1K" if num_rows < 1000 else "1K<n<10K" if num_rows < 10_000 else "10K<n<100K"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}],
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(template_path("results_dataset.md.j2")),
        repo_id=repo_id,
        num_rows=num_rows,
        columns=columns,
        summary_table=summary_table,
        summary_meta_text=meta_text(summary_meta),
        models=models or [],
        leuk_version=__version__,
    )
