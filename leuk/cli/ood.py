"""``leuk ood fit --model DIR --data DIR`` / ``leuk ood show --model M``: a model's out-of-distribution detector.

``fit`` reads the model folder's ``training_split.json``, takes the images of its ``train`` part from ``--data``
(the folder the model was trained on) and fits the detector of :mod:`leuk.ood` on them only: class means and
Ledoit-Wolf covariance of the pooled features, and the image statistics; each threshold is the ``--quantile``
of the scores of the ``val`` part. It writes ``ood_detector.safetensors`` and ``ood_detector.json`` into the
model folder (they travel to the Hub with the weights). ``show`` prints what a stored detector was fitted on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from leuk.ood import DEFAULT_QUANTILE

    sub = parser.add_subparsers(dest="ood_command", metavar="ACTION", required=True)
    fit = sub.add_parser("fit", help="fit the detector on the model's training images and store it in the folder")
    fit.add_argument("--model", required=True, type=Path, help="save_pretrained folder with training_split.json")
    fit.add_argument("--data", required=True, type=Path, help="the dataset folder the model was trained on")
    fit.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE,
                     help="share of validation images each threshold lets through (default: %(default)s)")
    fit.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    fit.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    fit.add_argument("--progress", action="store_true", help="show a progress bar")
    show = sub.add_parser("show", help="print what the stored detector was fitted on")
    show.add_argument("--model", required=True,
                      help="Hub id[@revision], save_pretrained folder or demo:<name>")


def run(args: argparse.Namespace) -> int:
    if args.ood_command == "fit":
        from leuk.errors import LeukError
        from leuk.ood import fit_detector_for_folder

        if not (args.model / "config.json").is_file():
            raise LeukError(f"{args.model} is not a save_pretrained model folder (no config.json)")
        detector = fit_detector_for_folder(args.model, args.data, quantile=args.quantile, device=args.device,
                                           batch_size=args.batch_size, progress=args.progress)
        fit = detector.info["fit"]
        print(f"fitted on {fit['n_train_images']} training images ({detector.dimension} features); threshold "
              f"{detector.threshold:.2f} ({detector.info['threshold_rule']}); image-statistics threshold "
              f"{detector.stats_threshold:.2f}; wrote {args.model / 'ood_detector.json'} and "
              f"{args.model / 'ood_detector.safetensors'}")
        return 0
    from leuk.hub import load_model

    loaded = load_model(args.model, device="cpu")
    if loaded.ood_detector is None:
        print(f"note: {loaded.ood_note}")
        return 1
    detector = loaded.ood_detector
    print(detector.description)
    print(json.dumps({"threshold": detector.threshold, "stats_threshold": detector.stats_threshold,
                      **detector.info}, indent=2))
    return 0
