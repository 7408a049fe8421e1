"""``leuk ablate --run RUN [--out DIR]``: HybridCN-NAS ablation study on a finished training run.

Studies (``--studies``, comma-separated):

- ``architecture``: full / no attention / no feed-forward / no dropout / hidden width halved (256 in the paper);
- ``features``: mRMR feature counts at 100..60 % of the run's (2000..1200 in the paper);
- ``optimizer``: Adam, AdamW, SGD (10x learning rate, Nesterov momentum), RMSprop, Adamax;
- ``preprocessing``: every phase-1 step switched off in turn, and all off (retrains the segmenter and the
  extractor once per variant: slow).

Each variant is scored on the same patient-wise Monte Carlo draws over the run's held-out patients, reusing
the run's cached features; results go to ``ablation.csv`` (means, percentile intervals, paired tests against
the first variant of each study), ``ablation_iterations.csv`` and ``ablation.md``. Rerunning resumes.
"""

from __future__ import annotations

import argparse


def _studies(text: str) -> tuple[str, ...]:
    studies = tuple(part.strip() for part in text.split(",") if part.strip())
    known = ("architecture", "features", "optimizer", "preprocessing")
    unknown = sorted(set(studies) - set(known))
    if unknown or not studies:
        raise argparse.ArgumentTypeError(f"choose studies from {', '.join(known)}")
    return studies


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from leuk.defaults import SEED

    parser.add_argument("--run", required=True, metavar="DIR",
                        help="output folder of `leuk train hybridcn-nas` (with its stages/)")
    parser.add_argument("--out", metavar="DIR", help="results folder (default: RUN/ablation)")
    parser.add_argument("--data", metavar="DIR", help="dataset folder (default: the one the run recorded)")
    parser.add_argument("--studies", type=_studies, default=("architecture", "features", "optimizer"),
                        metavar="A,B", help="architecture, features, optimizer, preprocessing "
                                            "(default: the first three; preprocessing retrains per variant)")
    parser.add_argument("--iterations", type=int, default=10, metavar="N",
                        help="Monte Carlo iterations per variant (default: 10; use fewer for the lite preset)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the Monte Carlo draws (default: {SEED})")
    parser.add_argument("--classifier-epochs", type=int, metavar="N", help="override the run's classifier epochs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from leuk.errors import LeukError
    from leuk.experiments.ablation import run_ablation

    if args.iterations < 2:
        raise LeukError("--iterations must be at least 2 (intervals and paired tests need repeats)")
    out = Path(args.out) if args.out else Path(args.run) / "ablation"
    overrides = {"classifier_epochs": args.classifier_epochs} if args.classifier_epochs else {}
    _, summary = run_ablation(args.run, out, data_dir=args.data, studies=args.studies, n_iter=args.iterations,
                              seed=args.seed, option_overrides=overrides, progress=not args.quiet)
    print((out / "ablation.md").read_text(encoding="utf-8"))
    print(f"written: {out / 'ablation.csv'}, {out / 'ablation_iterations.csv'}, {out / 'ablation.md'}")
    return 0
