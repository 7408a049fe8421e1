"""Training engine of HybridCN-NAS: staged, resumable, patient-wise.

Stages (each writes its result under ``<out>/stages`` and is skipped when that result exists):

1. ``split``: patient-grouped train/val/test split (``leuk.data.splits``);
2. ``images``: every image read once and resized to the model's ``image_size`` (uint8 cache);
3. ``stain``: the Reinhard target = mean Lab (or RGB) statistics of the TRAINING images;
4. ``preprocessed``: the phase-1 steps applied to every image (uint8 cache) -- the same code the image
   processor runs at inference time;
5. ``segmenter``: the Attention U-Net trained with Dice + BCE on the training masks (``Masks/``, or weak
   masks derived from ``Segmented/``), best epoch by validation Dice; Dice/IoU measured on the test patients;
6. ``extractor``: branches, self-attention, projections, fusion and factorised projection trained end to end
   on masked training images through a temporary linear classifier on the fused features (so no layer stays
   random), best epoch by validation loss;
7. ``features``: the feature vector of every image (float32 cache, reused by ``leuk ablate``);
8. ``head``: z-score + mRMR fitted on the training rows only, the token-attention classifier trained on
   them (early stopping on validation loss) and the temperature fitted on validation logits.

Then the assembled model is saved (weights, processor, remote code), reloaded from disk and evaluated ONCE
on the test patients: ``eval_results.json``.

:func:`run_ablation` (``leuk ablate``) refits stage 8 for every ablation variant on patient-wise Monte Carlo
draws over a finished run's held-out patients, reusing its cached features.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from leuk.errors import LeukError
from leuk.records import EVAL_RESULTS_FILE, SPLIT_FILE, SPLIT_PARTS, training_split_record, write_training_split

__all__ = [
    "EVAL_RESULTS_FILE",
    "OPTIMIZERS",
    "PRESETS",
    "HeadFit",
    "HybridTrainOptions",
    "HybridTrainResult",
    "StageCache",
    "ablation_variants",
    "fit_head",
    "fit_stain_target",
    "held_out_monte_carlo",
    "load_table",
    "run_ablation",
    "run_feature_stages",
    "train_hybridcn_nas",
]

STAGES_DIR = "stages"
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adamax")
#: preset name of ``leuk.models`` per training preset
PRESETS = {"lite": "hybridcn-nas-lite", "paper": "hybridcn-nas"}
#: per-preset defaults of the options left as ``None``
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "lite": {"segmenter_epochs": 15, "extractor_epochs": 20, "extractor_lr": 2e-3, "classifier_epochs": 150,
             "classifier_lr": 1e-3},
    "paper": {"segmenter_epochs": 40, "extractor_epochs": 10, "extractor_lr": 1e-4, "classifier_epochs": 100,
              "classifier_lr": 1e-4},
}


@dataclass
class HybridTrainOptions:
    """Every knob of a HybridCN-NAS training run (``None`` = the preset's default, see PRESET_DEFAULTS)."""

    preset: str = "lite"
    config_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    protocol: str = "patient"
    test_size: float = 0.2
    val_size: float = 0.15
    patients_csv: Optional[str] = None
    pretrained: bool = False
    freeze_backbones: bool = False
    steps: tuple[str, ...] = ("stain", "multiscale", "edge", "clahe", "denoise")
    stain_color_space: str = "lab"
    stain_template: Optional[str] = None
    batch_size: int = 16
    segmenter_epochs: Optional[int] = None
    segmenter_lr: float = 3e-3
    extractor_epochs: Optional[int] = None
    extractor_lr: Optional[float] = None
    classifier_epochs: Optional[int] = None
    classifier_lr: Optional[float] = None
    classifier_batch_size: int = 64
    optimizer: str = "adamw"
    weight_decay: float = 1e-2
    patience: int = 30
    num_selected: Optional[int] = None
    save_dtype: str = "float32"
    synthetic: Optional[bool] = None
    device: str = "cpu"
    progress: bool = True

    def resolved(self) -> "HybridTrainOptions":
        """A copy with the preset's defaults filled in; raises ``LeukError`` for invalid values."""
        if self.preset not in PRESETS:
            raise LeukError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.optimizer not in OPTIMIZERS:
            raise LeukError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        from leuk.preprocess import PREPROCESSING_STEPS

        unknown = sorted(set(self.steps) - set(PREPROCESSING_STEPS))
        if unknown:
            raise LeukError(f"unknown preprocessing step(s) {', '.join(unknown)} "
                            f"(steps: {', '.join(PREPROCESSING_STEPS)})")
        if self.save_dtype not in ("float32", "float16", "bfloat16"):
            raise LeukError(f"save_dtype must be float32, float16 or bfloat16, got {self.save_dtype!r}")
        filled = {key: value for key, value in PRESET_DEFAULTS[self.preset].items() if getattr(self, key) is None}
        return replace(self, steps=tuple(s for s in PREPROCESSING_STEPS if s in self.steps), **filled)

    def fingerprint(self) -> dict[str, Any]:
        """The options that determine the stage results (not device, progress or output dtype)."""
        record = asdict(self)
        for key in ("device", "progress", "save_dtype", "synthetic"):
            record.pop(key)
        record["steps"] = list(self.steps)
        return record


# ---- data -------------------------------------------------------------------------------------------
@dataclass
class AriaTable:
    """The rows of an Aria-layout dataset folder."""

    root: Path
    paths: list[str]
    labels: np.ndarray
    groups: np.ndarray
    mask_paths: list[Optional[str]]
    label_names: list[str]
    patient_level: bool

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path, label, group in zip(self.paths, self.labels.tolist(), self.groups.tolist()):
            digest.update(f"{Path(path).relative_to(self.root).as_posix()}\t{label}\t{group}\n".encode())
        return digest.hexdigest()[:16]


def load_table(data_dir: str | Path, patients_csv: str | Path | None = None) -> AriaTable:
    """Rows of an Aria folder via :func:`leuk.data.load_aria` (paths, labels, patients, mask paths)."""
    import warnings

    from leuk.data import load_aria

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        dataset = load_aria(data_dir, patients_csv)
    for warning in caught:
        warnings.warn(warning.message, warning.category, stacklevel=2)
    table = dataset.select_columns(["path", "label", "patient_id", "mask"])
    groups = np.asarray([str(p) for p in table["patient_id"]])
    return AriaTable(
        root=Path(data_dir).expanduser().resolve(),
        paths=[str(Path(p).resolve()) for p in table["path"]],
        labels=np.asarray(table["label"], dtype=np.int64),
        groups=groups,
        mask_paths=list(table["mask"]),
        label_names=list(dataset.features["label"].names),
        patient_level=not all(g.startswith("image:") for g in groups),
    )


def _weak_mask_path(image_path: str) -> Optional[Path]:
    parts = list(Path(image_path).parts)
    if "Original" not in parts:
        return None
    parts[len(parts) - 1 - parts[::-1].index("Original")] = "Segmented"
    candidate = Path(*parts)
    return candidate if candidate.is_file() else None


def read_mask(mask_path: Optional[str], image_path: str, size: int) -> np.ndarray:
    """The cell mask of an image at ``size x size`` (bool): ``Masks/`` when present, else a weak mask from
    the ``Segmented/`` copy (cells on a white background: pixels darker than near-white)."""
    import cv2

    from leuk.io import read_image

    if mask_path:
        mask = np.asarray(read_image(mask_path, mode="L"), dtype=np.float32) / 255.0
    else:
        segmented = _weak_mask_path(image_path)
        if segmented is None:
            raise LeukError(
                f"no cell mask for {Path(image_path).name}: the segmenter needs Masks/<class>/<name>.png or a "
                "Segmented/ copy of the image (or train with use_segmenter=False)"
            )
        rgb = np.asarray(read_image(segmented), dtype=np.uint8)
        mask = cv2.morphologyEx((rgb.min(axis=2) < 235).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = mask.astype(np.float32)
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) > 0.5


# ---- stage cache ------------------------------------------------------------------------------------
class StageCache:
    """Files of the stages under one folder, written atomically; ``run.json`` guards against mixing runs."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.folder / name

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    @contextlib.contextmanager
    def writing(self, name: str):
        from leuk.io import atomic_output

        with atomic_output(self.path(name)) as temporary:
            yield temporary

    def save_array(self, name: str, array: np.ndarray) -> None:
        with self.writing(name) as temporary, open(temporary, "wb") as handle:
            np.save(handle, array)

    def load_array(self, name: str) -> np.ndarray:
        return np.load(self.path(name))

    def save_json(self, name: str, payload: Any) -> None:
        with self.writing(name) as temporary:
            Path(temporary).write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8")

    def load_json(self, name: str) -> Any:
        return json.loads(self.path(name).read_text(encoding="utf-8"))

    def save_state(self, name: str, state: dict) -> None:
        import torch

        with self.writing(name) as temporary, open(temporary, "wb") as handle:
            torch.save(state, handle)

    def load_state(self, name: str) -> dict:
        import torch

        return torch.load(self.path(name), map_location="cpu", weights_only=True)

    def check_run(self, record: dict[str, Any]) -> None:
        """Write ``run.json`` or check that the stored one matches ``record`` (same data and options)."""
        if self.has("run.json"):
            stored = self.load_json("run.json")
            if stored != json.loads(json.dumps(record, default=_json_default)):
                current = json.loads(json.dumps(record, default=_json_default))
                changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
                if changed == ["options"]:
                    old, new = stored["options"], current["options"]
                    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise LeukError(
                    f"{self.folder} holds stages of a run with other settings ({', '.join(changed)}); "
                    "use another output folder or --restart"
                )
        else:
            self.save_json("run.json", record)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (Path, tuple)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# ---- helpers ----------------------------------------------------------------------------------------
def _progress(iterable, desc: str, enabled: bool, total: Optional[int] = None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not enabled, total=total, leave=False)


def _class_weights(labels: np.ndarray, n_classes: int):
    import torch

    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


class PixelBank:
    """uint8 images (N, H, W, 3) kept as they are and served as float batches (n, 3, H, W) in [0, 1]
    (``bank[rows]`` or ``bank[start:stop]``), so a whole dataset never sits in memory as float32."""

    def __init__(self, images: np.ndarray):
        import torch

        self.images = torch.from_numpy(np.ascontiguousarray(images))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, height, width, channels = self.images.shape
        return n, channels, height, width

    def __getitem__(self, rows):
        import torch

        if isinstance(rows, np.ndarray):
            rows = torch.from_numpy(rows)
        return self.images[rows].permute(0, 3, 1, 2).float().div_(255.0)


def _flip_rotate(tensors, generator):
    """The same random flips and quarter turn for every tensor (N, C, H, W) of a batch."""
    import torch

    if torch.rand(1, generator=generator).item() < 0.5:
        tensors = [t.flip(-1) for t in tensors]
    if torch.rand(1, generator=generator).item() < 0.5:
        tensors = [t.flip(-2) for t in tensors]
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    return [t.rot90(turns, (-2, -1)) for t in tensors]


def make_optimizer(name: str, parameters, lr: float, weight_decay: float):
    """One of :data:`OPTIMIZERS` (SGD with Nesterov momentum 0.9)."""
    import torch

    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamax":
        return torch.optim.Adamax(parameters, lr=lr, weight_decay=weight_decay)
    raise LeukError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def fit_stain_target(images: np.ndarray, color_space: str = "lab") -> tuple[list[float], list[float]]:
    """Reinhard target: the mean over ``images`` (uint8 N x H x W x 3) of their per-channel means and stds."""
    from leuk.preprocess import stain_statistics

    if len(images) == 0:
        raise LeukError("no training images to fit the stain target on")
    stats = [stain_statistics(image, color_space) for image in images]
    means = np.mean([m for m, _ in stats], axis=0)
    stds = np.mean([s for _, s in stats], axis=0)
    return [float(v) for v in means], [float(v) for v in stds]


# ---- feature stages ---------------------------------------------------------------------------------
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

    from leuk.models import create_model

    overrides = dict(options.config_overrides)
    if options.num_selected is not None:
        overrides["num_selected"] = options.num_selected
    overrides["id2label"] = {i: name for i, name in enumerate(label_names)}
    overrides["label2id"] = {name: i for i, name in enumerate(label_names)}
    torch.manual_seed(options.seed)
    return create_model(PRESETS[options.preset], pretrained=options.pretrained, **overrides)


def _segmenter_stage(cache, model, pixels, table, split, options, size) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from leuk.segmentation import segmentation_scores, train_segmenter

    device = model.feature_mean.device
    if cache.has("segmenter.pt"):
        model.segmenter.load_state_dict(cache.load_state("segmenter.pt"))
        model.segmenter.eval()
        return cache.load_json("segmenter.json")
    started = time.perf_counter()
    masks = np.stack([read_mask(table.mask_paths[i], table.paths[i], size)
                      for i in _progress(range(len(table.paths)), "masks", options.progress)])
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


def _extractor_stage(cache, model, pixels, masks, labels, split, options) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    if cache.has("extractor.pt"):
        model.extractor.load_state_dict(cache.load_state("extractor.pt"))
        model.extractor.eval()
        return cache.load_json("extractor.json")
    started = time.perf_counter()
    extractor = model.extractor
    device = model.feature_mean.device
    n_labels = model.config.num_labels
    torch.manual_seed(options.seed + 1)
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(model.config.factorized_dims[-1], n_labels)).to(device)
    frozen = [extractor.branch_a, extractor.branch_b] if options.freeze_backbones else []
    generator = torch.Generator().manual_seed(options.seed + 1)
    weights = _class_weights(labels[split.train], n_labels).to(device)
    train_rows = split.train
    best_state, best_loss, best_epoch, history = None, float("inf"), -1, []
    with _frozen(frozen):
        parameters = [p for p in list(extractor.parameters()) + list(head.parameters()) if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=options.extractor_lr, weight_decay=options.weight_decay)
        batches_per_epoch = max(len(train_rows) // options.batch_size, 1)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=options.extractor_lr, total_steps=options.extractor_epochs * batches_per_epoch,
            pct_start=0.2)
        for epoch in _progress(range(options.extractor_epochs), "extractor", options.progress):
            extractor.train()
            head.train()
            for module in frozen:
                module.eval()
            order = train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
            total, seen = 0.0, 0
            for batch_index in range(batches_per_epoch):
                rows = order[batch_index * options.batch_size:(batch_index + 1) * options.batch_size]
                if len(rows) < 2:
                    continue
                x, m = _flip_rotate([pixels[rows], masks[rows]], generator)
                logits = head(extractor(x.to(device), m.to(device)).fused)
                loss = F.cross_entropy(logits, torch.from_numpy(labels[rows]).to(device), weight=weights)
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
                    val_logits = torch.cat([
                        head(extractor(pixels[rows].to(device), masks[rows].to(device)).fused).cpu()
                        for rows in np.array_split(split.val, -(-len(split.val) // 32))])
                val_targets = torch.from_numpy(labels[split.val])
                record["val_loss"] = float(F.cross_entropy(val_logits, val_targets))
                record["val_accuracy"] = float((val_logits.argmax(1) == val_targets).float().mean())
                if record["val_loss"] < best_loss:
                    best_loss, best_epoch = record["val_loss"], epoch
                    best_state = copy.deepcopy(extractor.state_dict())
            history.append(record)
    if best_state is not None:
        extractor.load_state_dict(best_state)
    else:
        best_epoch = options.extractor_epochs - 1
    extractor.eval()
    report = {"best_epoch": best_epoch, "best_val_loss": best_loss if best_state is not None else None,
              "history": history, "frozen_backbones": options.freeze_backbones,
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
    cache.check_run({"data": table.fingerprint(), "n_images": len(table.paths), "options": options.fingerprint()})
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
                            for path in _progress(table.paths, "read images", options.progress)])
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
                                 for image in _progress(resized, "preprocess", options.progress)])
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
                for i in _progress(range(0, len(pixels), 32), "features", options.progress)
            ])
        cache.save_array("features.npy", features.numpy().astype(np.float32))
    features = cache.load_array("features.npy")
    model.eval()
    return FeatureStages(model, processor, split, features, preprocessed, reports)


# ---- head: selection, classifier, temperature -------------------------------------------------------
@dataclass
class HeadFit:
    """Stage 8: everything fitted on top of the cached features."""

    selection: Any  # leuk.selection.FeatureSelection
    classifier_state: dict
    config: Any
    temperature: float
    best_epoch: int
    history: list[dict]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Temperature-scaled logits of raw feature rows."""
        import torch

        from leuk.models.hybridcn_nas.modeling_hybridcn_nas import TokenAttentionClassifier

        classifier = TokenAttentionClassifier(self.config)
        classifier.load_state_dict(self.classifier_state)
        classifier.eval()
        with torch.no_grad():
            logits, _ = classifier(torch.from_numpy(self.selection.transform(features)))
        return logits.numpy().astype(np.float64) / self.temperature


def _classifier_logits(classifier, inputs, batch_size: int = 256):
    import torch

    with torch.no_grad():
        return torch.cat([classifier(inputs[i:i + batch_size])[0] for i in range(0, len(inputs), batch_size)])


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    split: Any,
    config: Any,
    options: HybridTrainOptions,
) -> HeadFit:
    """Standardisation + mRMR on the training rows, the token-attention classifier trained on them (best
    epoch by validation loss) and the temperature on the validation logits. Test rows are never read."""
    import torch
    import torch.nn.functional as F

    from leuk.metrics import fit_temperature
    from leuk.models.hybridcn_nas.modeling_hybridcn_nas import TokenAttentionClassifier
    from leuk.selection import fit_selection

    options = options.resolved()
    config = copy.deepcopy(config)
    selection = fit_selection(features, labels, split.train, config.num_selected)
    usable = len(selection.indices) - len(selection.indices) % config.token_size
    if usable < config.token_size:
        raise LeukError(f"only {len(selection.indices)} informative features: fewer than one token "
                        f"of {config.token_size}")
    if usable != config.num_selected:
        selection.indices = selection.indices[:usable]
        config.num_selected = usable
    inputs = {part: torch.from_numpy(selection.transform(features[getattr(split, part)])) for part in ("train", "val")}
    targets = {part: torch.from_numpy(labels[getattr(split, part)]) for part in ("train", "val")}

    torch.manual_seed(options.seed + 2)
    generator = torch.Generator().manual_seed(options.seed + 2)
    classifier = TokenAttentionClassifier(config)
    optimizer = make_optimizer(options.optimizer, classifier.parameters(), options.classifier_lr, options.weight_decay)
    weights = _class_weights(labels[split.train], config.num_labels)
    n_train, batch_size = len(split.train), options.classifier_batch_size
    best_state, best_loss, best_epoch, since_best, history = None, float("inf"), -1, 0, []
    for epoch in range(options.classifier_epochs):
        classifier.train()
        order = torch.randperm(n_train, generator=generator)
        total = 0.0
        for start in range(0, n_train, batch_size):
            rows = order[start:start + batch_size]
            logits, _ = classifier(inputs["train"][rows])
            loss = F.cross_entropy(logits, targets["train"][rows], weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        record = {"epoch": epoch, "loss": total / n_train}
        if len(split.val):
            classifier.eval()
            record["val_loss"] = float(F.cross_entropy(_classifier_logits(classifier, inputs["val"]), targets["val"]))
            if record["val_loss"] < best_loss:
                best_loss, best_epoch, since_best = record["val_loss"], epoch, 0
                best_state = copy.deepcopy(classifier.state_dict())
            else:
                since_best += 1
        history.append(record)
        if len(split.val) and since_best >= options.patience:
            break
    if best_state is not None:
        classifier.load_state_dict(best_state)
    else:
        best_epoch = len(history) - 1
    classifier.eval()
    temperature = 1.0
    if len(split.val):
        temperature = fit_temperature(_classifier_logits(classifier, inputs["val"]).numpy(), targets["val"].numpy())
    return HeadFit(selection, copy.deepcopy(classifier.state_dict()), config, float(temperature), best_epoch, history)


# ---- the whole run ----------------------------------------------------------------------------------
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


def train_hybridcn_nas(
    data_dir: str | Path,
    out_dir: str | Path,
    options: Optional[HybridTrainOptions] = None,
    *,
    work_dir: str | Path | None = None,
    restart: bool = False,
) -> HybridTrainResult:
    """Train HybridCN-NAS on an Aria-layout folder and save it to ``out_dir`` (see the module docstring).

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
    config.pretrained_backbone_source = "timm ImageNet weights" if options.pretrained else None
    model.classifier = TokenAttentionClassifier(config)
    model.classifier.load_state_dict(stored["classifier"])
    model.register_buffer("selected_indices", torch.zeros(config.num_selected, dtype=torch.long))
    model.set_feature_selection(stored["mean"].numpy(), stored["scale"].numpy(), stored["indices"].numpy())
    model.eval()

    from leuk.hub.save import save_model_folder

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
        "model": PRESETS[options.preset],
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
    (out_dir / EVAL_RESULTS_FILE).write_text(json.dumps(eval_results, indent=2, default=_json_default) + "\n",
                                            encoding="utf-8")
    write_training_split(out_dir, split_record)
    from leuk.ood import fit_after_training  # on the training patients' images only; threshold from validation

    fit_after_training(out_dir, data_dir, batch_size=options.classifier_batch_size)
    return HybridTrainResult(out_dir, test_metrics, validation_metrics, segmentation, config.temperature)


# ---- ablation ---------------------------------------------------------------------------------------
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
    seed: int = 0,
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
    from leuk.metrics import classification_metrics
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
    bar = _progress(range(len(variants) * len(draws)), "ablation", progress)
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
                logits = head.logits(features[mc_split.test])
                probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
                probabilities /= probabilities.sum(axis=1, keepdims=True)
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
