"""What the apps show is decided once, in :mod:`leuk.serving` and :mod:`leuk.explain`; the apps import it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from leuk import explain, serving
from leuk.serving import explanations

ROOT = Path(__file__).resolve().parents[1]
APPS = [ROOT / "app.py", *sorted((ROOT / "streamlit_app").rglob("*.py"))]


def test_the_apps_define_no_modes_segmenter_labels_or_cell_model_fallback():
    for path in APPS:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(MODES|SEGMENTER_CHOICES|SEGMENTERS)\s*=", text, re.M), path
        assert "cell_model_names()" not in text and '"Single cells"' not in text, path


def test_cell_model_for_falls_back_to_the_first_cell_model():
    registry = serving.ModelRegistry(["demo:hybridcn-nas-lite", "demo:efficientnet-se"], device="cpu")
    assert serving.cell_model_for("demo:hybridcn-nas-lite", registry) == "demo:efficientnet-se"
    assert serving.cell_model_for("demo:efficientnet-se", registry) == "demo:efficientnet-se"
    assert serving.SEGMENTER_CHOICES == [(label, value) for value, label in serving.SEGMENTER_LABELS.items()]


def test_method_names_are_leuk_explains():
    assert sorted(explanations.EXPLAIN_METHODS) == sorted(explain.METHODS)
    assert serving.METHOD_TITLES is explain.METHOD_TITLES
    assert explanations.BASELINE_METHODS is explain.BASELINE_METHODS
    assert sorted(explanations.EXPLAIN_BASELINES) == sorted(explain.BASELINES)
    assert explain.canonical_method("IG") == "integrated_gradients"


def test_serving_reads_the_method_names_without_torch():
    probe = "import sys, leuk.serving, leuk.explain; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT)
