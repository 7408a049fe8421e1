"""Benchmark: explaining one smear cell's call in the Gradio app and in the Streamlit dashboard, side by side.

Both apps call :func:`leuk.serving.explain_image` on the same cut-out cell; what the user waits for differs: Gradio
runs the gallery's select handler (``app.explain_cell``), Streamlit reruns the whole Predict page (the smear with
its boxes, every cell crop, the tables) around the same call. This script times exactly those two server-side
steps for the same smear, cell and method, each the median of ``--repeats`` runs after one warm-up:

* Gradio: the gallery's select event (``app.explain_cell``) through ``Blocks.process_api``, as the server runs it:
  the handler and Gradio's post-processing (the overlay written as PNG), after ``app.classify_smear``;
* Streamlit: ``AppTest`` on ``streamlit_app/app.py``: Smear mode, the smear uploaded and classified, then the
  *Explain* button's rerun with the same cell and method chosen (AppTest reruns the whole page; a served page
  reruns only the explanation's fragment, so this is the upper bound).

Browser transfer and drawing are left out of both (they are the same picture). Target (issue 28): Streamlit
within 2x Gradio for the same cell and method.

    python bench/bench_app_explain.py                                  # a bundled sample smear, native and 2592 x 1944
    python bench/bench_app_explain.py --smear ../shared/datasets/aria-real/Original/Pre/WBC-Malignant-Pre-400.jpg
    python bench/bench_app_explain.py --tiny                           # native size, Grad-CAM only, 1 repeat

The bundled sample smears are synthetic look-alikes (Aria images may not be committed): a figure on one of them
says how fast the apps are, nothing about how right.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _timing import load_average, timed_runs  # noqa: E402
from streamlit_app.ui import MODEL_KEY  # noqa: E402

TARGET_RATIO = 2.0
LARGE = (2592, 1944)


def _smears(path: Path | None, sizes: list[str], folder: Path) -> list[tuple[str, Path, bool]]:
    """(label, file, synthetic) of the smear at each requested size (``native`` or ``WxH``, resized bicubic)."""
    from PIL import Image

    from leuk import serving

    synthetic = path is None
    if path is None:
        path = next(sample.path for sample in serving.list_samples("aria"))
    out = []
    for size in sizes:
        if size == "native":
            out.append((f"{path.name} (native)", path, synthetic))
            continue
        width, height = (int(v) for v in size.lower().split("x"))
        resized = folder / f"{path.stem}_{width}x{height}.png"
        Image.open(path).convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(resized)
        out.append((f"{path.name} at {width}x{height}", resized, synthetic))
    return out


def gradio_times(smear: Path, model: str, method: str, cell: int, repeats: int) -> tuple[list[float], int]:
    """The gallery's select event as the server processes it (``Blocks.process_api``: the handler, then Gradio's
    post-processing, which writes the overlay PNG to its cache), after ``app.classify_smear``."""
    import asyncio

    import gradio as gr
    from gradio.state_holder import SessionState

    import app

    (event,) = [fn for fn in app.demo.fns.values() if getattr(fn.fn, "__name__", "") == "explain_cell"]
    outputs = app.classify_smear([str(smear)], model, "auto")
    cells = len(outputs[5]["crops"])
    session = SessionState(app.demo)
    session[event.inputs[0]._id] = outputs[5]  # the gr.State the classification filled
    data = gr.EventData(None, {"index": min(cell, max(cells - 1, 0)), "value": None, "selected": True})

    def click() -> None:
        asyncio.run(app.demo.process_api(event, [None, method], state=session, event_data=data))

    return (timed_runs(click, repeats, lambda: None, warmup=1) if cells else []), cells

def streamlit_times(smear: Path, model: str, method: str, cell: int, repeats: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app" / "app.py"), default_timeout=600).run()
    if model in at.selectbox(key=MODEL_KEY).options:
        at.selectbox(key=MODEL_KEY).set_value(model).run()
    at.radio(key="predict_mode").set_value("Smear").run()
    at.file_uploader(key="smear_files").set_value([(smear.name, smear.read_bytes(), "image/png")])
    at.selectbox(key="smear_segmenter").set_value("auto")
    at.button(key="smear_run").click().run()
    picker = at.selectbox(key="smear_cell")
    picker.set_value(picker.options[min(cell, len(picker.options) - 1)])
    at.selectbox(key="smear_method").set_value(method)

    def click() -> None:
        at.button(key="smear_explain").click().run()
        if at.exception:
            raise RuntimeError(at.exception[0].value)

    return timed_runs(click, repeats, lambda: None, warmup=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smear", type=Path, default=None, help="smear image (default: the first bundled sample)")
    parser.add_argument("--sizes", nargs="+", default=["native", f"{LARGE[0]}x{LARGE[1]}"],
                        help="'native' and/or WxH to resize the smear to (default: native 2592x1944)")
    parser.add_argument("--methods", nargs="+", default=["gradcam", "integrated_gradients"])
    parser.add_argument("--model", default=None, help="cell model (default: the apps' default)")
    parser.add_argument("--cell", type=int, default=0, help="index of the classified cell to explain")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="native size, Grad-CAM only, one repeat")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.methods, args.repeats = ["native"], ["gradcam"], 1

    from leuk import serving

    model = args.model or serving.get_registry().default
    load_before = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, smear, synthetic in _smears(args.smear, args.sizes, Path(scratch)):
            for method in args.methods:
                gradio, cells = gradio_times(smear, model, method, args.cell, args.repeats)
                if not gradio:
                    print(f"{label}: no cell classified, nothing to explain")
                    break
                streamlit = streamlit_times(smear, model, method, args.cell, args.repeats)
                row = {"smear": label, "synthetic": synthetic, "method": method, "cells": cells,
                       "gradio_s": round(statistics.median(gradio), 3),
                       "streamlit_s": round(statistics.median(streamlit), 3)}
                row["ratio"] = round(row["streamlit_s"] / max(row["gradio_s"], 1e-9), 2)
                row["within_target"] = row["ratio"] <= TARGET_RATIO
                rows.append(row)
                print(f"{label}{' [synthetic]' if synthetic else ''} · {method}: Gradio {row['gradio_s']:.2f} s, "
                      f"Streamlit {row['streamlit_s']:.2f} s (ratio {row['ratio']:.2f}, target <= {TARGET_RATIO})",
                      flush=True)
    load_after = load_average()
    print(f"load average before/after: {load_before} / {load_after} (CPU threads: {os.environ.get('OMP_NUM_THREADS')})")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "model": model, "rows": rows,
                                         "threads": os.environ.get("OMP_NUM_THREADS"),
                                         "load_average": [load_before, load_after]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
