"""The one way leuk writes a model folder: ``save_pretrained`` of model and processor, weights optionally
stored in half precision while the config keeps saying float32.

Half-precision storage halves the download; but transformers builds the model in the config's ``dtype``,
so a config saying ``float16`` gives researchers a half-precision model that fails on float32 CPU inputs
("Input type (torch.FloatTensor) and weight type (torch.HalfTensor) should be the same"). The stored
config therefore names float32: ``from_pretrained`` upcasts the weights on load, and the snippet
``model(**processor(image, return_tensors="pt"))`` runs as printed.

The remote code a folder carries (the family's standalone ``<role>_<model_type>.py`` files: configuration,
modeling, image processing and their helpers) is copied byte for byte from ``leuk/models/<model_type>/`` by
:func:`copy_remote_code`, the one function that writes it; :func:`save_model_folder` calls it after
``save_pretrained``, and it re-copies the code of an existing folder whose source has moved on.

It stands on the models floor (it needs only the families' files), so the training engines save through it
without reaching up to :mod:`leuk.hub`; :mod:`leuk.hub.save` hands out the same functions.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["COMPUTE_DTYPE", "STORAGE_DTYPES", "copy_remote_code", "remote_code_sources", "save_model_folder"]

STORAGE_DTYPES = ("float32", "float16", "bfloat16")
#: The dtype every saved config names (the dtype the model computes in after ``from_pretrained``).
COMPUTE_DTYPE = "float32"


def save_model_folder(model: Any, processor: Any, out_dir: str | Path, *, dtype: str = "float32") -> Path:
    """Save ``model`` (safetensors, weights stored as ``dtype``) and ``processor`` to ``out_dir``; the
    config names :data:`COMPUTE_DTYPE`. The model passed in is left unchanged."""
    import torch

    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    to_save = model if dtype == "float32" else copy.deepcopy(model).to(getattr(torch, dtype))
    to_save.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    copy_remote_code(out_dir)
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("dtype", COMPUTE_DTYPE) != COMPUTE_DTYPE:
        config["dtype"] = COMPUTE_DTYPE
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir


def remote_code_sources(model_type: str) -> list[Path]:
    """The standalone files of family ``model_type`` in ``leuk/models/<model_type>/``: every
    ``<role>_<model_type>.py`` (they import nothing from leuk, so they run on the Hub without it)."""
    package = Path(__file__).resolve().parent / model_type
    sources = sorted(package.glob(f"*_{model_type}.py"))
    if not sources:
        raise ValueError(f"leuk/models has no standalone files of model type {model_type!r}")
    return sources


def copy_remote_code(folder: str | Path) -> list[Path]:
    """Copy the remote code of the model saved in ``folder`` (its ``config.json`` names the ``model_type``)
    from leuk/models, byte for byte, over whatever copies the folder holds; returns the files written."""
    folder = Path(folder)
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"]
    written = []
    for source in remote_code_sources(model_type):
        target = folder / source.name
        shutil.copyfile(source, target)
        written.append(target)
    return written
