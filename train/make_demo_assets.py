"""Regenerate every committed binary asset, each from its own seeded script (``make demo-assets``).

    python train/make_demo_assets.py [--only samples,results,cards]

- ``assets/demo_models/hybridcn-nas-lite/`` trained on real Aria smears by train/train_real_hybridcn_nas.py
  (needs the real images; not a step here). ``--only hybrid`` trains its synthetic twin into
  ``runs/synthetic-hybridcn-nas-lite/`` (train/make_hybrid_demo.py, a few CPU minutes; not committed)
- ``assets/samples/``                       train/make_samples.py (seconds; the Aria samples, synthetic: the
  real C-NMC samples need the real images, ``train/make_samples.py --cnmc-real DIR``)
- every ``assets/demo_models/*/README.md``  train/render_model_cards.py (the model cards)
- ``assets/demo_models/efficientnet-se/``   trained on real C-NMC cells by train/train_real_efficientnet_se.py
  (needs the real images; not a step here)
- ``assets/synthetic_models/efficientnet-se/`` train/make_efficientnet_se_demo.py (``--only effnet``, about 20
  CPU minutes): the synthetic model of the nucleus-attribution check
- ``assets/results/synthetic/``             train/make_mc_results.py (a few CPU minutes); the real set,
  ``assets/results/real-cnmc/``, needs the real C-NMC pool: ``train/make_mc_results.py --data DIR``

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
    "cards": "render_model_cards.py",
}
#: What ``make demo-assets`` runs: not ``effnet`` (20 CPU minutes, for the attribution check only) nor ``hybrid``
#: (its output is not committed).
DEFAULT_STEPS = ("samples", "results", "cards")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DEFAULT_STEPS),
                        help="comma-separated subset of " + ", ".join(STEPS) + f" (default: {','.join(DEFAULT_STEPS)})")
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
