"""Untrusted files: weights only from safetensors, every torch.load restricted to tensors, no pickles shipped."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO / "app.py", *(REPO / "leuk").rglob("*.py"), *(REPO / "streamlit_app").rglob("*.py"),
           *(REPO / "train").rglob("*.py")]


def _calls(tree: ast.AST, dotted: str):
    module, name = dotted.rsplit(".", 1)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == module:
            yield node


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree, "torch.load"):
            flags = {kw.arg: kw.value for kw in call.keywords}
            value = flags.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert not offenders, offenders


def test_no_pickle_loading_and_no_pickled_weights_in_assets():
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not list(_calls(tree, "pickle.load")) and not list(_calls(tree, "pickle.loads")), path
    shipped = [p for p in (REPO / "assets").rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}]
    assert not shipped, shipped
    weights = list((REPO / "assets" / "demo_models").rglob("*.safetensors"))
    assert weights, "demo models ship safetensors weights"
