"""``leuk train <preset> --data DIR --out DIR [options]``: the EfficientNet-SE engine
(:mod:`leuk.training.efficientnet_se`), one target per preset of its family (``EfficientNetSEFamily.train_targets``).

Exposes the ``add_target_arguments(parser)``/``run_target(args)`` names that ``leuk train`` looks up in a family's
``train_command`` module; ``train/train_efficientnet_se.py`` (distributed launches) uses the same functions.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["add_engine_arguments", "add_target_arguments", "engine_targets", "is_main_process",
           "run_engine_target", "run_target"]


def engine_targets() -> dict[str, str]:
    """Preset name -> one-line description of every preset the EfficientNet-SE engine trains, from the
    registry of :mod:`leuk.models` (the one definition of preset names)."""
    from leuk.models import EFFICIENTNET_SE

    return {name: description or "" for name, description in EFFICIENTNET_SE.train_targets().items()}


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the EfficientNet-SE engine (shared with ``train/train_efficientnet_se.py``)."""
    from leuk.training.options import add_train_options

    add_train_options(parser)


def is_main_process() -> bool:
    """True in a single-process run and in rank 0 of ``torchrun``/``accelerate launch``."""
    return int(os.environ.get("RANK", "0")) == 0


def run_engine_target(args: argparse.Namespace) -> int:
    """Train the preset ``args.preset`` with the EfficientNet-SE engine and print the test figures."""
    from leuk.metrics import format_metrics
    from leuk.experiments.runs import train_efficientnet_se
    from leuk.records import EVAL_RESULTS_FILE
    from leuk.training.options import options_from_args

    result = train_efficientnet_se(options_from_args(args, model=args.preset))
    if is_main_process():
        best = "n/a" if result.best_validation_f1 is None else f"{result.best_validation_f1:.4f}"
        print(f"model saved to {result.output_dir} (temperature {result.temperature:.3f}, "
              f"best validation F1 {best})")
        print(f"test split ({result.split['test']['n_patients']} patients, "
              f"{result.split['test']['n_images']} images), written to {result.output_dir / EVAL_RESULTS_FILE}:")
        print(format_metrics(result.test_metrics))
    return 0


# the names ``leuk train`` looks up in a family's train_command module
add_target_arguments = add_engine_arguments
run_target = run_engine_target
