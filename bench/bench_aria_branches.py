"""Why the real HybridCN-NAS recipe changed lite settings: what a network learns from the masked smears.

    OMP_NUM_THREADS=1 python bench/bench_aria_branches.py --run runs/real-hybrid
    OMP_NUM_THREADS=1 python bench/bench_aria_branches.py --protocol block --fold 1 --dilations 4 8 --branches

On one fold (default image-level fold 0) of a finished ``train/train_real_hybridcn_nas.py`` work folder,
trains from scratch (12 epochs, 64 px, ``leuk.experiments.aria_protocols.train_plain_cnn``) the plain CNN on
the raw, the preprocessed and the masked images (the input the hybrid's branches see, the U-Net's mask as it
is), on the masked images with the mask grown by each of ``--dilations`` pixels (a square, as
``mask_dilation`` does), and each candidate timm branch alone on the masked images, and prints the test
accuracy of each. Real Aria smears; Aria has no patient ids, so every figure is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def masked_images(preprocessed: np.ndarray, segmenter_state: Path, dilation: int = 0) -> np.ndarray:
    """The preprocessed smears with the U-Net's background (its mask grown by ``dilation`` pixels)
    replaced by each image's mean colour."""
    import torch

    from leuk.models import create_model

    model = create_model("hybridcn-nas-lite", mask_dilation=dilation).eval()
    model.segmenter.load_state_dict(torch.load(segmenter_state, map_location="cpu", weights_only=True))
    with torch.no_grad():
        pixels = torch.from_numpy(preprocessed).permute(0, 3, 1, 2).float() / 255
        masks = torch.cat([model.cell_mask(pixels[i:i + 64]) for i in range(0, len(pixels), 64)])[:, 0].numpy()
    fill = preprocessed.reshape(len(preprocessed), -1, 3).mean(axis=1)[:, None, None, :]
    return (preprocessed * masks[..., None] + (1 - masks[..., None]) * fill).astype(np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/real-hybrid"), help="work folder of the recipe")
    parser.add_argument("--protocol", choices=("image", "block"), default="image",
                        help="the fold's protocol (block: the work folder's aria/blocks.csv)")
    parser.add_argument("--fold", type=int, default=0, help="which of the five folds")
    parser.add_argument("--dilations", nargs="*", type=int, default=[],
                        help="also train the plain CNN on the masked smears with the mask grown by these pixels")
    parser.add_argument("--branches", nargs="*",
                        default=["test_convnext", "test_resnet", "test_efficientnet", "test_byobnet"])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    import timm

    from leuk.experiments.aria_protocols import protocol_folds, train_plain_cnn
    from leuk.metrics import classification_metrics
    from leuk.training.hybridcn_nas import load_table

    table = load_table(args.run / "aria", args.run / "aria" / "blocks.csv" if args.protocol == "block" else None)
    fold = protocol_folds(table.labels, table.groups, n_folds=5, val_size=0.15, seed=0)[args.fold]
    stages = args.run / "cv" / "block-fold0"
    raw, preprocessed = np.load(stages / "images.npy"), np.load(stages / "preprocessed.npy")
    inputs = {"raw": raw, "preprocessed": preprocessed, "masked": masked_images(preprocessed, stages / "segmenter.pt")}
    for dilation in args.dilations:
        inputs[f"masked, grown by {dilation} px"] = masked_images(preprocessed, stages / "segmenter.pt", dilation)
    runs = [(f"plain CNN, {name}", name, None) for name in inputs]
    runs += [(f"{branch} alone, masked", "masked", branch) for branch in args.branches]
    results = {}
    for title, source, branch in runs:
        started = time.perf_counter()
        model = None if branch is None else timm.create_model(branch, pretrained=False, num_classes=4)
        probabilities = train_plain_cnn(inputs[source], table.labels, fold, 4, model=model)
        accuracy = classification_metrics(table.labels[fold.test], probabilities, table.label_names)["accuracy"]
        results[title] = {"accuracy": accuracy, "seconds": round(time.perf_counter() - started, 1)}
        print(f"{title:40s} accuracy {accuracy:.3f}  ({results[title]['seconds']} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"fold": f"{args.protocol} fold {args.fold}", "n_test": int(len(fold.test)),
                                         "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
