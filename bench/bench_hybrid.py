"""HybridCN-NAS feature extraction against each of its raw timm backbones alone, in one run, as ratios.

    python bench/bench_hybrid.py                  # paper preset: ConvNeXt-Large @224 + NASNet-Large @331
    python bench/bench_hybrid.py --tiny           # hybridcn-nas-lite (timm test backbones, 128 px; seconds)
    python bench/bench_hybrid.py --compile        # the GPU goal: everything through torch.compile
    OMP_NUM_THREADS=2 python bench/bench_hybrid.py --batch 2 --repeats 3 --json hybrid.json

Measures on the current device (CUDA when present, else CPU with the current thread count), images per
second at one batch size (``--batch``), median of ``--repeats`` timed calls after warm-up:

- **hybrid**: ``model.extract_features(pixel_values)`` of a :func:`leuk.models.create_model` preset, the work
  of HybridCN-NAS's feature stage (``leuk.training.hybridcn_nas.run_feature_stages``: the Attention U-Net's
  cell mask, then :class:`HybridFeatureExtractor`: each branch resized to its own size and normalised,
  masked, timm ``forward_features``, SAGAN self-attention, pooling, projections, fusion, factorised
  projection), on ``pixel_values`` at the model's ``image_size``. Also the extractor alone (no mask, so no
  segmenter), to show what the segmenter costs;
- **raw branches**: ``timm.create_model(name, pretrained=False, num_classes=0)`` (pooled features) of each
  branch backbone of the configuration, on inputs already at that branch's own resolution.

All get the same treatment: eval mode, ``torch.inference_mode``, channels-last, bf16 autocast on CUDA,
``torch.compile`` with ``--compile``. The printed ratio is hybrid / slower raw branch (higher is better; the
issue's goal on a GPU: >= 0.9). The hybrid runs both branches, so it can reach that goal only when the faster
branch and the rest cost little next to the slower one. Random weights and inputs: speed does not depend on
them. CPU timings only mean something on a quiet machine: the 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

from _timing import load_average, timed_runs

TINY_PRESET, PAPER_PRESET = "hybridcn-nas-lite", "hybridcn-nas"


def _images_per_s(fn: Callable[[], Any], batch: int, repeats: int, warmup: int, sync: Callable[[], None]) -> float:
    return batch / statistics.median(timed_runs(fn, repeats, sync, warmup=warmup))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=f"{TINY_PRESET} (timm test backbones, 128 px)")
    parser.add_argument("--preset", help=f"model preset (default {PAPER_PRESET}; {TINY_PRESET} with --tiny)")
    parser.add_argument("--batch", type=int,
                        help="batch size of every measurement (default 128 on CUDA, 2 on CPU; 8 tiny)")
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default 10 on CUDA, else 3)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the hybrid and the raw backbones")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import timm
    import torch

    from leuk.models import count_parameters, create_model

    cuda = torch.cuda.is_available() and args.device != "cpu"
    if args.device == "cuda" and not cuda:
        raise SystemExit("--device cuda: no CUDA device here")
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    preset = args.preset or (TINY_PRESET if args.tiny else PAPER_PRESET)
    batch = args.batch or (8 if args.tiny else (128 if cuda else 2))
    repeats = args.repeats or (10 if cuda and not args.tiny else 3)
    warmup = 3 if args.compile else 1
    load_before = load_average()

    torch.manual_seed(0)
    model = create_model(preset).to(device, memory_format=torch.channels_last).eval()
    config = model.config
    branches = {"a": (config.branch_a, int(config.branch_a_image_size)),
                "b": (config.branch_b, int(config.branch_b_image_size))}

    def prepared(module: torch.nn.Module) -> Callable[[torch.Tensor], Any]:
        return torch.compile(module, dynamic=False) if args.compile else module

    def timed(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> float:
        @torch.inference_mode()
        def call() -> None:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
                fn(x)

        return _images_per_s(call, batch, repeats, warmup, sync)

    pixels = torch.rand(batch, 3, config.image_size, config.image_size, device=device).contiguous(
        memory_format=torch.channels_last)
    extract = prepared(model.extract_features)
    extractor = prepared(model.extractor)
    hybrid_img_s = timed(extract, pixels)
    extractor_img_s = timed(lambda x: extractor(x, None).vector, pixels)
    n_params = count_parameters(model)
    del model, extract, extractor

    raw: dict[str, dict[str, Any]] = {}
    for side, (name, size) in branches.items():
        backbone = timm.create_model(name, pretrained=False, num_classes=0).to(
            device, memory_format=torch.channels_last).eval()
        x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        raw[side] = {"backbone": name, "size": size, "img_s": round(timed(prepared(backbone), x), 2)}
        del backbone
    slower = min(raw.values(), key=lambda entry: entry["img_s"])

    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "model": preset, "parameters": n_params, "image_size": int(config.image_size), "batch": batch,
        "repeats": repeats, "compiled": args.compile, "torch": torch.__version__, "timm": timm.__version__,
        "load_average_1min": [load_before, load_average()],
        "hybrid_img_s": round(hybrid_img_s, 2), "hybrid_extractor_only_img_s": round(extractor_img_s, 2),
        "branch_a": raw["a"], "branch_b": raw["b"], "slower_branch": slower["backbone"],
        "hybrid_ratio": round(hybrid_img_s / slower["img_s"], 3),
        "hybrid_extractor_only_ratio": round(extractor_img_s / slower["img_s"], 3),
    }
    mode = "compiled" if args.compile else "eager"
    print(f"hybrid extraction bench on {figures['device']}: {preset} ({n_params / 1e6:.1f}M parameters) "
          f"@{config.image_size}, batch {batch}, {mode}; "
          f"load average {load_before} -> {figures['load_average_1min'][1]}")
    for side in ("a", "b"):
        entry = raw[side]
        print(f"  raw timm {entry['backbone']} @{entry['size']}   {entry['img_s']} img/s")
    print(f"  hybrid extract_features (segmenter + both branches)   {figures['hybrid_img_s']} img/s  "
          f"ratio {figures['hybrid_ratio']} (hybrid/{slower['backbone']}, higher is better)")
    print(f"  hybrid extractor only (no segmenter)                  {figures['hybrid_extractor_only_img_s']} img/s  "
          f"ratio {figures['hybrid_extractor_only_ratio']}")
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
