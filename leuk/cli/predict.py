"""``leuk predict --model M IMAGE... [--json F] [--csv F]``: classify image files and print a table.

A folder argument stands for the image files directly inside it. Every unreadable file gets its own
one-line error on stderr and the others are still classified; the exit code is 1 only when every file failed.
Each row carries the verdict of :mod:`leuk.verdict` (``confident``, or ``uncertain`` with the reasons: low
calibrated probability, out of distribution by the model's stored detector, unreadable) and the detector's
``ood_score``; a model without a detector says so once on stderr.

``leuk predict --cells SMEAR... [--csv F]`` reads smear photos instead of cut-out cells
(:func:`leuk.serving.cells.classify_smears`): every white cell is found at the red-cell scale
(:func:`leuk.serving.detection.find_white_cells`: the learned white-cell detector, or with ``--segmenter classical``
the colour rule, with ``--segmenter unet`` the U-Net of ``--segmenter-model``), cut out onto black at the C-NMC cell
scale and classified by ``--model``; it prints a row per cell with its box, a row per smear and, for several
smears, the patient row; ``--csv`` writes those rows (column ``row``: ``cell``, ``smear``, ``patient``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from leuk.inference import RUNTIMES
    from leuk.serving.cells import SCALES
    from leuk.serving.detection import SEGMENTER_LABELS, SEGMENTERS

    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (or folders of images)")
    parser.add_argument("--model", default="demo:efficientnet-se",
                        help="Hub id[@revision], save_pretrained folder or demo:<name> (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the predictions as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write the predictions as CSV")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--cells", action="store_true",
                        help="the images are smears: find every white cell, cut it out C-NMC-style and classify it")
    parser.add_argument("--segmenter", choices=SEGMENTERS, default="auto",
                        help="--cells: how to find the white cells: "
                             + "; ".join(f"{k}: {v}" for k, v in SEGMENTER_LABELS.items()) + " (default: %(default)s)")
    parser.add_argument("--segmenter-model", default=None, metavar="MODEL",
                        help="--cells: HybridCN-NAS model whose U-Net finds the cells (default: the first of "
                             "$LEUK_MODELS or the bundled demos that has one)")
    parser.add_argument("--scale", choices=SCALES, default="cell",
                        help="--cells: scale each cell to the C-NMC size from its own diameter, or one factor per "
                             "smear (default: %(default)s)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="eager",
                        help="forward-pass runtime: eager PyTorch, torch.compile, CUDA graphs (CUDA only) or "
                             "onnxruntime (needs leuk[onnx]) (default: %(default)s)")


def expand_inputs(items: list[str]) -> list[str]:
    """Files as given; a folder becomes the image files directly inside it (sorted)."""
    from leuk.io import IMAGE_SUFFIXES

    files: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files.extend(str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


def check_outputs(args: argparse.Namespace, files: list[str]) -> None:
    """Refuse an output file (``--json``, ``--csv``) that is an image or one of the inputs: ``--json`` put
    before the images would otherwise take the first image as its file and overwrite it."""
    from leuk.errors import LeukError
    from leuk.io import IMAGE_SUFFIXES

    inputs = {Path(f).resolve() for f in files}
    for flag in ("json", "csv"):
        target = getattr(args, flag, None)
        if target is None:
            continue
        if target.suffix.lower() in IMAGE_SUFFIXES or target.resolve() in inputs:
            raise LeukError(f"--{flag} {target} names an image; it takes the file to write the predictions to "
                            f"(e.g. --{flag} predictions.{flag}), so nothing was overwritten")


HEADER = ("file", "label", "probability", "ood_score", "verdict")


def _table(rows: list[tuple[str, ...]]) -> str:
    header = HEADER
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from leuk.errors import LeukError
    from leuk.hub import load_model
    from leuk.inference import Predictor
    from leuk.serving.assessment import NOT_ASSESSED, NOT_ASSESSED_OOD
    from leuk.serving.rows import CLI_CSV, PredictionRow, json_record

    if args.batch_size < 1:
        raise LeukError("--batch-size must be at least 1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a weight-loading bar is noise in a table-printing command
    files = expand_inputs(args.images)
    if not files:
        raise LeukError("no image files given (the folders hold no images)")
    check_outputs(args, files)
    if args.cells:
        return run_cells(args, files)
    loaded = load_model(args.model, device=args.device)
    predictor = Predictor.from_loaded(loaded, device=args.device, batch_size=args.batch_size, runtime=args.runtime)
    if loaded.ood_note:
        print(f"note: {loaded.ood_note}", file=sys.stderr)
    predictions = predictor.predict_images(files, progress=len(files) > 4 * args.batch_size)

    records = [PredictionRow.of(p, p.source) for p in predictions]
    assessed = [record.assessed for record in records]
    rows = []
    for prediction, answer in zip(predictions, assessed):
        if prediction.ok:
            verdict = f"uncertain: {'; '.join(prediction.reasons)}" if prediction.uncertain else "confident"
            score = "" if prediction.ood_score is None else f"{prediction.ood_score:.2f}"
            # an image that is not assessed gets no class and no probability (CSV and JSON keep them)
            rows.append((prediction.source, (prediction.label or "") if answer else NOT_ASSESSED,
                         f"{prediction.top_probability:.4f}" if answer else "-", score, verdict))
        else:
            print(f"error: {prediction.error}", file=sys.stderr)
    if rows:
        print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps([json_record(p, r) for p, r in zip(predictions, records)], indent=2) + "\n",
                             encoding="utf-8")
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CLI_CSV.headers(predictor.label_names))
            for record in records:
                writer.writerow(CLI_CSV.render(record, predictor.label_names).values())
    left_out = sum(p.ok and not answer for p, answer in zip(predictions, assessed))
    if left_out:
        print(f"{left_out} of {len(predictions)} file(s) {NOT_ASSESSED_OOD}: no class given (CSV/JSON keep the "
              "probabilities)", file=sys.stderr)
    flagged = sum(p.uncertain and p.ok for p in predictions)
    if flagged:
        print(f"{flagged} of {len(predictions)} file(s) uncertain (see the verdict column)", file=sys.stderr)
    failed = sum(not p.ok for p in predictions)
    if failed:
        print(f"{failed} of {len(predictions)} file(s) could not be classified", file=sys.stderr)
    return 1 if failed == len(predictions) else 0


CELL_HEADER = ("smear", "cell", "box", "status", "label", "probability", "verdict")


def run_cells(args: argparse.Namespace, files: list[str]) -> int:
    """``--cells``: every white cell of every smear (one patient), a row per cell, per smear and the patient."""
    from leuk.hub import resolve_models_from_env
    from leuk.serving.assessment import NOT_ASSESSED
    from leuk.serving.cells import classify_smears
    from leuk.serving.registry import MODELS_ENV, ModelRegistry

    segmenters = [args.segmenter_model] if args.segmenter_model else [
        spec for spec in resolve_models_from_env(MODELS_ENV) if spec != args.model]
    registry = ModelRegistry([args.model, *segmenters], device=args.device)
    result = classify_smears(files, args.model, segmenter=args.segmenter, segmenter_model=args.segmenter_model,
                             scale=args.scale, registry=registry, max_smears=None)
    loaded = registry.get(args.model)
    if loaded.ood_note:
        print(f"note: {loaded.ood_note}", file=sys.stderr)
    rows = []
    for smear in result.smears:
        if smear.error is not None:
            print(f"error: {smear.error}", file=sys.stderr)
            continue
        for cell in smear.cells:
            item = cell.result
            box = ",".join(str(v) for v in cell.box)
            if item is None:
                rows.append((smear.name, str(cell.number), box, f"skipped: {cell.skipped}", "", "", ""))
            else:
                rows.append((smear.name, str(cell.number), box, "classified",
                             (item.label or "") if item.assessed else NOT_ASSESSED,
                             f"{item.top_probability:.4f}" if item.assessed else "-", item.verdict.text))
    if rows:
        widths = [max(len(row[i]) for row in [CELL_HEADER, *rows]) for i in range(len(CELL_HEADER))]
        for row in [CELL_HEADER, *rows]:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        print()
    for smear in result.smears:
        if smear.error is None:
            print(smear.headline)
    if len(result.smears) > 1:
        patient = result.patient_row()
        share = "" if patient["share_all"] is None else f", {patient['share_all']:.0%} called ALL"
        print(f"patient ({len(result.smears)} smears): {patient['classified']} cells classified{share}, "
              f"{patient['uncertain_cells']} uncertain; reading {patient['label'] or 'none'} "
              f"({patient['verdict'] or 'nothing classified'})")
    if args.csv:
        result.table().to_csv(args.csv, index=False)
    if args.json:
        args.json.write_text(result.table().to_json(orient="records", indent=2) + "\n", encoding="utf-8")
    return 0
