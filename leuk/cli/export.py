"""``leuk export --model M --out FILE.onnx``: write a model as ONNX (dynamic batch) and check it with onnxruntime.

The file takes ``pixel_values`` (float32, N x C x H x W, preprocessed as the model's image processor does)
and returns ``logits`` (already divided by the model's temperature). Unless ``--no-check``, onnxruntime's
logits on a seeded random batch are compared with the PyTorch model's and the command fails when they differ
beyond ``--atol``/``--rtol``. Needs ``pip install onnx onnxruntime onnxscript`` (or ``leuk[onnx]``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo:efficientnet-se",
                        help="Hub id[@revision], save_pretrained folder or demo:<name> (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.onnx", help="the ONNX file to write")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square input side (default: the model's config.image_size)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the onnxruntime-against-PyTorch logits check")
    parser.add_argument("--atol", type=float, default=1e-4, help="absolute logit tolerance of the check")
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative logit tolerance of the check")


def run(args: argparse.Namespace) -> int:
    from leuk.errors import LeukError
    from leuk.export import export_onnx, require_onnx
    from leuk.hub import load_model

    if args.image_size is not None and args.image_size < 1:
        raise LeukError("--image-size must be at least 1")
    require_onnx()  # before loading a model that could not be exported anyway
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    loaded = load_model(args.model, device="cpu")
    report = export_onnx(loaded.model, args.out, image_size=args.image_size, opset=args.opset, check=args.check,
                         atol=args.atol, rtol=args.rtol)
    check = ("not checked" if report.max_abs_difference is None
             else f"onnxruntime matches PyTorch: max |logit difference| {report.max_abs_difference:.3g}")
    print(f"wrote {report.path} (opset {report.opset}, input N x 3 x {report.image_size} x {report.image_size}; "
          f"{check})")
    return 0
