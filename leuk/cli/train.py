"""``leuk train TARGET --data DIR --out DIR [options]``: train a model and save it with its test results.

Targets of the EfficientNet-SE engine (:mod:`leuk.training.efficientnet_se`) are its family's presets in
the registry of :mod:`leuk.models` (:func:`engine_targets`).
Other engines plug in through :data:`EXTERNAL_TARGETS`: a target name mapped to a module that defines
``add_target_arguments(parser)`` and ``run_target(args) -> int`` (imported only when ``leuk train`` runs).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

def engine_targets() -> dict[str, str]:
    """Preset name -> one-line description of every preset the EfficientNet-SE engine trains, from the
    registry of :mod:`leuk.models` (the one definition of preset names)."""
    from leuk.models import EFFICIENTNET_SE, get_preset

    return {name: get_preset(name).description for name in EFFICIENTNET_SE.presets()}


def __getattr__(name: str) -> Any:
    if name == "ENGINE_TARGETS":  # kept for scripts that import it
        return engine_targets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Hook for other training engines: target name -> module with add_target_arguments(parser), run_target(args)
# and an optional one-line HELP.
EXTERNAL_TARGETS: dict[str, str] = {
    "hybridcn-nas": "leuk.cli.train_hybrid",
}


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the EfficientNet-SE engine (shared with ``train/train_efficientnet_se.py``)."""
    from leuk.training.options import add_train_options

    add_train_options(parser)


def _unavailable(name: str, module_name: str):
    def run_target(args: argparse.Namespace) -> int:
        print(f"error: training target {name!r} is not available (module {module_name} is not installed)",
              file=sys.stderr)
        return 1

    return run_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-command per training target."""
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    # --debug after the target too (SUPPRESS keeps a --debug given before the target)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
    for name, description in engine_targets().items():
        target = targets.add_parser(name, help=description, description=description, parents=[debug])
        add_engine_arguments(target)
        target.set_defaults(run_target=run_engine_target, preset=name)
    for name, module_name in EXTERNAL_TARGETS.items():
        try:
            module: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            target = targets.add_parser(name, help=f"(not available: {module_name} is missing)")
            target.set_defaults(run_target=_unavailable(name, module_name))
            continue
        description = getattr(module, "HELP", f"Train {name}.")
        target = targets.add_parser(name, help=description, description=description, parents=[debug])
        module.add_target_arguments(target)
        target.set_defaults(run_target=module.run_target)


def is_main_process() -> bool:
    """True in a single-process run and in rank 0 of ``torchrun``/``accelerate launch``."""
    return int(os.environ.get("RANK", "0")) == 0


def run_engine_target(args: argparse.Namespace) -> int:
    """Train the preset ``args.preset`` with the EfficientNet-SE engine and print the test figures."""
    from leuk.metrics import format_metrics
    from leuk.training.efficientnet_se import EVAL_RESULTS_FILE, train_efficientnet_se
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


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen target."""
    return int(args.run_target(args) or 0)
