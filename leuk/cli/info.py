"""``leuk info MODEL``: a model's backbone, input size, labels, temperature and exact parameter count.

MODEL is a preset name (``leuk info`` with no MODEL lists them) or a saved model: a ``save_pretrained``
folder, a Hub id or ``demo:<name>``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help="preset name, saved model folder, Hub id or demo:<name> (omit to list the presets)",
    )
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")


def describe(spec: str) -> dict[str, Any]:
    """Facts about a preset (built with random weights) or a saved model (folder, Hub id or ``demo:<name>``,
    loaded with :func:`leuk.hub.load_model`)."""
    from leuk.models import count_parameters, create_model, get_preset, list_models

    # preset names hold neither "/" nor ":", so anything else is a model spec for the one loader
    if spec in list_models() or not (Path(spec).exists() or "/" in spec or ":" in spec):
        get_preset(spec)
        model = create_model(spec, pretrained=False)
        source = "preset, random weights"
    else:
        from leuk.hub import load_model

        model = load_model(spec).model
        source = "saved model"
    config = model.config
    return {
        "model": spec,
        "source": source,
        "model_type": config.model_type,
        "class": type(model).__name__,
        "backbone": _backbone_of(config),
        "image_size": getattr(config, "image_size", None),
        "labels": {int(index): name for index, name in sorted(config.id2label.items())},
        "temperature": getattr(config, "temperature", 1.0),
        "parameters": count_parameters(model),
        "trainable_parameters": count_parameters(model, trainable_only=True),
    }


def _backbone_of(config: Any) -> str | None:
    """``config.backbone``, or the named branches of a multi-backbone model (``branch_a + branch_b``)."""
    if isinstance(getattr(config, "backbone", None), str):
        return config.backbone
    settings = sorted(vars(config).items())
    branches = [value for key, value in settings if key.startswith("branch_") and isinstance(value, str)]
    return " + ".join(branches) or None


def run(args: argparse.Namespace) -> int:
    from leuk.models import get_preset, list_models

    if args.model is None:
        names = list_models()
        if args.json:
            print(json.dumps({name: get_preset(name).description for name in names}, indent=2))
        else:
            width = max(map(len, names))
            for name in names:
                print(f"{name:<{width}}  {get_preset(name).description}")
        return 0
    facts = describe(args.model)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    labels = ", ".join(f"{index}={name}" for index, name in facts["labels"].items())
    rows = [
        ("model", f"{facts['model']} ({facts['source']})"),
        ("type", f"{facts['model_type']} ({facts['class']})"),
        ("backbone", facts["backbone"] or "n/a"),
        ("image size", facts["image_size"] or "n/a"),
        ("labels", labels),
        ("temperature", f"{facts['temperature']:g}"),
        ("parameters", f"{facts['parameters']:,} total, {facts['trainable_parameters']:,} trainable"),
    ]
    for key, value in rows:
        print(f"{key:<12} {value}")
    return 0
