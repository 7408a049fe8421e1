"""The prediction engine against the raw timm model, side by side in one run, as ratios.

    python bench/bench_inference.py                 # EfficientNet-SE paper preset at 300 px
    python bench/bench_inference.py --tiny          # efficientnet-se-test at 64 px (seconds; runs in the tests)
    python bench/bench_inference.py --runtime cudagraphs --raw-compile   # the GPU goals: CUDA graphs vs compiled timm
    python bench/bench_inference.py --runtime onnx  # onnxruntime engine (needs leuk[onnx]) vs eager timm

Measures on the current device (CUDA when present, else CPU with the current thread count):
- batch-1 latency, end to end through :class:`leuk.inference.Predictor` (preprocessed tensor in,
  probabilities out) against a raw ``timm`` forward of the same backbone with the same input, and
- batch throughput (images/s) of both at ``--batch``.
The raw model gets the same treatment as the engine (eval, inference_mode, channels_last, bf16 autocast on
CUDA), so the ratio shows the engine's overhead, not a difference in settings. Random weights: speed does not
depend on them.

``--runtime`` picks the engine's runtime (:data:`leuk.inference.RUNTIMES`); the fixed-shape ones
(``compile``, ``cudagraphs``) get one engine per measured shape (batch size 1 for latency, ``--batch`` for
throughput) so that a single image is not padded to a full batch. ``--raw-compile`` runs the raw model through
``torch.compile`` too (``mode="reduce-overhead"``, i.e. CUDA graphs, when the engine runtime is ``cudagraphs``).
The ``onnx`` runtime runs in float32 (no bf16 autocast), whatever the device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from _timing import timed_runs


def main(argv: list[str] | None = None) -> int:
    from leuk.inference import FIXED_BATCH_RUNTIMES, RUNTIMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="efficientnet-se-test at 64 px")
    parser.add_argument("--size", type=int, help="input side (default 300; 64 with --tiny)")
    parser.add_argument("--batch", type=int, help="throughput batch size (default 32 on CPU, 256 on CUDA; 8 tiny)")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 20; 5 tiny)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="eager", help="the engine's runtime (default: eager)")
    parser.add_argument("--raw-compile", action="store_true", help="torch.compile the raw timm model too")
    args = parser.parse_args(argv)

    import timm
    import torch

    from leuk.inference import Predictor
    from leuk.models import create_model

    preset = "efficientnet-se-test" if args.tiny else "efficientnet-se"
    size = args.size or (64 if args.tiny else 300)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    batch = args.batch or (8 if args.tiny else (256 if cuda else 32))
    repeats = args.repeats or (5 if args.tiny else 20)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    model = create_model(preset, image_size=size)
    engine_many = Predictor(model, processor=None, device=device, batch_size=batch, runtime=args.runtime)
    engine_one = (Predictor(model, processor=None, device=device, batch_size=1, runtime=args.runtime)
                  if args.runtime in FIXED_BATCH_RUNTIMES else engine_many)
    raw = timm.create_model(model.config.backbone, pretrained=False, num_classes=2).to(
        device, memory_format=torch.channels_last).eval()
    cuda_graphs = args.raw_compile and args.runtime == "cudagraphs"
    raw_model = (torch.compile(raw, mode="reduce-overhead" if cuda_graphs else "default", dynamic=False)
                 if args.raw_compile else raw)

    @torch.inference_mode()
    def raw_forward(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            return raw_model(x).float().softmax(-1).cpu()

    one = torch.rand(1, 3, size, size)
    many = torch.rand(batch, 3, size, size)
    # compiled code compiles on its first call and CUDA graphs are recorded on a later one
    warmups = 3 if args.raw_compile or args.runtime != "eager" else 1
    for fn in (lambda: engine_one.predict_proba(one), lambda: raw_forward(one),
               lambda: engine_many.predict_proba(many), lambda: raw_forward(many)):
        for _ in range(warmups):
            fn()
        sync()
    engine_1 = statistics.median(timed_runs(lambda: engine_one.predict_proba(one), repeats, sync))
    raw_1 = statistics.median(timed_runs(lambda: raw_forward(one), repeats, sync))
    engine_b = statistics.median(timed_runs(lambda: engine_many.predict_proba(many), max(3, repeats // 4), sync))
    raw_b = statistics.median(timed_runs(lambda: raw_forward(many), max(3, repeats // 4), sync))
    figures = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "model": preset, "size": size, "batch": batch, "torch": torch.__version__, "timm": timm.__version__,
        "runtime": args.runtime, "raw": ("compiled (reduce-overhead)" if cuda_graphs
                                         else "compiled" if args.raw_compile else "eager"),
        "engine_batch1_ms": round(engine_1 * 1000, 2), "raw_batch1_ms": round(raw_1 * 1000, 2),
        "batch1_latency_ratio": round(engine_1 / raw_1, 3),
        "engine_img_s": round(batch / engine_b, 1), "raw_img_s": round(batch / raw_b, 1),
        "throughput_ratio": round(raw_b / engine_b, 3),
    }
    print(f"inference bench on {figures['device']}: {preset} @{size}, engine runtime {args.runtime}, "
          f"raw timm {figures['raw']}")
    print(f"  batch 1   engine {figures['engine_batch1_ms']} ms  raw timm {figures['raw_batch1_ms']} ms  "
          f"ratio {figures['batch1_latency_ratio']} (engine/raw, lower is better)")
    print(f"  batch {batch}  engine {figures['engine_img_s']} img/s  raw timm {figures['raw_img_s']} img/s  "
          f"ratio {figures['throughput_ratio']} (engine/raw, higher is better)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
