"""Regenerate the bundled Monte Carlo results in ``assets/results/`` (seeded; one command per result set).

    python train/make_mc_results.py                  # synthetic set -> assets/results/synthetic/ (about 2 CPU minutes)
    python train/make_mc_results.py --data ../shared/datasets/cnmc-real/C-NMC_Leukemia \\
        --work runs/mc-real                          # real set -> assets/results/real-cnmc/ (about 25 CPU minutes)
    python train/make_mc_results.py --iterations 20 --out /tmp/mc-results

Both are SMALL, honest showcases of ``leuk montecarlo`` in features mode with both split protocols (the
leakage gap of image-level splits), 100 iterations, seed 0. No ImageNet weights: every backbone is a seeded
random initialisation whose frozen features feed a light head trained per iteration, so the figures measure
the protocol, not the paper's model.

- without ``--data``: synthetic C-NMC look-alikes (60 patients, per-patient stain confounding), ``efficientnet-se``
  against ``resnet50`` at 64 px;
- with ``--data`` (a real C-NMC folder, e.g. the 2,161-cell, 17-subject pool: 14 ALL, 3 HEM): ``efficientnet-se``
  against ``efficientnetv2-b3`` (the same backbone without the SE block), ``resnet50`` and ``vgg16`` (the paper's
  baselines) at 128 px (feature extraction of the pool at 128 px takes 0.5-5 minutes per model on one CPU
  thread; 224 px would take 3x longer), splits with ``val_size=0.2``: 0.12 (the synthetic set's) leaves the validation
  part without a HEM subject, 0.2 gives train, validation and test exactly one of the three HEM subjects each.

Writes ``results.parquet``, ``summary.json``, ``summary.md``, ``run.json``, ``plot_data.json`` and the PNGs (no
feature cache, no parts). ``--work DIR`` keeps the parts and the feature cache there, so a stopped run resumes.
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
RESULTS = REPO / "assets" / "results"
DATA = dict(patients=60, images_per_patient=10, size=96, seed=0, confounding=1.0)
#: (models, image size, val_size) of each result set.
SYNTHETIC = (["efficientnet-se", "resnet50"], 64, 0.12)
REAL = (["efficientnet-se", "efficientnetv2-b3", "resnet50", "vgg16"], 128, 0.2)
BUNDLED = ("results.parquet", "summary.json", "summary.md", "run.json", "plot_data.json",
           "distributions.png", "differences.png", "pvalues.png")
SIZE_LIMIT = 2 * 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a real C-NMC folder (default: write synthetic data)")
    parser.add_argument("--out", type=Path,
                        help="default: assets/results/real-cnmc with --data, else assets/results/synthetic")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--image-size", type=int, help="default: 128 with --data, else 64")
    parser.add_argument("--models", help="comma-separated presets (default: see above)")
    parser.add_argument("--work", type=Path, help="keep the data, parts and feature cache here (resumable)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    from leuk.data.synthetic import write_cnmc
    from leuk.experiments.montecarlo import run_monte_carlo

    models, image_size, val_size = REAL if args.data else SYNTHETIC
    models = [m.strip() for m in args.models.split(",")] if args.models else models
    image_size = args.image_size or image_size
    out = args.out or RESULTS / ("real-cnmc" if args.data else "synthetic")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="leuk-mc-results-") as scratch:
        work = args.work or Path(scratch)
        data = args.data
        if data is None:
            data = work / "data"
            if not (data / "C-NMC_Leukemia").is_dir():
                write_cnmc(data, **DATA)
        run = run_monte_carlo(data, models, work / "run", reference=models[0], n_iter=args.iterations,
                              protocol="both", seed=0, val_size=val_size, image_size=image_size,
                              progress=sys.stderr.isatty())
        out.mkdir(parents=True, exist_ok=True)
        for name in BUNDLED:
            if (work / "run" / name).is_file():
                shutil.copyfile(work / "run" / name, out / name)
    total = sum((out / name).stat().st_size for name in BUNDLED if (out / name).is_file())
    print(f"wrote {out} ({total / 2**20:.2f} MiB) in {time.perf_counter() - started:.0f} s "
          f"(extraction {run.extraction_s:.0f} s, iterations {run.iterations_s:.0f} s)")
    if total > SIZE_LIMIT:
        print(f"error: bundled results exceed {SIZE_LIMIT // 2**20} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
