"""Ablation study of a finished HybridCN-NAS run (``leuk ablate``).

:func:`run_ablation` refits stage 8 (z-score, mRMR, classifier, temperature) for every ablation variant on
patient-wise Monte Carlo draws over a finished run's held-out patients (:func:`held_out_monte_carlo`),
reusing the run's cached features; preprocessing variants recompute the features first.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from leuk.defaults import SEED
from leuk.errors import LeukError
from leuk.training.hybridcn_nas.cache import StageCache
from leuk.training.hybridcn_nas.data import load_table
from leuk.training.hybridcn_nas.head import fit_head
from leuk.training.hybridcn_nas.optim import progress_bar
from leuk.training.hybridcn_nas.options import OPTIMIZERS, STAGES_DIR, HybridTrainOptions
from leuk.training.hybridcn_nas.stages import run_feature_stages

__all__ = [
    "ABLATION_METRICS",
    "ABLATION_STUDIES",
    "AblationVariant",
    "ablation_markdown",
    "ablation_variants",
    "held_out_monte_carlo",
    "run_ablation",
]

ABLATION_STUDIES = ("architecture", "features", "optimizer", "preprocessing")
ABLATION_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "mcc")
#: shares of the run's ``num_selected`` compared in the feature-count study (paper: 2000..1200)
FEATURE_SHARES = (1.0, 0.9, 0.8, 0.7, 0.6)
#: SGD (no adaptive scaling) runs at this multiple of the classifier learning rate
SGD_LR_FACTOR = 10.0
#: options that only the head stage reads: changing them keeps a run's cached features valid
CLASSIFIER_ONLY_OPTIONS = frozenset({"classifier_epochs", "classifier_lr", "classifier_batch_size", "optimizer",
                                     "patience", "num_selected", "save_dtype", "synthetic", "device", "progress"})


@dataclass(frozen=True)
class AblationVariant:
    """One configuration of the ablation: classifier config / option overrides, or preprocessing steps."""

    study: str
    name: str
    config_overrides: tuple = ()
    option_overrides: tuple = ()
    steps: Optional[tuple[str, ...]] = None


def ablation_variants(config: Any, options: HybridTrainOptions, studies: Sequence[str]) -> list[AblationVariant]:
    """The variants of each study, scaled to ``config`` (the first of each study is its reference)."""
    from leuk.preprocess import PREPROCESSING_STEPS

    variants: list[AblationVariant] = []
    if "architecture" in studies:
        heads = config.classifier_heads
        half = max(heads, (config.classifier_dim // 2) // heads * heads)
        variants += [
            AblationVariant("architecture", "full"),
            AblationVariant("architecture", "no_attention", (("use_attention", False),)),
            AblationVariant("architecture", "no_feed_forward", (("use_feed_forward", False),)),
            AblationVariant("architecture", "no_dropout", (("classifier_dropout", 0.0), ("input_dropout", 0.0))),
            AblationVariant("architecture", f"hidden_{half}", (("classifier_dim", half),)),
        ]
    if "features" in studies:
        counts = []
        for share in FEATURE_SHARES:
            tokens = int(round(config.num_selected * share / config.token_size))
            count = max(config.token_size, tokens * config.token_size)
            if count not in counts:
                counts.append(count)
        variants += [AblationVariant("features", f"k_{count}", (("num_selected", count),)) for count in counts]
    if "optimizer" in studies:
        reference = options.optimizer
        for name in [reference] + [o for o in OPTIMIZERS if o != reference]:
            lr = options.classifier_lr * (SGD_LR_FACTOR if name == "sgd" else 1.0)
            variants.append(AblationVariant("optimizer", name, (), (("optimizer", name), ("classifier_lr", lr))))
    if "preprocessing" in studies:
        full = tuple(options.steps)
        variants.append(AblationVariant("preprocessing", "all_steps", steps=full))
        variants += [AblationVariant("preprocessing", f"no_{step}", steps=tuple(s for s in full if s != step))
                     for step in PREPROCESSING_STEPS if step in full]
        variants.append(AblationVariant("preprocessing", "no_preprocessing", steps=()))
    return variants


def held_out_monte_carlo(labels: np.ndarray, groups: np.ndarray, split: Any, *, n_iter: int, seed: int) -> list:
    """``(iteration, seed, Split)`` over the run's held-out patients (its val + test).

    Each iteration draws, among those patients only, a test part (half) and a validation part (a quarter);
    training is the run's training rows plus the remaining held-out rows. The segmenter and extractor of
    the run never saw any test patient of any iteration, so the cached features can be reused honestly.
    """
    from leuk.data.splits import Split, monte_carlo_splits

    held = np.sort(np.concatenate([split.val, split.test]))
    if len(np.unique(groups[held])) < 2:
        raise LeukError("the run holds out fewer than 2 patients: too few for a Monte Carlo ablation")
    draws = []
    for iteration, iteration_seed, part in monte_carlo_splits(labels[held], groups[held], n_iter=n_iter, seed=seed,
                                                              test_size=0.5, val_size=0.25):
        train = np.concatenate([split.train, held[part.train]])
        mc_split = Split(train, held[part.val], held[part.test], protocol=split.protocol)
        draws.append((iteration, iteration_seed, mc_split))
    return draws


def _variant_inputs(variant: AblationVariant, config: Any, options: HybridTrainOptions):
    config = copy.deepcopy(config)
    for key, value in variant.config_overrides:
        setattr(config, key, value)
    config._validate()
    return config, replace(options, **dict(variant.option_overrides))


def run_ablation(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    studies: Sequence[str] = ("architecture", "features", "optimizer"),
    n_iter: int = 5,
    seed: int = SEED,
    option_overrides: Optional[dict[str, Any]] = None,
    progress: bool = True,
):
    """Ablation of a finished training run (``leuk train hybridcn-nas --out RUN``), written to ``out_dir``.

    Every variant is fitted (scaler, mRMR, classifier, temperature) and tested on the same patient-wise
    Monte Carlo draws (:func:`held_out_monte_carlo`) over the run's cached features; preprocessing variants
    first recompute the features with their own segmenter and extractor (on the run's split, cached under
    ``out_dir/preprocessing``). Finished (variant, iteration) results are kept in ``out_dir/parts`` and
    reused. Returns ``(per_iteration, summary)`` data frames; also writes ``ablation_iterations.csv``,
    ``ablation.csv`` and ``ablation.md``.
    """
    import pandas as pd
    import torch

    from leuk.experiments.stats import describe, paired_tests
    from leuk.metrics import classification_metrics, softmax
    from leuk.models.hybridcn_nas import HybridCNNASConfig

    unknown = sorted(set(studies) - set(ABLATION_STUDIES))
    if unknown:
        raise LeukError(f"unknown ablation stud{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)} "
                        f"(choose from {', '.join(ABLATION_STUDIES)})")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    stage_cache = StageCache(run_dir / STAGES_DIR)
    if not (stage_cache.has("run.json") and stage_cache.has("features.npy") and (run_dir / "config.json").is_file()):
        raise LeukError(f"{run_dir} is not a finished HybridCN-NAS run (needs config.json and stages/features.npy)")
    record = stage_cache.load_json("run.json")
    stored_options = dict(record["options"])
    if "steps" in stored_options:
        stored_options["steps"] = tuple(stored_options["steps"])
    options = replace(HybridTrainOptions(**stored_options), progress=progress, **(option_overrides or {})).resolved()
    config = HybridCNNASConfig.from_pretrained(run_dir)
    stored_split = stage_cache.load_json("split.json")
    from leuk.data.splits import Split

    split = Split(np.asarray(stored_split["train"]), np.asarray(stored_split["val"]), np.asarray(stored_split["test"]),
                  protocol=stored_split["protocol"])
    data_info = stage_cache.load_json("data.json") if stage_cache.has("data.json") else {}
    data_dir = data_dir or data_info.get("root")
    if data_dir is None:
        raise LeukError("give --data: the run does not record its dataset folder")
    table = load_table(data_dir, options.patients_csv)
    if table.fingerprint() != record["data"]:
        raise LeukError(f"{data_dir} is not the dataset the run {run_dir} was trained on")

    draws = held_out_monte_carlo(table.labels, table.groups, split, n_iter=n_iter, seed=seed)
    variants = ablation_variants(config, options, studies)
    parts = StageCache(out_dir / "parts")
    features_by_steps: dict[tuple, np.ndarray] = {}
    run_options = replace(HybridTrainOptions(**stored_options), progress=progress).resolved()
    if all(getattr(options, name) == getattr(run_options, name)
           for name in HybridTrainOptions.__dataclass_fields__ if name not in CLASSIFIER_ONLY_OPTIONS):
        features_by_steps[tuple(options.steps)] = stage_cache.load_array("features.npy")
    rows = []
    bar = progress_bar(range(len(variants) * len(draws)), "ablation", progress)
    bar_iter = iter(bar)
    for variant in variants:
        steps = tuple(options.steps) if variant.steps is None else variant.steps
        if steps not in features_by_steps:
            variant_options = replace(options, steps=steps, progress=False)
            folder = out_dir / "preprocessing" / ("-".join(steps) or "none")
            stages = run_feature_stages(table, variant_options, folder, split=split)
            features_by_steps[steps] = stages.features
        features = features_by_steps[steps]
        variant_config, variant_options = _variant_inputs(variant, config, options)
        for iteration, iteration_seed, mc_split in draws:
            next(bar_iter, None)
            name = f"{variant.study}-{variant.name}-{iteration:03d}.json"
            if parts.has(name):
                rows.append(parts.load_json(name))
                continue
            row: dict[str, Any] = {"study": variant.study, "variant": variant.name, "iteration": iteration,
                                   "seed": iteration_seed, "n_test": int(len(mc_split.test)),
                                   "n_test_patients": int(len(np.unique(table.groups[mc_split.test])))}
            if len(mc_split.test) == 0:
                row["skipped"] = "empty test part"
            else:
                torch.manual_seed(iteration_seed)
                head = fit_head(features, table.labels, mc_split, variant_config,
                                replace(variant_options, seed=iteration_seed % (2**31)))
                probabilities = softmax(head.logits(features[mc_split.test]))
                metrics = classification_metrics(table.labels[mc_split.test], probabilities, table.label_names)
                row.update({key: metrics.get(key) for key in ABLATION_METRICS})
            parts.save_json(name, row)
            rows.append(row)
    bar.close()

    per_iteration = pd.DataFrame(rows)
    summary_rows = []
    for study in [s for s in ABLATION_STUDIES if s in studies]:
        names = [v.name for v in variants if v.study == study]
        reference = names[0]
        for name in names:
            block = per_iteration[(per_iteration.study == study) & (per_iteration.variant == name)]
            for metric in ABLATION_METRICS:
                if metric not in block:
                    continue
                values = block.sort_values("iteration")[metric].astype(float).to_numpy()
                stats = describe(values)
                entry = {"study": study, "variant": name, "metric": metric, **stats}
                if name != reference:
                    ref_values = per_iteration[(per_iteration.study == study) & (per_iteration.variant == reference)]
                    ref_values = ref_values.sort_values("iteration")[metric].astype(float).to_numpy()
                    test = paired_tests(ref_values, values)
                    entry.update({"difference_vs_reference": test["mean_difference"],
                                  "difference_ci_low": test["mean_ci_low"], "difference_ci_high": test["mean_ci_high"],
                                  "t_pvalue": test["t_pvalue"], "wilcoxon_pvalue": test["wilcoxon_pvalue"]})
                summary_rows.append(entry)
    summary = pd.DataFrame(summary_rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_iteration.to_csv(out_dir / "ablation_iterations.csv", index=False)
    summary.to_csv(out_dir / "ablation.csv", index=False)
    (out_dir / "ablation.md").write_text(ablation_markdown(summary, n_iter=len(draws), run_dir=run_dir),
                                        encoding="utf-8")
    return per_iteration, summary


def ablation_markdown(summary: Any, *, n_iter: int, run_dir: Path,
                      metrics: Sequence[str] = ("f1_macro", "accuracy", "mcc", "roc_auc")) -> str:
    """One Markdown table per study: mean [2.5th, 97.5th percentile] per metric, paired p vs the reference."""

    def cell(frame, metric):
        row = frame[frame.metric == metric]
        if row.empty or row.iloc[0]["mean"] is None or not np.isfinite(row.iloc[0]["mean"]):
            return "n/a"
        row = row.iloc[0]
        text = f"{row['mean']:.3f} [{row['p2_5']:.3f}, {row['p97_5']:.3f}]"
        p = row.get("t_pvalue")
        if p is not None and isinstance(p, float) and np.isfinite(p):
            text += f" (p={p:.2g})"
        return text

    lines = [f"# HybridCN-NAS ablation of `{run_dir}`", "",
             f"{n_iter} patient-wise Monte Carlo iterations over the run's held-out patients; mean "
             "[2.5th, 97.5th percentile]; p: paired t-test against the first row of each study.", ""]
    for study in summary.study.unique() if len(summary) else []:
        block = summary[summary.study == study]
        lines += [f"## {study}", "", "| variant | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        for name in block.variant.unique():
            frame = block[block.variant == name]
            lines.append(f"| {name} | " + " | ".join(cell(frame, m) for m in metrics) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"
