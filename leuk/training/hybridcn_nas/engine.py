"""The HybridCN-NAS engine: stages, head, assembly, save, one test evaluation and the shared records (the
out-of-distribution detector is fitted by :mod:`leuk.experiments.runs`)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from leuk.records import SPLIT_PARTS, training_split_record, write_eval_results, write_training_split
from leuk.training.hybridcn_nas.cache import StageCache, json_default
from leuk.training.hybridcn_nas.data import PixelBank, load_table
from leuk.training.hybridcn_nas.head import fit_head
from leuk.training.hybridcn_nas.options import STAGES_DIR, HybridTrainOptions
from leuk.training.hybridcn_nas.stages import run_feature_stages

__all__ = ["HybridTrainResult", "train_and_save"]


@dataclass
class HybridTrainResult:
    """Where the model went and what it scored."""

    output_dir: Path
    test_metrics: dict[str, Any]
    validation_metrics: dict[str, Any]
    segmentation: dict[str, Any]
    temperature: float


def _pick(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: record[key] for key in keys if key in record}


def _evaluate(model, pixels: PixelBank, rows: np.ndarray, labels: np.ndarray, label_names,
              batch_size: int = 32) -> tuple[dict, np.ndarray]:
    import torch

    from leuk.metrics import classification_metrics

    device = model.feature_mean.device
    with torch.no_grad():
        logits = torch.cat([model(pixel_values=pixels[rows[i:i + batch_size]].to(device)).logits.float().cpu()
                            for i in range(0, len(rows), batch_size)])
    probabilities = torch.softmax(logits, dim=-1).numpy()
    return classification_metrics(labels[rows], probabilities, label_names), probabilities


def train_and_save(
    data_dir: str | Path,
    out_dir: str | Path,
    options: Optional[HybridTrainOptions] = None,
    *,
    work_dir: str | Path | None = None,
    restart: bool = False,
) -> HybridTrainResult:
    """Train HybridCN-NAS on an Aria-layout folder, save it to ``out_dir`` and score it once on the test patients
    (see the module docstring). The out-of-distribution detector is fitted a floor up, by
    :func:`leuk.experiments.runs.train_hybridcn_nas` (the whole run as ``leuk train hybridcn-nas`` starts it).

    Stage files go to ``work_dir`` (default ``<out_dir>/stages``); an interrupted run resumes from the last
    finished stage. ``restart`` deletes them first.
    """
    import torch

    from leuk.data.splits import patient_set_hash
    from leuk.models.hybridcn_nas import HybridCNNASForImageClassification
    from leuk.training.efficientnet_se import looks_synthetic

    options = (options or HybridTrainOptions()).resolved()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / STAGES_DIR
    if restart and work_dir.exists():
        shutil.rmtree(work_dir)
    table = load_table(data_dir, options.patients_csv)
    stages = run_feature_stages(table, options, work_dir)
    model, processor, split = stages.model, stages.processor, stages.split
    cache = StageCache(work_dir)

    if cache.has("head.pt"):
        stored = cache.load_state("head.pt")
        head_report = cache.load_json("head.json")
    else:
        head_started = time.perf_counter()
        head = fit_head(stages.features, table.labels, split, model.config, options)
        stored = {"classifier": head.classifier_state, "mean": torch.from_numpy(head.selection.mean),
                  "scale": torch.from_numpy(head.selection.scale), "indices": torch.from_numpy(head.selection.indices)}
        head_report = {"temperature": head.temperature, "best_epoch": head.best_epoch, "history": head.history,
                       "num_selected": int(len(head.selection.indices)),
                       "seconds": round(time.perf_counter() - head_started, 1)}
        cache.save_state("head.pt", stored)
        cache.save_json("head.json", head_report)

    # assemble in place: the classifier sized to the features actually selected, the fitted buffers
    from leuk.models.hybridcn_nas.modeling_hybridcn_nas import TokenAttentionClassifier

    config = model.config
    config.num_selected = int(head_report["num_selected"])
    config.temperature = float(head_report["temperature"])
    synthetic = looks_synthetic(table.root) if options.synthetic is None else bool(options.synthetic)
    config.training_protocol = {
        "engine": "leuk.training.hybridcn_nas",
        "preset": options.preset,
        "protocol": options.protocol if table.patient_level else "image (no patient map)",
        "seed": options.seed,
        "stages": "segmenter (Dice+BCE) -> extractor (end to end, temporary linear head) -> features -> "
                  "z-score + mRMR on training rows -> token-attention classifier -> temperature on validation",
        "preprocessing": list(options.steps),
        "synthetic": synthetic,
        "options": options.fingerprint(),
    }
    if not options.pretrained:
        config.pretrained_backbone_source = None  # else the family's loader recorded each branch's source
    model.classifier = TokenAttentionClassifier(config)
    model.classifier.load_state_dict(stored["classifier"])
    model.register_buffer("selected_indices", torch.zeros(config.num_selected, dtype=torch.long))
    model.set_feature_selection(stored["mean"].numpy(), stored["scale"].numpy(), stored["indices"].numpy())
    model.eval()

    from leuk.models.save import save_model_folder

    save_model_folder(model, processor, out_dir, dtype=options.save_dtype)

    # evaluate what was saved, once
    saved = HybridCNNASForImageClassification.from_pretrained(out_dir, dtype=torch.float32).to(options.device).eval()
    pixels = PixelBank(stages.preprocessed)
    label_names = table.label_names
    validation_metrics = (_evaluate(saved, pixels, split.val, table.labels, label_names)[0]
                          if len(split.val) else {})
    test_metrics, _ = _evaluate(saved, pixels, split.test, table.labels, label_names)
    segmentation = {part: stages.reports.get("segmenter", {}).get(part) for part in ("val", "test")}
    split_record = training_split_record(split, table.paths, table.labels, table.groups, label_names, table.root,
                                         loader="aria", synthetic=synthetic, protocol=split.protocol,
                                         seed=options.seed, test_size=options.test_size, val_size=options.val_size)
    eval_results = {
        "model": options.preset,
        "protocol": config.training_protocol["protocol"],
        "split": "test",
        "synthetic": synthetic,
        "dataset": f"{'synthetic ' if synthetic else ''}aria at {table.root}",
        "seed": options.seed,
        "temperature": config.temperature,
        "test_patients_hash": patient_set_hash(table.groups[split.test]),
        "split_sizes": {part: {key: split_record[part][key] for key in ("n_patients", "n_images", "per_class")}
                        for part in SPLIT_PARTS},
        "segmentation": segmentation,
        "selection": {"num_features": int(config.num_features), "num_selected": int(config.num_selected),
                      "fitted_on": "training rows only"},
        "training": {
            "segmenter": _pick(stages.reports.get("segmenter", {}), "best_epoch", "best_val_dice", "seconds"),
            "extractor": _pick(stages.reports["extractor"], "best_epoch", "best_val_loss", "seconds"),
            "classifier": _pick(head_report, "best_epoch", "seconds"),
            "runtime_s": round(time.perf_counter() - started, 1),
        },
        "validation": validation_metrics,
        "test": test_metrics,
    }
    write_eval_results(out_dir, eval_results, default=json_default)
    write_training_split(out_dir, split_record)
    return HybridTrainResult(out_dir, test_metrics, validation_metrics, segmentation, config.temperature)
