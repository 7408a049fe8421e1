"""Regenerate the bundled Monte Carlo results in ``assets/results/`` (seeded; one command).

    python train/make_mc_results.py                  # about 2 minutes of CPU time
    python train/make_mc_results.py --iterations 20 --out /tmp/mc-results

A SMALL, honest showcase of ``leuk montecarlo``: synthetic C-NMC look-alike data (60 patients, per-patient
stain confounding), two randomly initialised backbones (``efficientnet-se`` and ``resnet50`` at 64 px) in
features mode, 100 iterations, both split protocols. It shows what the runner reports (distributions, paired
tests against the reference, the leakage gap of image-level splits), not how good either model is.
Writes ``results.parquet``, ``summary.json``, ``summary.md``, ``run.json``, ``plot_data.json`` and the PNGs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = dict(patients=60, images_per_patient=10, size=96, seed=0, confounding=1.0)
MODELS = ["efficientnet-se", "resnet50"]
BUNDLED = ("results.parquet", "summary.json", "summary.md", "run.json", "plot_data.json",
           "distributions.png", "differences.png", "pvalues.png")
SIZE_LIMIT = 2 * 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "results", help="default: assets/results")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--work", type=Path, help="keep the data, parts and feature cache here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    from leuk.data.synthetic import write_cnmc
    from leuk.experiments.montecarlo import run_monte_carlo

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="leuk-mc-results-") as scratch:
        work = args.work or Path(scratch)
        data = work / "data"
        if not (data / "C-NMC_Leukemia").is_dir():
            write_cnmc(data, **DATA)
        run = run_monte_carlo(data, MODELS, work / "run", reference=MODELS[0], n_iter=args.iterations,
                              protocol="both", seed=0, image_size=args.image_size, progress=sys.stderr.isatty())
        args.out.mkdir(parents=True, exist_ok=True)
        for name in BUNDLED:
            if (work / "run" / name).is_file():
                shutil.copyfile(work / "run" / name, args.out / name)
    total = sum((args.out / name).stat().st_size for name in BUNDLED if (args.out / name).is_file())
    print(f"wrote {args.out} ({total / 2**20:.2f} MiB) in {time.perf_counter() - started:.0f} s "
          f"(extraction {run.extraction_s:.0f} s, iterations {run.iterations_s:.0f} s)")
    if total > SIZE_LIMIT:
        print(f"error: bundled results exceed {SIZE_LIMIT // 2**20} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
