"""Regenerate the synthetic EfficientNet-SE (seeded, one command, CPU): the model of the attribution check.

    python train/make_efficientnet_se_demo.py      # -> assets/synthetic_models/efficientnet-se/

The bundled demo (``assets/demo_models/efficientnet-se``) is trained on real cells by
``train/train_real_efficientnet_se.py``; this one stays for ``tests/test_explain.py`` and
``train/check_demo_attribution.py``, which need cells whose class evidence is known to lie in the nucleus.

The paper architecture (``efficientnet-se`` preset: tf_efficientnetv2_b3 + SE + MLP head, 14.0M parameters),
trained FROM SCRATCH (no ImageNet weights can be downloaded here) on synthetic C-NMC look-alike data
(80 patients x 15 cells, 96 px, no per-patient stain confounding, seed 0) whose class evidence lies in the
nucleus only (``--class-evidence nucleus``: cell size, outline and cytoplasm look alike in both classes, so
the demo's attribution maps can be checked against the nucleus masks), with the patient-wise split of
``leuk train``. The input is 96 px instead of the paper's 384 px so that it trains on a 2-core CPU (about
5 minutes with OMP_NUM_THREADS=2). The saved folder holds float16 safetensors, the processor, the remote
code, ``training_split.json``, ``eval_results.json`` (test patients never seen in training) and the model
card ``README.md`` (:func:`leuk.hub.cards.write_model_card`). Checkpoints are not kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "assets" / "synthetic_models" / "efficientnet-se"
SYNTH_ARGS = ["--patients", "80", "--images-per-patient", "15", "--size", "96", "--seed", "0",
              "--confounding", "0", "--class-evidence", "nucleus"]
TRAIN_ARGS = ["--image-size", "96", "--epochs", "10", "--batch-size", "32", "--lr", "1e-3",
              "--warmup-ratio", "0.05", "--patience", "4", "--seed", "0", "--dtype", "float16",
              "--save-total-limit", "1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="demo model folder (replaced)")
    parser.add_argument("--work", type=Path, help="keep the data and checkpoints here (default: temporary)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from leuk.cli import main as leuk

    work = args.work or Path(tempfile.mkdtemp(prefix="leuk-effse-demo-"))
    data, run = work / "data", work / "run"
    if leuk(["synth", "cnmc", "--out", str(data), *SYNTH_ARGS]) != 0:
        return 1
    if leuk(["train", "efficientnet-se", "--data", str(data), "--out", str(run), *TRAIN_ARGS]) != 0:
        return 1
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(run, args.out, ignore=shutil.ignore_patterns("checkpoints"))
    from leuk.hub.cards import write_model_card

    write_model_card(args.out)  # README.md: the card the apps' Models views show
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
