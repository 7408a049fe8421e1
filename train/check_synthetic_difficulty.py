"""How hard is the synthetic C-NMC task? A plain small CNN on the CPU, in a few minutes.

Writes synthetic C-NMC data without and with per-patient stain confounding, trains a small CNN on each
split and prints test accuracy on unseen patients (patient split) and, with confounding, on an image-level
split too. The generator is tuned so that the patient-split accuracy lands in 85-97% and the image split
scores visibly higher than the patient split when confounding is on (the leak that leuk makes visible).

    OMP_NUM_THREADS=2 .venv/bin/python train/check_synthetic_difficulty.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leuk.data import load_cnmc
from leuk.data.augment import TrainAugment
from leuk.data.splits import monte_carlo_splits
from leuk.data.synthetic import write_cnmc
from leuk.io import read_rgb_array

BATCH = 64


def small_cnn(classes: int = 2) -> nn.Module:
    """Four conv-BN-ReLU blocks (16-32-64-64 channels) with max-pooling, global average pooling, a linear head."""
    layers, channels = [], 3
    for width in (16, 32, 64, 64):
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))


def load_tensors(root: Path) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(uint8 N x 3 x H x W images, labels, patient ids) of a C-NMC folder."""
    ds = load_cnmc(root)
    images = np.stack([read_rgb_array(path) for path in ds["path"]])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), np.asarray(ds["label"]), np.asarray(ds["patient_id"])


def train_and_test(images, labels, train, test, *, epochs: int, seed: int) -> float:
    """Train a fresh small CNN on rows ``train`` (flips and 90-degree turns only) and return accuracy on ``test``."""
    torch.manual_seed(seed)
    model = small_cnn()
    optimiser = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    steps = epochs * ((len(train) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=4e-3, total_steps=steps)
    augment = TrainAugment(hflip=0.5, vflip=0.5, rot90=0.5, rotate_degrees=0.0, brightness=0.0, contrast=0.0, seed=seed)
    y = torch.as_tensor(labels)
    order_rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        shuffled = order_rng.permutation(train)
        for start in range(0, len(shuffled), BATCH):
            batch = shuffled[start : start + BATCH]
            x = augment(images[batch].float() / 255.0)
            loss = nn.functional.cross_entropy(model(x), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(images[test[i : i + 128]].float() / 255.0).argmax(1) for i in range(0, len(test), 128)])
    return float((predictions == y[test]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--images-per-patient", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2, help="Monte Carlo splits per setting")
    parser.add_argument("--confounding", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for confounding in (0.0, args.confounding):
            root = write_cnmc(Path(tmp) / f"c{confounding}", patients=args.patients, images_per_patient=args.images_per_patient,
                              size=args.size, seed=args.seed, confounding=confounding, progress=True)
            images, labels, patients = load_tensors(root)
            protocols = ("patient",) if confounding == 0 else ("patient", "image")
            for protocol in protocols:
                splits = monte_carlo_splits(labels, patients, n_iter=args.runs, seed=args.seed, protocol=protocol,
                                            test_size=0.25, val_size=0.0)
                key = f"confounding {confounding:g}, {protocol} split"
                for _, iteration_seed, split in tqdm(list(splits), desc=key, leave=False):
                    accuracy = train_and_test(images, labels, split.train, split.test, epochs=args.epochs, seed=iteration_seed)
                    results.setdefault(key, []).append(accuracy)
    print(f"synthetic C-NMC: {args.patients} patients x {args.images_per_patient} images, {args.size} px, "
          f"{args.epochs} epochs, {args.runs} splits each, {time.perf_counter() - started:.0f} s")
    for key, values in results.items():
        print(f"  {key:<36} test accuracy {np.mean(values):.3f} (runs: {', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
