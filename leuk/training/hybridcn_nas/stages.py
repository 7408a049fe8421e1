"""Stages 1-7 of a HybridCN-NAS run: split, images, stain target, preprocessing, segmenter, extractor, features."""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from leuk.errors import LeukError
from leuk.training.hybridcn_nas.cache import StageCache
from leuk.training.hybridcn_nas.data import AriaTable, PixelBank, fit_stain_target, read_mask
from leuk.training.hybridcn_nas.optim import class_weights, progress_bar
from leuk.training.hybridcn_nas.options import HybridTrainOptions, upgraded_fingerprint

__all__ = ["FeatureStages", "run_feature_stages"]


@dataclass
class FeatureStages:
    """What :func:`run_feature_stages` leaves: the model with trained segmenter and extractor, its
    processor, the split, the cached feature matrix and the per-stage reports."""

    model: Any
    processor: Any
    split: Any
    features: np.ndarray
    preprocessed: np.ndarray
    reports: dict[str, Any]


def _split_stage(cache: StageCache, table: AriaTable, options: HybridTrainOptions):
    from leuk.data.splits import Split, patient_set_hash, train_val_test_split

    if cache.has("split.json"):
        stored = cache.load_json("split.json")
        return Split(np.asarray(stored["train"]), np.asarray(stored["val"]), np.asarray(stored["test"]),
                     protocol=stored["protocol"])
    try:
        split = train_val_test_split(table.labels, table.groups, test_size=options.test_size,
                                     val_size=options.val_size, seed=options.seed, protocol=options.protocol)
    except ValueError as err:
        raise LeukError(str(err)) from err
    if len(split.train) == 0 or len(split.test) == 0:
        raise LeukError(f"{table.root} has too few patients for a train/test split")
    cache.save_json("split.json", {
        "protocol": split.protocol, "train": split.train, "val": split.val, "test": split.test,
        "test_patients_hash": patient_set_hash(table.groups[split.test]),
    })
    return split


def _build_model(options: HybridTrainOptions, n_labels: int, label_names: Sequence[str]):
    import torch

    from leuk.models import create_model, family_of

    overrides = dict(options.config_overrides)
    if options.num_selected is not None:
        overrides["num_selected"] = options.num_selected
    overrides["id2label"] = {i: name for i, name in enumerate(label_names)}
    overrides["label2id"] = {name: i for i, name in enumerate(label_names)}
    torch.manual_seed(options.seed)
    model = create_model(options.preset, **overrides)
    if options.pretrained:
        source = "auto" if options.pretrained is True else str(options.pretrained)
        family_of(model).load_pretrained(model, source, branches=tuple(options.pretrained_branches))
    return model


def _segmenter_stage(cache, model, pixels, table, split, options, size) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from leuk.segmentation import segmentation_scores, train_segmenter

    device = model.feature_mean.device
    report = cache.restore_module(model.segmenter, "segmenter")
    if report is not None:
        return report
    started = time.perf_counter()
    masks = np.stack([read_mask(table.mask_paths[i], table.paths[i], size)
                      for i in progress_bar(range(len(table.paths)), "masks", options.progress)])
    mask_tensor = torch.from_numpy(masks).unsqueeze(1).float()
    with torch.no_grad():
        inputs = torch.cat([model.segmenter_input(pixels[i:i + 64]) for i in range(0, len(pixels), 64)])
        targets = (F.interpolate(mask_tensor, size=inputs.shape[-2:], mode="area") > 0.5).float()
    torch.manual_seed(options.seed)
    fit = train_segmenter(
        model.segmenter, inputs[split.train], targets[split.train],
        val_images=inputs[split.val] if len(split.val) else None,
        val_masks=targets[split.val] if len(split.val) else None,
        epochs=options.segmenter_epochs, batch_size=options.batch_size, lr=options.segmenter_lr,
        threshold=model.config.mask_threshold, seed=options.seed, progress=options.progress,
    )
    model.segmenter.eval()
    report: dict[str, Any] = {"best_epoch": fit.best_epoch, "best_val_dice": fit.best_val_dice,
                              "history": fit.history, "resolution": size}
    with torch.no_grad():
        for part in ("val", "test"):
            rows = getattr(split, part)
            if len(rows):
                predicted = torch.cat([model.cell_probabilities(pixels[rows[i:i + 16]].to(device)).cpu()
                                       for i in range(0, len(rows), 16)]) > model.config.mask_threshold
                report[part] = segmentation_scores(predicted[:, 0].numpy(), masks[rows])
    report["seconds"] = round(time.perf_counter() - started, 1)
    cache.save_state("segmenter.pt", model.segmenter.state_dict())
    cache.save_json("segmenter.json", report)
    return report


@contextlib.contextmanager
def _frozen(modules):
    states = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for parameter, _ in states:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in states:
            parameter.requires_grad_(flag)


def _learning_rate_groups(extractor, parameters, options: HybridTrainOptions) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: the pretrained branches at ``extractor_lr * backbone_lr_scale``
    (layer-wise fine-tuning keeps what ImageNet taught them), everything else at ``extractor_lr``."""
    pretrained_ids = set()
    if options.pretrained and options.backbone_lr_scale != 1.0:
        for side in options.pretrained_branches:
            pretrained_ids |= {id(p) for p in getattr(extractor, f"branch_{side}").parameters()}
    rest = [p for p in parameters if id(p) not in pretrained_ids]
    scaled = [p for p in parameters if id(p) in pretrained_ids]
    groups = [{"params": rest, "lr": options.extractor_lr}]
    if scaled:
        groups.append({"params": scaled, "lr": options.extractor_lr * options.backbone_lr_scale})
    return groups


def _cached_branches(cache, extractor, pixels, masks, options: HybridTrainOptions) -> dict[str, Any]:
    """Stand-ins for the frozen pretrained branches (:mod:`leuk.training.hybridcn_nas.frozen_branch`), their
    maps kept as ``frozen_branch_<side>.npy`` (the same in every fold that shares the images and the U-Net)."""
    import torch

    from leuk.training.hybridcn_nas.frozen_branch import CachedBranch, branch_maps

    stand_ins = {}
    for side in (options.pretrained_branches if options.pretrained else ()):
        name = f"frozen_branch_{side}.npy"
        if cache.has(name):
            maps = torch.from_numpy(cache.load_array(name))
        else:
            maps = branch_maps(extractor, side, pixels, masks, progress=options.progress)
            cache.save_array(name, maps.numpy())
        stand_ins[side] = CachedBranch(maps)
    return stand_ins


def _extractor_stage(cache, model, pixels, masks, labels, split, options) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from leuk.data.augment import apply_dihedral, dihedral_draw

    report = cache.restore_module(model.extractor, "extractor")
    if report is not None:
        return report
    started = time.perf_counter()
    extractor = model.extractor
    device = model.feature_mean.device
    n_labels = model.config.num_labels
    torch.manual_seed(options.seed + 1)
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(model.config.factorized_dims[-1], n_labels)).to(device)
    # deep supervision: each branch also learns to classify from its own pooled map, so that the gradient
    # reaching a backbone does not pass through the projection and fusion stack only
    branch_heads = nn.ModuleList(
        nn.Linear(width, n_labels) for width in (model.config.branch_a_channels, model.config.branch_b_channels)
    ).to(device) if options.branch_loss_weight > 0 else nn.ModuleList()
    frozen_sides = (("a", "b") if options.freeze_backbones
                    else tuple(options.pretrained_branches) if options.pretrained and options.freeze_pretrained else ())
    frozen = [getattr(extractor, f"branch_{side}") for side in frozen_sides]
    # a frozen pretrained branch is computed once per image and flip/turn (frozen_branch.py), not every epoch
    cached = _cached_branches(cache, extractor, pixels, masks, options) if options.freeze_pretrained else {}
    backbones = {side: getattr(extractor, f"branch_{side}") for side in cached}
    for side, stand_in in cached.items():
        setattr(extractor, f"branch_{side}", stand_in)
    generator = torch.Generator().manual_seed(options.seed + 1)
    weights = class_weights(labels[split.train], n_labels).to(device)
    train_rows = split.train
    best_state, best_loss, best_epoch, history = None, float("inf"), -1, []
    with _frozen(frozen):
        parameters = [p for p in [*extractor.parameters(), *head.parameters(), *branch_heads.parameters()]
                      if p.requires_grad]
        groups = _learning_rate_groups(extractor, parameters, options)
        optimizer = torch.optim.AdamW(groups, lr=options.extractor_lr, weight_decay=options.weight_decay)
        batches_per_epoch = max(len(train_rows) // options.batch_size, 1)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in groups],
            total_steps=options.extractor_epochs * batches_per_epoch, pct_start=0.2)
        for epoch in progress_bar(range(options.extractor_epochs), "extractor", options.progress):
            extractor.train()
            head.train()
            branch_heads.train()
            for module in frozen:
                module.eval()
            order = train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
            total, seen = 0.0, 0
            for batch_index in range(batches_per_epoch):
                rows = order[batch_index * options.batch_size:(batch_index + 1) * options.batch_size]
                if len(rows) < 2:
                    continue
                draw = dihedral_draw(generator)
                x, m = apply_dihedral((pixels[rows], masks[rows]), draw)
                for stand_in in cached.values():
                    stand_in.select(rows, draw)
                features = extractor(x.to(device), m.to(device))
                targets = torch.from_numpy(labels[rows]).to(device)
                loss = F.cross_entropy(head(features.fused), targets, weight=weights)
                for branch_head, pooled in zip(branch_heads, (features.pooled_a, features.pooled_b)):
                    loss = loss + options.branch_loss_weight * F.cross_entropy(branch_head(pooled), targets,
                                                                               weight=weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(parameters, 5.0)
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(rows)
                seen += len(rows)
            record = {"epoch": epoch, "loss": total / max(seen, 1)}
            if len(split.val):
                extractor.eval()
                head.eval()
                with torch.no_grad():
                    val_logits = []
                    for rows in np.array_split(split.val, -(-len(split.val) // 32)):
                        for stand_in in cached.values():
                            stand_in.select(rows)
                        val_logits.append(head(extractor(pixels[rows].to(device), masks[rows].to(device)).fused).cpu())
                    val_logits = torch.cat(val_logits)
                val_targets = torch.from_numpy(labels[split.val])
                record["val_loss"] = float(F.cross_entropy(val_logits, val_targets))
                record["val_accuracy"] = float((val_logits.argmax(1) == val_targets).float().mean())
                if record["val_loss"] < best_loss:
                    best_loss, best_epoch = record["val_loss"], epoch
                    best_state = copy.deepcopy(extractor.state_dict())
            history.append(record)
    for side, backbone in backbones.items():
        setattr(extractor, f"branch_{side}", backbone)
    if best_state is not None:
        # the stand-ins save nothing: the frozen backbones keep the weights they were given
        missing, unexpected = extractor.load_state_dict(best_state, strict=False)
        if unexpected or any(not key.startswith(tuple(f"branch_{side}." for side in cached)) for key in missing):
            raise RuntimeError(f"extractor state does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    else:
        best_epoch = options.extractor_epochs - 1
    extractor.eval()
    report = {"best_epoch": best_epoch, "best_val_loss": best_loss if best_state is not None else None,
              "branch_loss_weight": options.branch_loss_weight,
              "history": history, "frozen_backbones": options.freeze_backbones,
              "frozen_branches": list(frozen_sides),
              "seconds": round(time.perf_counter() - started, 1)}
    cache.save_state("extractor.pt", extractor.state_dict())
    cache.save_json("extractor.json", report)
    return report


def _predicted_masks(model, pixels, batch_size: int = 16):
    import torch

    if model.segmenter is None:
        return torch.ones(len(pixels), 1, *pixels.shape[-2:], dtype=torch.bool)
    device = model.feature_mean.device
    with torch.no_grad():
        return torch.cat([model.cell_mask(pixels[i:i + batch_size].to(device)).bool().cpu()
                          for i in range(0, len(pixels), batch_size)])


def run_feature_stages(
    table: AriaTable,
    options: HybridTrainOptions,
    work_dir: str | Path,
    *,
    split: Any = None,
) -> FeatureStages:
    """Stages 1-7 (split, images, stain target, preprocessing, segmenter, extractor, features) in
    ``work_dir``, each skipped when its file exists. ``split`` fixes the split instead of drawing one."""
    import torch

    from leuk.io import read_image
    from leuk.models.hybridcn_nas import HybridCNNASImageProcessor
    from leuk.preprocess import preprocess_image

    options = options.resolved()
    cache = StageCache(work_dir)
    cache.check_run({"data": table.fingerprint(), "n_images": len(table.paths), "options": options.fingerprint()},
                    upgrade=lambda stored: {**stored, "options": upgraded_fingerprint(stored.get("options") or {})})
    reports: dict[str, Any] = {}
    if split is not None and not cache.has("split.json"):
        from leuk.data.splits import patient_set_hash

        cache.save_json("split.json", {"protocol": split.protocol, "train": split.train, "val": split.val,
                                       "test": split.test,
                                       "test_patients_hash": patient_set_hash(table.groups[split.test])})
    split = _split_stage(cache, table, options)
    cache.save_json("data.json", {"root": str(table.root), "patients_csv": options.patients_csv})

    model = _build_model(options, len(table.label_names), table.label_names).to(options.device)
    size = model.config.image_size
    processor = HybridCNNASImageProcessor.from_model_config(
        model.config,
        do_stain_normalize="stain" in options.steps, do_multiscale="multiscale" in options.steps,
        do_edge_enhance="edge" in options.steps, do_clahe="clahe" in options.steps,
        do_denoise="denoise" in options.steps, stain_color_space=options.stain_color_space,
    )

    if not cache.has("images.npy"):
        started = time.perf_counter()
        resized = np.stack([processor.resize_rgb(read_image(path))
                            for path in progress_bar(table.paths, "read images", options.progress)])
        cache.save_array("images.npy", resized)
        reports["images_seconds"] = round(time.perf_counter() - started, 1)
    resized = cache.load_array("images.npy")

    if "stain" in options.steps:
        if not cache.has("stain.json"):
            if options.stain_template:
                template = np.asarray(read_image(options.stain_template), dtype=np.uint8)
                means, stds = fit_stain_target(template[None], options.stain_color_space)
                source = f"template {Path(options.stain_template).name}"
            else:
                means, stds = fit_stain_target(resized[split.train], options.stain_color_space)
                source = "training images (mean of per-image statistics)"
            cache.save_json("stain.json", {"color_space": options.stain_color_space, "means": means, "stds": stds,
                                           "fitted_on": source})
        target = cache.load_json("stain.json")
        processor.stain_target_means, processor.stain_target_stds = target["means"], target["stds"]

    if not cache.has("preprocessed.npy"):
        started = time.perf_counter()
        step_options = processor.step_options()
        preprocessed = np.stack([preprocess_image(image, **step_options)
                                 for image in progress_bar(resized, "preprocess", options.progress)])
        cache.save_array("preprocessed.npy", preprocessed)
        reports["preprocess_seconds"] = round(time.perf_counter() - started, 1)
    preprocessed = cache.load_array("preprocessed.npy")
    pixels = PixelBank(preprocessed)

    if model.segmenter is not None:
        reports["segmenter"] = _segmenter_stage(cache, model, pixels, table, split, options, size)
    masks = _predicted_masks(model, pixels)
    reports["extractor"] = _extractor_stage(cache, model, pixels, masks, table.labels, split, options)

    if not cache.has("features.npy"):
        with torch.no_grad():
            features = torch.cat([
                model.extractor(pixels[i:i + 32].to(options.device), masks[i:i + 32].to(options.device)).vector.cpu()
                for i in progress_bar(range(0, len(pixels), 32), "features", options.progress)
            ])
        cache.save_array("features.npy", features.numpy().astype(np.float32))
    features = cache.load_array("features.npy")
    model.eval()
    return FeatureStages(model, processor, split, features, preprocessed, reports)
