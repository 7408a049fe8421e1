"""Regenerate every committed binary asset, each from its own seeded script (``make demo-assets``).

    python train/make_demo_assets.py [--only effnet,hybrid,samples,results]

- ``assets/demo_models/efficientnet-se/``   train/make_efficientnet_se_demo.py (about 20 CPU minutes)
- ``assets/demo_models/hybridcn-nas-lite/`` train/make_hybrid_demo.py (a few CPU minutes)
- ``assets/samples/``                       train/make_samples.py (seconds)
- ``assets/results/synthetic/``             train/make_mc_results.py (a few CPU minutes); the real set,
  ``assets/results/cnmc-real/``, needs the real C-NMC pool: ``train/make_mc_results.py --data DIR``

Git keeps every version of a binary: run this only when the generator, a model or the runner changed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

TRAIN = Path(__file__).resolve().parent
STEPS = {
    "effnet": "make_efficientnet_se_demo.py",
    "hybrid": "make_hybrid_demo.py",
    "samples": "make_samples.py",
    "results": "make_mc_results.py",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(STEPS), help="comma-separated subset of " + ", ".join(STEPS))
    args = parser.parse_args(argv)
    for name in args.only.split(","):
        script = TRAIN / STEPS[name.strip()]
        start = time.perf_counter()
        print(f"== {name}: {script.name}", flush=True)
        if subprocess.call([sys.executable, str(script)]) != 0:
            print(f"error: {script.name} failed", file=sys.stderr)
            return 1
        print(f"== {name} done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
