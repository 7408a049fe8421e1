"""leuk's training step against a raw timm training step, both loading images from files, in one run, as ratios.

    python bench/bench_training.py                  # EfficientNet-SE paper preset at 300 px (batch 64 CUDA / 8 CPU)
    python bench/bench_training.py --tiny           # efficientnet-se-test at 64 px (seconds; runs in the tests)
    python bench/bench_training.py --compile        # the GPU goal: both models through torch.compile
    python bench/bench_training.py --cache none --steps 50 --num-workers 8 --json training.json

A small synthetic C-NMC set (:func:`leuk.data.synthetic.write_cnmc`, 450 px BMP files like the real set; 96 px
with ``--tiny``) is written to a temporary folder; every side then trains on the same files, on the same
device, for ``--warmup`` untimed steps and ``--steps`` timed ones, and the images per second of the timed
steps are printed with the ratio leuk / raw (higher is better; the issue's goal on a GPU: >= 0.9 with
``--compile``).

- **leuk**: :func:`leuk.training.efficientnet_se.fit_classifier`, the function ``leuk train efficientnet-se``
  runs after splitting, with ``max_steps = warmup + steps``. So the timed steps are the transformers
  ``Trainer``'s own loop with everything leuk puts in it: :class:`leuk.training.data.ImageTensorDataset`
  (:func:`leuk.io.read_image` + the model's image processor, bicubic resize) and ``collate_image_batch``,
  the class-balanced sampler, rescaling, :class:`leuk.data.augment.TrainAugment` and normalisation on the
  device, channels-last, the focal loss in the model, gradient clipping, AdamW (fused on CUDA), the
  scheduler, bf16 autocast on CUDA and the Trainer's logging. The steps are timed by a ``TrainerCallback``
  (``on_step_end``, which comes after the step's batch was fetched, so loading is inside the window),
  passed to ``fit_classifier(callbacks=...)``: nothing of leuk's step is re-implemented here. Evaluation
  and checkpointing are configured to happen once, after the last timed step (``eval_steps = max_steps``). Two leuk runs, as ``--cache``
  says: ``none`` decodes every image file in every step (the like-for-like comparison with the raw loop)
  and ``memory`` is what ``leuk train`` does when the set fits (``--cache auto``): decode once into a
  uint8 cache before training (that one-off time is printed apart) and train from memory.
- **raw timm**: ``timm.create_model(config.backbone, num_classes=2)`` (channels-last), cross-entropy,
  ``torch.optim.AdamW`` (fused on CUDA), bf16 autocast on CUDA, no augmentation, no clipping, fed by a plain
  ``torch.utils.data.DataLoader`` whose dataset opens each file with PIL, converts to RGB and resizes
  (bicubic) to the input size on every step; uint8 batches are rescaled and normalised on the device.

Both sides use the same training images (the balanced subset of the set, so that an epoch is a whole
number of batches and a compiled model never sees a partial batch), batch size, input size, worker
processes (``--num-workers``; pinned memory on CUDA) and device. Random initialisation: speed does not depend
on the weights. CPU timings only mean something on a quiet machine: the 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _timing import load_average

TINY_PRESET, PAPER_PRESET = "efficientnet-se-test", "efficientnet-se"


class _StepClock:
    """Wall time of global steps ``warmup + 1 .. warmup + steps`` (synchronising CUDA at both ends)."""

    def __init__(self, warmup: int, steps: int, sync) -> None:
        self.warmup, self.steps, self.sync = warmup, steps, sync
        self.created = time.perf_counter()
        self.train_begin: float | None = None
        self.start: float | None = None
        self.seconds: float | None = None

    def mark(self, step: int) -> None:
        if step == self.warmup:
            self.sync()
            self.start = time.perf_counter()
        elif step == self.warmup + self.steps and self.start is not None:
            self.sync()
            self.seconds = time.perf_counter() - self.start


def _trainer_callback(clock: _StepClock):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.train_begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            clock.mark(int(state.global_step))

    return StepTimer()


def _balanced_subset(labels, batch: int):
    """Indices of an equal number of images per class whose total is a multiple of ``batch``."""
    import numpy as np

    classes = np.unique(labels)
    per_class = min(int((labels == c).sum()) for c in classes)
    unit = batch // math.gcd(batch, len(classes))
    per_class -= per_class % unit
    if per_class == 0:
        raise SystemExit(f"too few images for a balanced epoch of whole batches of {batch}; raise --images")
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])


def _leuk_run(preset: str, size: int, batch: int, warmup: int, steps: int, cache: str, paths: list[str],
              labels, label_names: list[str], *, device: str, num_workers: int, compile_model: bool,
              work: Path, sync) -> dict[str, float]:
    from leuk.training.efficientnet_se import TrainOptions, _build_model, fit_classifier

    options = TrainOptions(data=str(work), out=str(work / f"leuk-{cache}"), model=preset, image_size=size,
                           batch_size=batch, max_steps=warmup + steps, eval_steps=warmup + steps, cache=cache,
                           num_workers=num_workers, torch_compile=compile_model, use_cpu=device == "cpu",
                           save_total_limit=1, seed=0, progress=False, quiet=True)
    options.validate()
    model, processor = _build_model(options, label_names)
    clock = _StepClock(warmup, steps, sync)
    val = min(batch, len(paths))
    fit_classifier(model, processor, train_paths=paths, train_labels=labels, val_paths=paths[:val],
                   val_labels=labels[:val], label_names=label_names, options=options,
                   output_dir=Path(options.out), callbacks=[_trainer_callback(clock)])
    if clock.seconds is None:
        raise RuntimeError("the Trainer stopped before the last timed step")
    return {"img_s": batch * steps / clock.seconds, "setup_s": (clock.train_begin or clock.created) - clock.created}


def _raw_run(backbone: str, size: int, batch: int, warmup: int, steps: int, paths: list[str], labels,
             processor, *, device, num_workers: int, compile_model: bool, sync) -> dict[str, float]:
    import numpy as np
    import timm
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    cuda = device.type == "cuda"

    class Files(Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, index: int):
            with Image.open(paths[index]) as image:
                image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1), int(labels[index])

    loader = DataLoader(Files(), batch_size=batch, shuffle=True, drop_last=True, num_workers=num_workers,
                        pin_memory=cuda, persistent_workers=num_workers > 0,
                        generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = timm.create_model(backbone, pretrained=False, num_classes=2).to(device, memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-5, fused=cuda)
    step_model = torch.compile(model) if compile_model else model
    mean = torch.tensor(processor.image_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std, device=device).view(1, 3, 1, 1)

    def batches():
        while True:
            yield from loader

    def step(pixels: torch.Tensor, target: torch.Tensor) -> None:
        x = pixels.to(device, non_blocking=True).float().div_(255.0)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(step_model(x).float(), target.to(device, non_blocking=True))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    stream = batches()
    for _ in range(warmup):
        step(*next(stream))
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step(*next(stream))
    sync()
    return {"img_s": batch * steps / (time.perf_counter() - start)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=f"{TINY_PRESET} at 64 px, a few steps (CPU, seconds)")
    parser.add_argument("--size", type=int, help="input side (default 300; 64 with --tiny)")
    parser.add_argument("--batch", type=int, help="batch size (default 64 on CUDA, 8 on CPU and with --tiny)")
    parser.add_argument("--steps", type=int, help="timed steps per side (default 20; 8 with --tiny)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3, 5 with --compile; 2 tiny)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--num-workers", type=int,
                        help="DataLoader worker processes on both sides (default: min(8, cores) on CUDA, 0 on CPU)")
    parser.add_argument("--cache", choices=("both", "none", "memory"), default="both",
                        help="leuk runs: decode files every step (none), once into memory (memory), or both")
    parser.add_argument("--images", type=int,
                        help="synthetic images written (default: enough for 8 balanced batches; 48 tiny)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import numpy as np
    import timm
    import torch

    from leuk.data.synthetic import write_cnmc
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor
    from leuk.training.efficientnet_se import TrainOptions, _build_model, load_table

    cuda = torch.cuda.is_available() and args.device != "cpu"
    if args.device == "cuda" and not cuda:
        raise SystemExit("--device cuda: no CUDA device here")
    if (args.steps is not None and args.steps < 1) or (args.warmup is not None and args.warmup < 1):
        raise SystemExit("--steps and --warmup must be at least 1 (the timer starts at the end of a warm-up step)")
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    preset = TINY_PRESET if args.tiny else PAPER_PRESET
    size = args.size or (64 if args.tiny else 300)
    batch = args.batch or (64 if cuda and not args.tiny else 8)
    steps = args.steps or (8 if args.tiny else 20)
    warmup = args.warmup if args.warmup is not None else (2 if args.tiny else (5 if args.compile else 3))
    workers = args.num_workers if args.num_workers is not None else (min(8, os.cpu_count() or 1) if cuda else 0)
    n_images = args.images or (48 if args.tiny else 12 * math.ceil(8 * batch * 1.6 / 12))
    file_side = 96 if args.tiny else 450
    caches = ("none", "memory") if args.cache == "both" else (args.cache,)
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="leuk-bench-training-") as tmp:
        work = Path(tmp)
        data = work / "cnmc"
        started = time.perf_counter()
        patients = 12
        write_cnmc(data, patients=patients, images_per_patient=math.ceil(n_images / patients), size=file_side, seed=0)
        written_s = time.perf_counter() - started
        paths, labels, _, label_names = load_table(TrainOptions(data=str(data), out=""))
        # mixed classes in any prefix, so the few validation images (the first batch) hold both labels
        chosen = np.random.default_rng(0).permutation(_balanced_subset(labels, batch))
        train_paths, train_labels = [paths[i] for i in chosen], labels[chosen]
        model, _ = _build_model(TrainOptions(data="", out="", model=preset, image_size=size), label_names)
        backbone = model.config.backbone
        processor = EfficientNetSEImageProcessor.from_model_config(model.config)
        del model

        raw = _raw_run(backbone, size, batch, warmup, steps, train_paths, train_labels, processor, device=device,
                       num_workers=workers, compile_model=args.compile, sync=sync)
        leuk = {cache: _leuk_run(preset, size, batch, warmup, steps, cache, train_paths, train_labels, label_names,
                                 device="cuda" if cuda else "cpu", num_workers=workers,
                                 compile_model=args.compile, work=work, sync=sync)
                for cache in caches}

    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "model": preset, "backbone": backbone, "size": size, "batch": batch, "steps": steps, "warmup": warmup,
        "num_workers": workers, "compiled": args.compile, "train_images": len(train_paths),
        "file_side": file_side, "torch": torch.__version__, "timm": timm.__version__,
        "load_average_1min": [load_before, load_average()], "write_s": round(written_s, 1),
        "raw_img_s": round(raw["img_s"], 2),
    }
    for cache, result in leuk.items():
        name = "files" if cache == "none" else "cached"
        figures[f"leuk_{name}_img_s"] = round(result["img_s"], 2)
        if cache == "memory":
            figures["leuk_cached_setup_s"] = round(result["setup_s"], 2)
        figures[f"training_ratio_{name}"] = round(result["img_s"] / raw["img_s"], 3)

    mode = "compiled" if args.compile else "eager"
    print(f"training bench on {figures['device']}: {preset} ({backbone}) @{size}, batch {batch}, {steps} timed steps "
          f"after {warmup}, {workers} workers, {mode}, {len(train_paths)} training files of {file_side} px; "
          f"load average {load_before} -> {figures['load_average_1min'][1]}")
    print(f"  raw timm step, PIL from files        {figures['raw_img_s']} img/s")
    if "leuk_files_img_s" in figures:
        print(f"  leuk Trainer, decoding files (cache none)   {figures['leuk_files_img_s']} img/s  "
              f"ratio {figures['training_ratio_files']} (leuk/raw, higher is better)")
    if "leuk_cached_img_s" in figures:
        print(f"  leuk Trainer, uint8 cache (cache memory)    {figures['leuk_cached_img_s']} img/s  "
              f"ratio {figures['training_ratio_cached']} (leuk/raw; decoding {len(train_paths)} files + "
              f"Trainer setup before training: {figures['leuk_cached_setup_s']} s, once per run)")
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
