"""Benchmark: how long leuk's explanations take, next to the model's plain forward pass.

The paper's EfficientNet-SE (tf_efficientnetv2_b3 + SE + MLP head) at 300 px on one synthetic C-NMC cell:
the raw timm backbone's forward, EfficientNet-SE's forward, Grad-CAM, Integrated Gradients (50 steps) and
the deletion/insertion curves, each the median of ``--repeats`` runs after one warm-up. Targets on a 2-thread
CPU: Grad-CAM <= 0.5 s, IG (50 steps) <= 10 s per image.

    OMP_NUM_THREADS=2 python bench/bench_explain.py             # paper preset, 300 px, CPU, 2 threads
    python bench/bench_explain.py --tiny                         # efficientnet-se-test at 64 px (seconds)
    python bench/bench_explain.py --device cuda --json out.json
    OMP_NUM_THREADS=2 python bench/bench_explain.py --compile   # also IG through torch.compile (compiles first)

CPU timings are only meaningful on an otherwise idle machine: the 1-minute load average is printed before
and after, and a load above the thread count is flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from _timing import timed_runs

TARGETS_S = {"gradcam": 0.5, "integrated_gradients": 10.0}


def _median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> tuple[float, list[float]]:
    times = timed_runs(fn, repeats, sync, warmup=1)  # warm-up: allocator, oneDNN kernel selection, lazy imports
    return statistics.median(times), times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="efficientnet-se-test at 64 px instead of the paper preset")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2),
                        help="torch CPU threads (default: $OMP_NUM_THREADS or 2)")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default 300; 64 with --tiny)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps")
    parser.add_argument("--batch-size", type=int, default=None, help="IG internal batch size (default: leuk's)")
    parser.add_argument("--compile", action="store_true",
                        help="also time IG with torch_compile=True (the one-time compile is reported apart)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)

    import numpy as np
    import timm
    import torch

    from leuk.data.synthetic import render_cell
    from leuk.explain import deletion_insertion, explain
    from leuk.explain.attribution import DEFAULT_INTERNAL_BATCH, LogitsOnly
    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    preset = "efficientnet-se-test" if args.tiny else "efficientnet-se"
    size = args.size or (64 if args.tiny else 300)
    load_before = os.getloadavg()[0]

    model = create_model(preset, image_size=size).to(device).eval()
    backbone = timm.create_model(model.config.backbone, pretrained=False, num_classes=2).to(device).eval()
    processor = EfficientNetSEImageProcessor.from_model_config(model.config)
    cell = render_cell(np.random.default_rng(0), "all", size).image
    pixel_values = processor(images=cell, return_tensors="pt")["pixel_values"].to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch = args.batch_size or DEFAULT_INTERNAL_BATCH.get(device.type, 8)

    with torch.no_grad():
        logits = model(pixel_values).logits
    forward = LogitsOnly(model)
    rows: dict[str, dict] = {}
    paper_cpu = not args.tiny and size == 300 and device.type == "cpu"  # where the targets apply

    def measure(name: str, fn: Callable[[], object]) -> None:
        median, times = _median_time(fn, args.repeats, sync)
        rows[name] = {"median_s": median, "runs_s": times}
        target = TARGETS_S.get(name) if paper_cpu else None
        verdict = "" if target is None else f"  (target <= {target:g} s: {'met' if median <= target else 'MISSED'})"
        print(f"{name:34s} {median * 1000:10.1f} ms{verdict}", flush=True)

    print(f"{preset} ({model.config.backbone}) at {size} px on {device.type}, {args.threads} thread(s), "
          f"IG {args.steps} steps, internal batch {batch}; load average {load_before:.2f}")

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return fn()

        return run

    measure("timm forward (backbone + linear)", no_grad(lambda: backbone(pixel_values)))
    measure("efficientnet-se forward", no_grad(lambda: model(pixel_values)))
    # the prediction's logits are reused, as the apps do: the time is Grad-CAM's own forward + backward
    measure("gradcam", lambda: explain(model, pixel_values, "gradcam", logits=logits, faithfulness=False))
    measure("gradcam incl. target forward", lambda: explain(model, pixel_values, "gradcam", faithfulness=False))
    measure("integrated_gradients", lambda: explain(model, pixel_values, "integrated_gradients", logits=logits,
                                                    n_steps=args.steps, internal_batch_size=batch,
                                                    faithfulness=False))
    if args.compile:
        def compiled_ig() -> object:
            return explain(model, pixel_values, "integrated_gradients", logits=logits, n_steps=args.steps,
                           internal_batch_size=batch, faithfulness=False, torch_compile=True)

        start = time.perf_counter()
        compiled_ig()
        sync()
        rows["integrated_gradients compile (first call)"] = {"median_s": time.perf_counter() - start}
        print(f"{'integrated_gradients compile (first call)':34s} "
              f"{rows['integrated_gradients compile (first call)']['median_s'] * 1000:10.1f} ms", flush=True)
        TARGETS_S["integrated_gradients (torch.compile)"] = TARGETS_S["integrated_gradients"]
        measure("integrated_gradients (torch.compile)", compiled_ig)
    saliency = torch.rand(size, size, generator=torch.Generator().manual_seed(0))
    measure("deletion + insertion (20 steps)",
            lambda: deletion_insertion(forward, pixel_values, saliency.to(device), 1, steps=20,
                                       reference_logits=logits, batch_size=max(batch, 20)))

    load_after = os.getloadavg()[0]
    print(f"load average after: {load_after:.2f}")
    busy = max(load_before, load_after) > args.threads + 0.5 and device.type == "cpu"
    if busy:
        print(f"warning: load average above {args.threads} threads: other processes shared the CPU, "
              "so these CPU timings are pessimistic", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({
            "preset": preset, "backbone": model.config.backbone, "size": size, "device": device.type,
            "threads": args.threads, "ig_steps": args.steps, "internal_batch_size": batch,
            "load_average": [load_before, load_after], "cpu_shared": busy, "targets_s": TARGETS_S,
            "timings": rows,
        }, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
