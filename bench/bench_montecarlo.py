"""Benchmark: the Monte Carlo runner in ``features`` mode on synthetic C-NMC data.

Full size: 100 iterations, 2 models (``efficientnet-se`` and ``resnet50``, random-init backbones at a small
image size: features mode measures the runner, not the backbones), 60 synthetic patients. Prints the wall
time split into data rendering, feature extraction (once per model), the iterations (one head fit and one
evaluation per iteration, protocol and model) and merging (statistics, tables, plots).

    OMP_NUM_THREADS=2 python bench/bench_montecarlo.py           # full size (a few minutes on 2 CPU cores)
    python bench/bench_montecarlo.py --tiny                      # 3 iterations, tiny model (seconds)
    python bench/bench_montecarlo.py --json bench.json           # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few iterations on a tiny model (seconds)")
    parser.add_argument("--iterations", type=int, help="Monte Carlo iterations (default: 100; tiny: 3)")
    parser.add_argument("--patients", type=int, help="synthetic patients (default: 60; tiny: 12)")
    parser.add_argument("--images-per-patient", type=int, help="images per patient (default: 10; tiny: 6)")
    parser.add_argument("--image-size", type=int, help="model input size (default: 64; tiny: the preset's 64)")
    parser.add_argument("--models", help="comma-separated presets (default: efficientnet-se,resnet50)")
    parser.add_argument("--protocol", choices=("patient", "image", "both"), default="patient")
    parser.add_argument("--head", choices=("logistic", "mlp"), default="logistic")
    parser.add_argument("--work", metavar="DIR", help="keep data and results here (default: a temporary folder)")
    parser.add_argument("--json", metavar="FILE", help="write the timings as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    tiny = args.tiny
    iterations = args.iterations or (3 if tiny else 100)
    patients = args.patients or (12 if tiny else 60)
    per_patient = args.images_per_patient or (6 if tiny else 10)
    models = (args.models or ("efficientnet-se-test" if tiny else "efficientnet-se,resnet50")).split(",")
    image_size = args.image_size or (None if tiny else 64)

    started = time.perf_counter()
    import torch

    from leuk.data.synthetic import write_cnmc
    from leuk.experiments.montecarlo import HeadConfig, run_monte_carlo

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    import_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="leuk-bench-mc-") as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        data, out = work / "data", work / "mc"
        start = time.perf_counter()
        if not (data / "C-NMC_Leukemia").is_dir():
            write_cnmc(data, patients=patients, images_per_patient=per_patient, size=96, seed=0, confounding=1.0)
        render_s = time.perf_counter() - start
        shutil.rmtree(out, ignore_errors=True)  # a fresh run: no cached features, no finished parts
        start, cpu_start = time.perf_counter(), time.process_time()
        run = run_monte_carlo(data, models, out, n_iter=iterations, protocol=args.protocol, seed=0,
                              image_size=image_size, batch_size=32, head=HeadConfig(kind=args.head),
                              progress=sys.stderr.isatty())
        total_s = time.perf_counter() - start
        cpu_s = time.process_time() - cpu_start
        fits = run.parts_written
        figures = {
            "iterations": iterations, "models": models, "protocol": args.protocol, "patients": patients,
            "images": patients * per_patient, "image_size": image_size, "threads": torch.get_num_threads(),
            "import_s": round(import_s, 2), "render_data_s": round(render_s, 2),
            "extraction_s": round(run.extraction_s, 2), "iterations_s": round(run.iterations_s, 2),
            "fits": fits, "ms_per_fit": round(1000 * run.iterations_s / max(fits, 1), 1),
            "merge_and_plots_s": round(total_s - run.extraction_s - run.iterations_s, 2),
            "run_monte_carlo_s": round(total_s, 2), "run_monte_carlo_cpu_s": round(cpu_s, 2),
            "wall_s": round(time.perf_counter() - started, 2), "load_average_1min": round(os.getloadavg()[0], 2),
        }
        summary = run.summary or {}
        for protocol, block in summary.get("protocols", {}).items():
            for model, metrics in block["models"].items():
                figures[f"f1_weighted {protocol} {model}"] = round(metrics["f1_weighted"]["mean"], 4)
    print(f"Monte Carlo bench ({'tiny' if tiny else 'full'}): {iterations} iterations x {len(models)} models "
          f"({args.protocol}), {figures['images']} images of {patients} patients, {figures['threads']} threads")
    print(f"  extraction  {figures['extraction_s']:8.1f} s  (once per model)")
    print(f"  iterations  {figures['iterations_s']:8.1f} s  ({fits} head fits, {figures['ms_per_fit']} ms each)")
    print(f"  merge+plots {figures['merge_and_plots_s']:8.1f} s")
    print(f"  total       {figures['wall_s']:8.1f} s  (imports {import_s:.1f} s, data {render_s:.1f} s; "
          f"run_monte_carlo {total_s:.1f} s wall, {cpu_s:.1f} s CPU; load average {figures['load_average_1min']})")
    for key, value in figures.items():
        if key.startswith("f1_weighted"):
            print(f"  {key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
