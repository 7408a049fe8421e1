"""``leuk train TARGET --data DIR --out DIR [options]``: train a model and save it with its test results.

The targets are the model families' (:meth:`leuk.models.family.ModelFamily.train_targets`): each family names
the module behind its targets (``ModelFamily.train_command``), which defines ``add_target_arguments(parser)``,
``run_target(args) -> int`` and an optional one-line ``HELP`` (imported only when ``leuk train`` runs). The
EfficientNet-SE family has one target per preset (:mod:`leuk.cli.train_efficientnet_se`), HybridCN-NAS one
(:mod:`leuk.cli.train_hybrid`). A new family brings its targets with it; nothing here names one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

# the EfficientNet-SE engine's command, kept importable from here (train/train_efficientnet_se.py uses it)
from leuk.cli.train_efficientnet_se import (  # noqa: F401
    add_engine_arguments,
    engine_targets,
    is_main_process,
    run_engine_target,
)


def __getattr__(name: str) -> Any:
    if name == "ENGINE_TARGETS":  # kept for scripts that import it
        return engine_targets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train_targets() -> dict[str, str]:
    """Every ``leuk train`` target -> the module that trains it, in the order ``leuk train --help`` lists them
    (families by ``model_type``)."""
    from leuk.models import list_families

    return {name: family.train_command for family in list_families() if family.train_command
            for name in family.train_targets()}


def _unavailable(name: str, module_name: str):
    def run_target(args: argparse.Namespace) -> int:
        print(f"error: training target {name!r} is not available (module {module_name} is not installed)",
              file=sys.stderr)
        return 1

    return run_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-command per training target of every registered family."""
    from leuk.models import list_families

    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    # --debug after the target too (SUPPRESS keeps a --debug given before the target)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
    for family in list_families():
        module_name = family.train_command
        if not module_name:
            continue
        try:
            module: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            for name in family.train_targets():
                target = targets.add_parser(name, help=f"(not available: {module_name} is missing)")
                target.set_defaults(run_target=_unavailable(name, module_name))
            continue
        for name, description in family.train_targets().items():
            description = description or getattr(module, "HELP", f"Train {name}.")
            target = targets.add_parser(name, help=description, description=description, parents=[debug])
            module.add_target_arguments(target)
            target.set_defaults(run_target=module.run_target, **family.train_target_defaults(name))


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen target."""
    return int(args.run_target(args) or 0)
