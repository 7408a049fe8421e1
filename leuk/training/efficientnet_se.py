"""Training engine of EfficientNet-SE and its baselines (VGG16, ResNet-50, plain EfficientNetV2-B3).

The run, in order:

1. load the dataset folder and split it by patient (seeded, :func:`leuk.data.splits.train_val_test_split`);
2. decode and resize every train/validation image once into a uint8 cache;
3. train with the transformers ``Trainer`` (AdamW, one scheduler, gradient clipping, bf16 on CUDA,
   on-device augmentation, optional minority oversampling, evaluation every epoch on VALIDATION,
   early stopping and best-checkpoint selection on validation weighted F1, resumable, multi-process
   under ``torchrun``/``accelerate launch`` with no code change);
4. fit the softmax temperature on validation logits and store it in the model config;
5. save model and processor (safetensors) and ``training_split.json`` (:func:`train_and_save`).

The finishing step runs a floor up, in :func:`leuk.experiments.runs.train_efficientnet_se` (the whole run as
``leuk train`` starts it): fit the out-of-distribution detector, evaluate ONCE on the test patients through the
saved folder and :class:`leuk.inference.Predictor` (the same path as ``leuk evaluate``) and write
``eval_results.json`` (:meth:`SavedRun.close`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from leuk.defaults import SEED, TEST_SIZE, VAL_SIZE
from leuk.errors import LeukError
from leuk.records import (
    EVAL_RESULTS_FILE,
    SPLIT_FILE,
    relative_path,
    training_split_record,
    write_eval_results,
    write_training_split,
)

__all__ = [
    "SPLIT_FILE",
    "EVAL_RESULTS_FILE",
    "TrainOptions",
    "FitResult",
    "TrainResult",
    "SavedRun",
    "fit_classifier",
    "fit_for_monte_carlo",
    "fit_split",
    "load_table",
    "looks_synthetic",
    "save_model",
    "train_and_save",
]

CHECKPOINTS_DIR = "checkpoints"
DTYPES = ("float32", "float16", "bfloat16")
MIXED_PRECISION = ("auto", "bf16", "no")
CACHE_MODES = ("auto", "memory", "none")
AUGMENT_PRESETS = ("paper", "strong")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
# Files in a dataset folder that say it was rendered by ``leuk.data.synthetic``.
_SYNTHETIC_MARKERS = ("SYNTHETIC", "SYNTHETIC.md", "synthetic.json", "masks/C-NMC_Leukemia", "masks/Original")

logger = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """Every knob of a training run (the CLI exposes each one). Defaults follow the paper."""

    data: str | Path
    out: str | Path
    model: str = "efficientnet-se"
    dataset: str = "cnmc"
    epochs: float = 50.0
    max_steps: int = -1
    batch_size: int = 32
    eval_batch_size: int | None = None
    image_size: int | None = None
    lr: float = 1e-4
    weight_decay: float = 1e-5
    scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    patience: int = 10
    eval_steps: int | None = None
    balanced: bool = True
    augment: bool = True
    augment_preset: str = "paper"
    seed: int = SEED
    test_size: float = TEST_SIZE
    val_size: float = VAL_SIZE
    protocol: str = "patient"
    pretrained: bool = False
    #: where ImageNet weights come from (:func:`leuk.models.pretrained.load_backbone_weights`): ``auto``,
    #: ``hub``, ``package`` or a file
    pretrained_source: str = "auto"
    #: the backbone's learning rate is ``lr * backbone_lr_scale`` (below 1 when fine-tuning a pretrained one)
    backbone_lr_scale: float = 1.0
    dtype: str = "float32"
    mixed_precision: str = "auto"
    cache: str = "auto"
    num_workers: int = 0
    resume: str | None = None
    save_total_limit: int = 2
    logging_steps: int = 10
    torch_compile: bool = False
    use_cpu: bool = False
    synthetic: bool | None = None
    progress: bool = True
    quiet: bool = False
    #: fit the out-of-distribution detector (:mod:`leuk.ood`) on the training images once the model is saved
    fit_ood: bool = True

    def __post_init__(self) -> None:
        if self.quiet:
            self.progress = False

    def validate(self) -> None:
        """Raise :class:`LeukError` (one line) for an impossible combination of options."""
        checks = [
            (self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"),
            (self.mixed_precision in MIXED_PRECISION,
             f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}"),
            (self.augment_preset in AUGMENT_PRESETS,
             f"--augment-preset must be one of {', '.join(AUGMENT_PRESETS)}, got {self.augment_preset!r}"),
            (self.cache in CACHE_MODES, f"--cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}"),
            (self.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}"),
            (self.epochs > 0 or self.max_steps > 0, "give --epochs > 0 or --max-steps > 0"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0, "--lr must be positive"),
            (self.weight_decay >= 0, "--weight-decay must not be negative"),
            (self.patience >= 1, "--patience must be at least 1"),
            (0 < self.test_size < 1 and 0 < self.val_size < 1 and self.test_size + self.val_size < 1,
             "--test-size and --val-size must lie in (0, 1) and sum to less than 1"),
            (self.image_size is None or self.image_size >= 8, "--image-size must be at least 8 pixels"),
            (0 <= self.warmup_ratio < 1, "--warmup-ratio must lie in [0, 1)"),
            (self.backbone_lr_scale > 0, "--backbone-lr-scale must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise LeukError(message)


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    test_metrics: dict[str, Any]
    validation_metrics: dict[str, Any]
    temperature: float
    best_checkpoint: str | None
    best_validation_f1: float | None
    split: dict[str, Any] = field(repr=False, default_factory=dict)


def looks_synthetic(root: str | Path) -> bool:
    """True when a dataset folder carries a marker of ``leuk synth`` output (the real sets have none)."""
    root = Path(root)
    return any((root / marker).exists() for marker in _SYNTHETIC_MARKERS)


def load_table(options: TrainOptions) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """(paths, labels, patient ids, label names) of the dataset folder ``options.data`` (layout
    ``options.dataset``); raises :class:`LeukError` for an unknown layout or an empty folder."""
    from leuk import data as leuk_data

    loaders: dict[str, Callable[[Any], Any]] = {"cnmc": leuk_data.load_cnmc, "aria": leuk_data.load_aria}
    if options.dataset not in loaders:
        raise LeukError(f"--dataset must be one of {', '.join(loaders)}, got {options.dataset!r}")
    dataset = loaders[options.dataset](options.data)
    label_names = list(dataset.features["label"].names)
    table = dataset.select_columns(["path", "label", "patient_id"])
    paths = [str(p) for p in table["path"]]
    labels = np.asarray(table["label"], dtype=np.int64)
    groups = np.asarray([str(p) for p in table["patient_id"]])
    if len(paths) == 0:
        raise LeukError(f"no images found in {options.data}")
    return paths, labels, groups, label_names


def _build_model(options: TrainOptions, label_names: list[str]):
    from transformers import set_seed

    from leuk.models import create_model, family_of

    # The Trainer seeds only once it is built, after the model: without this the random initial weights (the
    # head, or all of a from-scratch model) differ from run to run and a seeded run cannot be repeated.
    set_seed(options.seed)
    overrides: dict[str, Any] = {}
    if options.image_size:
        overrides["image_size"] = options.image_size
    model = create_model(options.model, pretrained=False, **overrides)
    current = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if current != label_names:
        id2label = dict(enumerate(label_names))
        focal_alpha = model.config.focal_alpha
        if isinstance(focal_alpha, dict) and set(focal_alpha) != set(label_names):
            focal_alpha = None  # the paper's per-class weights name C-NMC's classes only
        model = create_model(options.model, pretrained=False, id2label=id2label, num_labels=len(label_names),
                             focal_alpha=focal_alpha, **overrides)
    family = family_of(model)
    if options.pretrained:
        try:
            family.load_pretrained(model, options.pretrained_source)
        except LeukError:
            raise
        except RuntimeError as err:
            raise LeukError(str(err).splitlines()[0]) from err
    return model, family.processor(model.config)


def _use_cache(options: TrainOptions, n_images: int, image_size: int) -> bool:
    from leuk.training.data import AUTO_CACHE_LIMIT_BYTES, estimated_cache_bytes

    if options.cache == "auto":
        return estimated_cache_bytes(n_images, image_size) <= AUTO_CACHE_LIMIT_BYTES
    return options.cache == "memory"


def _training_arguments(options: TrainOptions, output_dir: Path, use_bf16: bool):
    import torch
    from transformers import TrainingArguments

    strategy = "steps" if options.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(output_dir / CHECKPOINTS_DIR),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.eval_batch_size or options.batch_size,
        learning_rate=options.lr,
        weight_decay=options.weight_decay,
        optim="adamw_torch_fused" if torch.cuda.is_available() and not options.use_cpu else "adamw_torch",
        lr_scheduler_type=options.scheduler,
        warmup_steps=options.warmup_ratio,
        max_grad_norm=options.max_grad_norm,
        bf16=use_bf16,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=options.eval_steps,
        save_steps=options.eval_steps,
        logging_strategy="steps",
        logging_steps=options.logging_steps,
        load_best_model_at_end=True,
        metric_for_best_model="f1_weighted",
        greater_is_better=True,
        save_total_limit=options.save_total_limit,
        seed=options.seed,
        data_seed=options.seed,
        dataloader_num_workers=options.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # keep worker processes across epochs (and evaluations) instead of starting them anew each time
        dataloader_persistent_workers=options.num_workers > 0,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=not options.progress,
        torch_compile=options.torch_compile,
        ddp_find_unused_parameters=False,
        use_cpu=options.use_cpu or not torch.cuda.is_available(),
    )


def _protocol(options: TrainOptions, split_info: dict[str, Any], trainer, use_bf16: bool, augment) -> dict[str, Any]:
    state = trainer.state
    return {
        "split": options.protocol,
        "split_seed": options.seed,
        "test_size": options.test_size,
        "val_size": options.val_size,
        "train_patients": split_info["train"]["patients"],
        "val_patients": split_info["val"]["patients"],
        "test_patients": split_info["test"]["patients"],
        "test_patients_hash": split_info["test_patients_hash"],
        "n_images": {name: split_info[name]["n_images"] for name in ("train", "val", "test")},
        "model_selection": "best checkpoint by weighted F1 on validation",
        "early_stopping_patience": options.patience,
        "calibration": "temperature scaling fitted on validation logits",
        "optimizer": f"AdamW (lr {options.lr}, weight decay {options.weight_decay})",
        "scheduler": options.scheduler,
        "warmup_ratio": options.warmup_ratio,
        "max_grad_norm": options.max_grad_norm,
        "batch_size": options.batch_size,
        "world_size": trainer.args.world_size,
        "mixed_precision": "bf16" if use_bf16 else "no",
        "balanced_sampling": "minority oversampling (training set only)" if options.balanced else "none",
        "augmentation": repr(augment) if augment is not None else "none",
        "epochs_trained": round(float(state.epoch or 0.0), 3),
        "global_step": int(state.global_step),
        "pretrained_backbone": options.pretrained,
        "backbone_lr_scale": options.backbone_lr_scale,
        "data": "synthetic (leuk synth)" if split_info["synthetic"] else "real",
    }


@dataclass
class FitResult:
    """A trained, calibrated model (in memory) and what its training saw on validation."""

    model: Any
    processor: Any
    trainer: Any
    temperature: float
    validation_metrics: dict[str, Any]
    use_bf16: bool
    augment: Any
    train_loss: float


def latest_complete_checkpoint(checkpoints_dir: Path) -> str | None:
    """The newest checkpoint folder whose save finished (a run killed mid-save leaves a partial folder)."""
    complete = [path for path in checkpoints_dir.glob("checkpoint-*")
                if (path / "trainer_state.json").is_file() and path.name.split("-")[-1].isdigit()]
    if not complete:
        return None
    return str(max(complete, key=lambda path: int(path.name.split("-")[-1])))


def fit_classifier(
    model,
    processor,
    *,
    train_paths: list[str],
    train_labels: np.ndarray,
    val_paths: list[str],
    val_labels: np.ndarray,
    label_names: list[str],
    options: TrainOptions,
    output_dir: Path,
    callbacks: Sequence[Any] = (),
) -> FitResult:
    """Train ``model`` with the ``Trainer`` (checkpoints in ``output_dir/checkpoints``), keep the best
    checkpoint by validation weighted F1, then fit and set the temperature on validation logits.
    ``callbacks``: extra ``transformers.TrainerCallback`` objects (progress reporting, step timing)."""
    import torch
    import transformers
    from transformers import EarlyStoppingCallback

    from leuk.metrics import classification_metrics, fit_temperature, softmax
    from leuk.training.data import ImageTensorDataset, collate_image_batch
    from leuk.training.trainer import ImageClassificationTrainer, metrics_for_trainer, prediction_logits

    transformers.logging.set_verbosity_warning()
    if not options.progress:
        transformers.utils.logging.disable_progress_bar()
    # channels-last before any DDP wrapping, so gradient buckets match the gradients' layout
    model = model.to(memory_format=torch.channels_last)
    image_size = int(model.config.image_size)
    use_cache = _use_cache(options, len(train_paths) + len(val_paths), image_size)

    def image_set(paths: list[str], labels: np.ndarray, description: str) -> ImageTensorDataset:
        return ImageTensorDataset(paths, labels, processor, cache=use_cache, progress=options.progress,
                                  description=description)

    train_set = image_set(train_paths, train_labels, "decode train")
    val_set = image_set(val_paths, val_labels, "decode val")
    on_cuda = torch.cuda.is_available() and not options.use_cpu
    use_bf16 = options.mixed_precision != "no" and on_cuda and torch.cuda.is_bf16_supported()
    if options.mixed_precision == "bf16" and not use_bf16:
        logger.warning("bf16 mixed precision needs a CUDA GPU with bf16 support; training in float32")
    augment = None
    if options.augment:
        from leuk.data.augment import TrainAugment

        # one augmentation stream per process of a distributed run
        preset = TrainAugment.strong if options.augment_preset == "strong" else TrainAugment.paper
        augment = preset(seed=options.seed + int(os.environ.get("RANK", "0")))
    trainer = ImageClassificationTrainer(
        model=model,
        args=_training_arguments(options, output_dir, use_bf16),
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=collate_image_batch,
        processing_class=processor,
        compute_metrics=metrics_for_trainer(label_names),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=options.patience), *callbacks],
        image_mean=processor.image_mean,
        image_std=processor.image_std,
        augment=augment,
        balanced_labels=np.asarray(train_labels).tolist() if options.balanced else None,
        backbone_lr_scale=options.backbone_lr_scale,
    )
    if options.quiet:
        from transformers import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    resume = (latest_complete_checkpoint(output_dir / CHECKPOINTS_DIR) if options.resume == "latest"
              else options.resume)
    train_output = trainer.train(resume_from_checkpoint=resume)

    # Calibration on validation only: logits with temperature 1 from the selected (best) model.
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.config.temperature = 1.0
    val_prediction = trainer.predict(val_set, metric_key_prefix="val")
    val_logits = prediction_logits(val_prediction.predictions)
    val_targets = np.asarray(val_prediction.label_ids).reshape(-1)
    temperature = fit_temperature(val_logits, val_targets)
    model.config.temperature = temperature
    validation_metrics = classification_metrics(val_targets, softmax(val_logits / temperature), label_names)
    return FitResult(model, processor, trainer, temperature, validation_metrics, use_bf16, augment,
                     float(train_output.training_loss))


def fit_split(options: TrainOptions, split: Any, paths: Sequence[str], labels: np.ndarray, label_names: list[str],
              output_dir: Path) -> FitResult:
    """Build the preset ``options.model`` and :func:`fit_classifier` it on the train/val rows of ``split``
    (a :class:`leuk.data.splits.Split` over ``paths``/``labels``)."""
    model, processor = _build_model(options, label_names)
    return fit_classifier(
        model, processor,
        train_paths=[paths[i] for i in split.train], train_labels=labels[split.train],
        val_paths=[paths[i] for i in split.val], val_labels=labels[split.val],
        label_names=label_names, options=options, output_dir=output_dir,
    )


@dataclass
class SavedRun:
    """A trained model saved to ``output_dir`` with its ``training_split.json``, before the finishing step
    (the out-of-distribution detector, the one test evaluation and ``eval_results.json``), which the services
    floor runs: :func:`leuk.experiments.runs.train_efficientnet_se`."""

    options: TrainOptions
    output_dir: Path
    data_root: Path
    paths: list[str]
    labels: np.ndarray
    label_names: list[str]
    split: Any
    split_info: dict[str, Any]
    fit: FitResult
    started: float

    @property
    def is_main_process(self) -> bool:
        """Only the main process of a distributed run writes files and runs the finishing step."""
        return bool(self.fit.trainer.is_world_process_zero())

    @property
    def test_paths(self) -> list[str]:
        return [self.paths[i] for i in self.split.test]

    @property
    def test_labels(self) -> np.ndarray:
        return self.labels[self.split.test]

    def record(self, test_metrics: dict[str, Any]) -> dict[str, Any]:
        """The run's ``eval_results.json`` with the test figures of the saved model."""
        options, split_info, fit = self.options, self.split_info, self.fit
        state = fit.trainer.state
        return {
            "model": options.model,
            "protocol": options.protocol,
            "split": "test",
            "synthetic": split_info["synthetic"],
            "dataset": f"{'synthetic ' if split_info['synthetic'] else ''}{options.dataset} ({self.data_root.name})",
            "seed": options.seed,
            "temperature": fit.temperature,
            "test_patients_hash": split_info["test_patients_hash"],
            "split_sizes": {name: {k: split_info[name][k] for k in ("n_patients", "n_images", "per_class")}
                            for name in ("train", "val", "test")},
            "best_checkpoint": {
                "path": relative_path(state.best_model_checkpoint, self.output_dir) if state.best_model_checkpoint
                else None,
                "validation_f1_weighted": state.best_metric,
                "global_step": state.best_global_step,
            },
            "training": {
                "global_step": int(state.global_step),
                "epochs": round(float(state.epoch or 0.0), 3),
                "train_loss": fit.train_loss,
                "runtime_s": round(time.perf_counter() - self.started, 1),
                "world_size": fit.trainer.args.world_size,
            },
            "validation": fit.validation_metrics,
            "test": test_metrics,
        }

    def close(self, test_metrics: dict[str, Any]) -> TrainResult:
        """Write ``eval_results.json`` (main process), the trainer state, wait for every process; the result."""
        trainer = self.fit.trainer
        if self.is_main_process:
            write_eval_results(self.output_dir, self.record(test_metrics))
            trainer.save_state()
        trainer.accelerator.wait_for_everyone()
        return TrainResult(
            output_dir=self.output_dir,
            test_metrics=test_metrics,
            validation_metrics=self.fit.validation_metrics,
            temperature=self.fit.temperature,
            best_checkpoint=trainer.state.best_model_checkpoint,
            best_validation_f1=trainer.state.best_metric,
            split=self.split_info,
        )


def train_and_save(options: TrainOptions | None = None, /, **fields: Any) -> SavedRun:
    """Split, train, calibrate and save a model of the EfficientNet-SE family (steps 1-5 of the module
    docstring, without the test evaluation); see :class:`SavedRun` for what comes after.

    Pass a :class:`TrainOptions` or its fields as keywords (``data`` and ``out`` are required). Every process
    of a distributed run calls this; only the main process writes files.
    """
    from leuk.data.splits import train_val_test_split

    options = dataclasses.replace(options, **fields) if options is not None else TrainOptions(**fields)
    options.validate()
    started = time.perf_counter()
    data_root = Path(options.data).resolve()
    output_dir = Path(options.out)
    if not data_root.is_dir():
        raise LeukError(f"data folder {options.data} does not exist")

    paths, labels, groups, label_names = load_table(options)
    try:
        split = train_val_test_split(labels, groups, test_size=options.test_size, val_size=options.val_size,
                                     seed=options.seed, protocol=options.protocol)
    except ValueError as err:
        raise LeukError(f"cannot split {data_root}: {err}") from err
    split_info = training_split_record(
        split, paths, labels, groups, label_names, data_root, loader=options.dataset,
        synthetic=looks_synthetic(data_root) if options.synthetic is None else options.synthetic,
        protocol=options.protocol, seed=options.seed, test_size=options.test_size, val_size=options.val_size)
    for name in ("train", "val", "test"):
        if split_info[name]["n_images"] == 0:
            raise LeukError(f"the {name} split of {data_root} is empty: the dataset has too few patients")

    fit = fit_split(options, split, paths, labels, label_names, output_dir)
    model = fit.model
    model.config.training_protocol = _protocol(options, split_info, fit.trainer, fit.use_bf16, fit.augment)
    if split_info["synthetic"]:
        model.config.training_data = "synthetic C-NMC/Aria look-alike rendered by leuk synth (not patient data)"
    saved = SavedRun(options, output_dir, data_root, paths, labels, label_names, split, split_info, fit, started)
    if saved.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_model(model, fit.processor, output_dir, options.dtype)
        write_training_split(output_dir, split_info)
    return saved


def fit_for_monte_carlo(
    model: str,
    dataset: Any,
    *,
    train: np.ndarray,
    val: np.ndarray,
    seed: int,
    output_dir: str | Path,
    image_size: int | None = None,
    batch_size: int = 32,
    pretrained: bool = False,
    device: str | None = None,
    **options: Any,
) -> FitResult:
    """Train preset ``model`` on rows ``train`` (selection and calibration on ``val``) of a
    :func:`leuk.data.load_cnmc`/``load_aria`` dataset and return the calibrated model in memory (the Monte
    Carlo runner scores the test rows with :class:`leuk.inference.Predictor`). ``options`` are
    :class:`TrainOptions` fields. Checkpoints go to ``output_dir`` and are removed afterwards.
    """
    import shutil

    label_names = list(dataset.features["label"].names)
    table = dataset.select_columns(["path", "label"])
    paths = [str(p) for p in table["path"]]
    labels = np.asarray(table["label"], dtype=np.int64)
    train, val = (np.asarray(part, dtype=np.int64) for part in (train, val))
    run_options = TrainOptions(data="", out=str(output_dir), model=model, seed=seed, image_size=image_size,
                               batch_size=batch_size, pretrained=pretrained, progress=False, quiet=True,
                               save_total_limit=1, use_cpu=device == "cpu", **options)
    run_options.validate()
    network, processor = _build_model(run_options, label_names)
    fit = fit_classifier(
        network, processor,
        train_paths=[paths[i] for i in train], train_labels=labels[train],
        val_paths=[paths[i] for i in val], val_labels=labels[val],
        label_names=label_names, options=run_options, output_dir=Path(output_dir),
    )
    shutil.rmtree(Path(output_dir) / CHECKPOINTS_DIR, ignore_errors=True)
    return fit


def save_model(model: Any, processor: Any, output_dir: Path, dtype: str) -> None:
    """Save model and processor as a model folder in ``dtype`` with :func:`leuk.models.save.save_model_folder`."""
    from leuk.models.save import save_model_folder

    save_model_folder(model, processor, output_dir, dtype=dtype)
