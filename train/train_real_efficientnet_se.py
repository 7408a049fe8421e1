"""Train and evaluate EfficientNet-SE on real C-NMC cells, subject-wise, and ship one fold's model.

    python train/train_real_efficientnet_se.py --data ../shared/datasets/cnmc-real/C-NMC_Leukemia \\
        --work runs/real-effse --ship assets/demo_models/efficientnet-se

The paper architecture (``efficientnet-se``: tf_efficientnetv2_b3 + SE + MLP head) is trained FROM SCRATCH
(no ImageNet weights are reachable here; ``--pretrained`` uses them where they are) once per fold of
:func:`leuk.data.splits.leave_one_rare_subject_out`: each fold holds out one HEM subject and a third of
the ALL subjects, so every subject is scored exactly once by a model that never saw it. Early stopping,
best-checkpoint selection and the temperature use validation images of the training subjects only.

Choices for a 2-core CPU (one to two hours in all, three folds; one OpenMP thread, since two threads next to
any other work on two cores slow several-fold): 128 px input (the 450 px originals
downscaled 3.5x, whole image, so the cells keep their relative size; fine chromatin is partly lost), at most
10 epochs with patience 4, batch 32, AdamW lr 1e-3 with 5% warm-up and cosine decay (from scratch, 1e-4
barely moves in 10 epochs), minority oversampling, and the ``strong`` augmentation (flips, 90-degree and
small rotations, resized crops, colour, saturation and HED stain jitter, blur): with three HEM subjects the
network would otherwise learn each subject's stain. On a GPU use ``--image-size 384`` (the paper's).

The shipped model is fold ``--ship-fold`` (0 by default, fixed before any result was seen: no test figure
chooses between runs); its folder gets ``eval_results.json`` with the cross-subject figures of all folds,
the training subjects, the recipe and this command, and the model card ``README.md`` rendered from it
(:func:`leuk.hub.cards.write_model_card`; ``python train/render_model_cards.py`` re-renders it).
Checkpoints are not kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = {
    "image_size": 128, "epochs": 10.0, "batch_size": 32, "lr": 1e-3, "warmup_ratio": 0.05, "patience": 4,
    "seed": 0, "dtype": "float16", "augment_preset": "strong", "save_total_limit": 1,
    # validation share of the training subjects' images in each fold: the shipped demo's value (its
    # training_split.json records it), kept here since the library default became leuk.defaults.VAL_SIZE
    "fold_val_size": 0.12,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="C-NMC_Leukemia folder (official layout)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "real-effse",
                        help="fold models and cross_subject.json go here")
    parser.add_argument("--ship", type=Path, default=None,
                        help="copy the shipped fold's model here (e.g. assets/demo_models/efficientnet-se)")
    parser.add_argument("--ship-fold", type=int, default=0, help="fold whose model is shipped")
    parser.add_argument("--folds", type=str, default=None, help="comma-separated fold numbers (default: all)")
    parser.add_argument("--model", default="efficientnet-se", help="model preset")
    parser.add_argument("--image-size", type=int, default=DEFAULTS["image_size"])
    parser.add_argument("--epochs", type=float, default=DEFAULTS["epochs"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--patience", type=int, default=DEFAULTS["patience"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--augment-preset", choices=("paper", "strong"), default=DEFAULTS["augment_preset"])
    parser.add_argument("--pretrained", action="store_true", help="start from ImageNet backbone weights")
    parser.add_argument("--collect", nargs="+", type=Path, metavar="FOLD_DIR",
                        help="do not train: assemble cross_subject.json in --work from fold folders trained "
                             "separately (e.g. one process per fold with --folds i), then ship")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from leuk.experiments.cross_subject import CV_RESULTS_FILE, collect_cross_subject, cross_subject_evaluation
    from leuk.training.efficientnet_se import EVAL_RESULTS_FILE, TrainOptions

    options = TrainOptions(
        data=str(args.data), out=str(args.work), model=args.model, dataset="cnmc", image_size=args.image_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_ratio=DEFAULTS["warmup_ratio"],
        patience=args.patience, seed=args.seed, dtype=DEFAULTS["dtype"], augment_preset=args.augment_preset,
        save_total_limit=DEFAULTS["save_total_limit"], pretrained=args.pretrained, progress=args.progress,
        synthetic=False,
    )
    folds = [int(f) for f in args.folds.split(",")] if args.folds else None

    def report(index: int, record: dict) -> None:
        test = record["test"]
        print(f"fold {index}: held out {', '.join(record['test_subjects'])}: weighted F1 {test['f1_weighted']:.4f}, "
              f"AUC {test['roc_auc']:.4f}, sensitivity {test['sensitivity']:.3f}, specificity "
              f"{test['specificity']:.3f} ({record['runtime_s'] / 60:.1f} min)", flush=True)

    if args.collect:
        result = collect_cross_subject(options, args.collect, args.work, val_size=DEFAULTS["fold_val_size"])
    else:
        result = cross_subject_evaluation(options, args.work, val_size=DEFAULTS["fold_val_size"], folds=folds,
                                          on_fold=report)
    summary = result["summary"]
    for key, spread in summary["over_folds"].items():
        if spread["mean"] is not None:
            print(f"{key:>12}: {spread['mean']:.4f} +- {spread['std']:.4f} over {spread['n_folds']} folds "
                  f"(range {spread['min']:.4f}-{spread['max']:.4f}); pooled {summary['pooled'][key]:.4f}")
    print(f"written to {args.work / CV_RESULTS_FILE}")
    if args.ship is None:
        return 0
    fold_name = f"fold_{args.ship_fold}"
    fold_dir = next((d for d in args.collect or () if d.name == fold_name), args.work / fold_name)
    if not fold_dir.is_dir():
        print(f"error: fold {args.ship_fold} was not trained in {args.work}", file=sys.stderr)
        return 1
    if args.ship.exists():
        shutil.rmtree(args.ship)
    shutil.copytree(fold_dir, args.ship, ignore=shutil.ignore_patterns("checkpoints"))
    fold_record = next(r for r in result["folds"] if r["fold"] == args.ship_fold)
    command = "python train/train_real_efficientnet_se.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    eval_results = json.loads((args.ship / EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
    eval_results.update({
        "synthetic": False,
        "dataset": "C-NMC 2019 (real cells; the pool of 14 ALL and 3 HEM subjects)",
        "shipped_fold": args.ship_fold,
        "training_subjects": fold_record["train_subjects"],
        "held_out_subjects": fold_record["test_subjects"],
        "cross_subject": {
            "protocol": result["protocol"],
            "summary": summary,
            "per_subject": result["per_subject"],
            "folds": [{k: r[k] for k in ("fold", "test_subjects", "test", "epochs_trained", "temperature")}
                      for r in result["folds"]],
        },
        "recipe": result["recipe"],
        "command": command,
    })
    (args.ship / EVAL_RESULTS_FILE).write_text(json.dumps(eval_results, indent=2) + "\n", encoding="utf-8")
    from leuk.hub.cards import write_model_card

    card = write_model_card(args.ship)  # README.md: the card the apps' Models views show
    size = sum(p.stat().st_size for p in args.ship.rglob("*") if p.is_file())
    print(f"shipped fold {args.ship_fold} to {args.ship} ({size / 1e6:.1f} MB), model card {card.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
