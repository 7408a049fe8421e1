"""The ``leuk`` command line.

Each subcommand lives in its own module of this package and exposes ``add_arguments(parser)``
and ``run(args) -> int``; its one-line help sits in :data:`COMMANDS`. Modules are imported only when their command runs,
so ``leuk --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# command name -> module (relative to leuk.cli) and one-line help
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "Write synthetic data in the C-NMC or Aria on-disk layout."),
    "info": ("info", "Show a model's configuration and parameter count."),
    "train": ("train", "Train EfficientNet-SE, a baseline or HybridCN-NAS."),
    "evaluate": ("evaluate", "Evaluate a model on a dataset folder (JSON + plots)."),
    "predict": ("predict", "Classify image files and print a table (or write JSON/CSV)."),
    "explain": ("explain", "Write attribution maps (Captum) for an image."),
    "ood": ("ood", "Fit (on training images only) or show a model's out-of-distribution detector."),
    "montecarlo": ("montecarlo", "Monte Carlo validation with paired significance tests."),
    "ablate": ("ablate", "HybridCN-NAS ablation study (patient-wise Monte Carlo means)."),
    "push": ("push", "Publish a model folder (weights, card, remote code) to the Hugging Face Hub."),
    "export": ("export", "Write a model as an ONNX file, checked against PyTorch with onnxruntime."),
}


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(f"leuk.cli.{module_name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leuk",
        description="Leukemic-cell classification: data, training, evaluation, explanations, Hub.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--verbose", action="store_true", help="show library progress bars (model loading)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
        sub_parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                                help="show library progress bars (model loading)")
        if name == command:
            _load(name).add_arguments(sub_parser)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``leuk`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from leuk.errors import LeukError

    if args.verbose:
        import leuk.hub.loader

        leuk.hub.loader.show_loading_progress = True
    try:
        return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (LeukError, FileNotFoundError, ValueError, RuntimeError, OSError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
