"""``leuk montecarlo``: Monte Carlo validation with paired significance tests (resumable, torchrun-aware)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from leuk.defaults import SEED, TEST_SIZE, VAL_SIZE

    parser.add_argument("--data", metavar="DIR", help="dataset folder (C-NMC or Aria layout)")
    parser.add_argument("--dataset", choices=("cnmc", "aria"), default="cnmc", help="dataset layout (default: cnmc)")
    parser.add_argument("--patients-csv", metavar="CSV", help="Aria only: image -> patient_id map")
    parser.add_argument("--models", metavar="A,B",
                        help="comma-separated presets (`leuk info` lists them) or model specs")
    parser.add_argument("--reference", metavar="NAME", help="model the others are tested against (default: the first)")
    parser.add_argument("--mode", choices=("features", "finetune"), default="features",
                        help="features: cached backbone features + a light head per iteration (fast); "
                             "finetune: train the whole model per iteration (slow)")
    parser.add_argument("--iterations", type=int, default=100, metavar="N",
                        help="Monte Carlo iterations (default: 100)")
    parser.add_argument("--protocol", choices=("patient", "image", "both"), default="patient",
                        help="split by patient (honest), by image (leaky) or both, reporting the leakage gap")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the whole run (default: {SEED})")
    parser.add_argument("--test-size", type=float, default=TEST_SIZE, metavar="F",
                        help=f"test fraction of each class's subjects (default: {TEST_SIZE:g})")
    parser.add_argument("--val-size", type=float, default=VAL_SIZE, metavar="F",
                        help=f"validation fraction of each class's subjects (default: {VAL_SIZE:g}); "
                             "raise it until validation holds a subject of the rarest class (real C-NMC pool, "
                             "3 HEM subjects: 0.2)")
    parser.add_argument("--out", metavar="DIR", help="output folder (rerun the same command to resume)")
    parser.add_argument("--image-size", type=int, metavar="PX", help="input size of presets (default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="batch size (default: 32)")
    parser.add_argument("--pretrained", action="store_true", help="presets start from ImageNet weights (downloads)")
    parser.add_argument("--head", choices=("logistic", "mlp"), default="logistic", help="features-mode head")
    parser.add_argument("--epochs", type=int, metavar="N", help="finetune mode: training epochs per iteration")
    parser.add_argument("--feature-cache", metavar="DIR", help="feature cache folder (default: <out>/feature_cache)")
    parser.add_argument("--device", metavar="DEV", help="torch device (default: cuda if available)")
    parser.add_argument("--merge", action="store_true",
                        help="only merge the finished parts of --out (after a distributed run)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _print_headline(summary: dict) -> None:
    metric = "f1_weighted" if "f1_weighted" in summary["metrics"] else summary["metrics"][0]
    for protocol, block in summary["protocols"].items():
        for model, per_metric in block["models"].items():
            d = per_metric[metric]
            print(f"{protocol:>7}  {model:<24} {metric} {d['mean']:.4f} ± {d['sd'] or 0:.4f} "
                  f"[{d['p2_5']:.4f}, {d['p97_5']:.4f}]")
        for model, t in block["comparisons"].get(metric, {}).items():
            p = t.get("t_pvalue_holm")
            print(f"{protocol:>7}  {model} − {summary['reference']}: {t['mean_difference']:+.4f}, "
                  f"paired t p (Holm) {'n/a' if p is None else f'{p:.2g}'}")
    for model, t in (summary.get("leakage_gap") or {}).get("metrics", {}).get(metric, {}).items():
        print(f"leakage  {model:<24} image − patient {metric} {t['mean_difference']:+.4f} "
              f"[{t['difference_p2_5']:+.4f}, {t['difference_p97_5']:+.4f}]")


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from leuk.errors import LeukError

    if not args.out:
        raise LeukError("give --out DIR (the run folder; rerunning the same command resumes it)")
    from leuk.experiments.montecarlo import HeadConfig, merge_results, run_monte_carlo

    if args.merge:
        _, summary = merge_results(args.out, plots=not args.no_plots)
        print(f"merged into {Path(args.out) / 'results.parquet'}")
        _print_headline(summary)
        return 0
    if not args.data or not args.models:
        raise LeukError("give --data DIR and --models A,B (or --merge --out DIR)")
    if args.iterations < 1:
        raise LeukError("--iterations must be at least 1")
    from leuk.data import load_aria, load_cnmc

    dataset = load_cnmc(args.data) if args.dataset == "cnmc" else load_aria(args.data, args.patients_csv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    result = run_monte_carlo(
        dataset, models, args.out, reference=args.reference, mode=args.mode, n_iter=args.iterations,
        protocol=args.protocol, seed=args.seed, test_size=args.test_size, val_size=args.val_size,
        image_size=args.image_size, batch_size=args.batch_size,
        pretrained=args.pretrained, head=HeadConfig(kind=args.head),
        finetune_options={"epochs": args.epochs} if args.epochs else None,
        feature_cache=args.feature_cache, device=args.device, progress=not args.quiet, plots=not args.no_plots,
        wait_for_ranks=24 * 3600.0 if world_size > 1 else None,
    )
    timing = result.timings
    print(f"rank {int(os.environ.get('RANK', 0))}: {result.parts_written} fits run, {result.parts_skipped} resumed; "
          f"extraction {timing['extraction_s']:.1f} s, iterations {timing['iterations_s']:.1f} s")
    if result.complete and result.summary:
        print(f"results: {Path(args.out) / 'results.parquet'}, summary: {Path(args.out) / 'summary.md'}")
        _print_headline(result.summary)
    elif int(os.environ.get("RANK", 0)) == 0:
        print(f"not all ranks have finished: run `leuk montecarlo --merge --out {args.out}` when they have")
    return 0
