"""Train the synthetic HybridCN-NAS lite model (seeded, one command, CPU, a few minutes).

    python train/make_hybrid_demo.py            # -> runs/synthetic-hybridcn-nas-lite/ (not committed)

The bundled ``demo:hybridcn-nas-lite`` is trained on real Aria smears (``train/train_real_hybridcn_nas.py``);
this synthetic twin is the baseline its recipe compares the real U-Net against on the reviewed reference
smears, and a model for controlled experiments. Renders a synthetic Aria set
(``leuk.data.synthetic.write_aria``: 40 patients x 6 smears, 128 px), trains the ``lite`` preset with the
staged engine (patient-wise split, every fitted statistic on training patients only), saves float16 weights,
the image processor, the remote code, ``eval_results.json`` (test metrics, the segmenter's held-out Dice/IoU)
and the model card ``README.md``. Fails when the segmenter's test Dice is below 0.85 or the folder exceeds 30 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "runs" / "synthetic-hybridcn-nas-lite"
MIN_DICE = 0.85
MAX_BYTES = 30 * 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="demo model folder (replaced)")
    parser.add_argument("--work", type=Path, help="keep data and stages here (default: a temporary folder)")
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--images-per-patient", type=int, default=6)
    parser.add_argument("--size", type=int, default=128, help="side of the synthetic smears in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)

    from leuk.data.synthetic import write_aria
    from leuk.experiments.runs import train_hybridcn_nas
    from leuk.training.hybridcn_nas import EVAL_RESULTS_FILE, HybridTrainOptions

    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="hybrid-demo-") as temporary:
        work = args.work or Path(temporary)
        data = work / "aria"
        if not (data / "patients.csv").is_file():
            write_aria(data, patients=args.patients, images_per_patient=args.images_per_patient, size=args.size,
                       seed=args.seed, overwrite=True)
        options = HybridTrainOptions(preset="lite", seed=args.seed, save_dtype="float16", synthetic=True,
                                     progress=args.progress)
        result = train_hybridcn_nas(data, work / "model", options, work_dir=work / "stages")

        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        for path in sorted((work / "model").iterdir()):
            if path.is_file():
                shutil.copy2(path, args.out / path.name)

    results_path = args.out / EVAL_RESULTS_FILE
    results = json.loads(results_path.read_text())
    results["dataset"] = "synthetic Aria look-alike (leuk.data.synthetic.write_aria), not patient data"
    results["demo"] = {
        "command": "python train/make_hybrid_demo.py",
        "synthetic_data": {"patients": args.patients, "images_per_patient": args.images_per_patient,
                           "size": args.size, "seed": args.seed},
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }
    results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    from leuk.hub.cards import write_model_card

    write_model_card(args.out)  # README.md: the card the apps' Models views show

    size = sum(p.stat().st_size for p in args.out.iterdir())
    dice = (result.segmentation.get("test") or {}).get("dice", 0.0)
    iou = (result.segmentation.get("test") or {}).get("iou", 0.0)
    test = result.test_metrics
    print(f"saved {args.out} ({size / 2**20:.1f} MB) in {results['demo']['wall_seconds']} s "
          f"({results['demo']['cpu_seconds']} CPU s)")
    print(f"segmenter, test patients: Dice {dice:.4f}, IoU {iou:.4f}")
    print(f"classifier, test patients: accuracy {test['accuracy']:.4f}, macro F1 {test['f1_macro']:.4f}, "
          f"MCC {test['mcc']:.4f}, OvR AUC {test['roc_auc'] if test['roc_auc'] is None else round(test['roc_auc'], 4)}")
    if dice < MIN_DICE:
        print(f"error: segmenter Dice {dice:.4f} is below {MIN_DICE}", file=sys.stderr)
        return 1
    if size > MAX_BYTES:
        print(f"error: {args.out} is {size / 2**20:.1f} MB, more than 30 MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
