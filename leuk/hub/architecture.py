"""What a saved model is, read from its config: backbones, the weights they started from, the input size and the
exact parameter count (its name and architecture line are its family's: ``ModelFamily.describe``). Used by the
cards and by the training summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from leuk.hub.card_metrics import is_number, read_json_file
from leuk.hub.loader import HUB_ID_PATTERN

__all__ = ["backbone_sources", "base_models", "config_backbones", "count_parameters_in_folder",
           "folder_image_size", "timm_hub_id"]


def timm_hub_id(backbone: str | None) -> str | None:
    """The Hub repo of a timm backbone's default pretrained weights (``timm/<arch>.<tag>``), per timm itself."""
    if not backbone:
        return None
    try:
        import timm.models

        config = timm.models.get_pretrained_cfg(backbone)
    except Exception:  # unknown architecture: no base model to name
        return None
    hub_id = getattr(config, "hf_hub_id", None) if config is not None else None
    return hub_id or None


def config_backbones(config: Mapping[str, Any]) -> list[str]:
    """The backbone architectures a model config names (each once, in order)."""
    names = []
    for key, value in config.items():
        if isinstance(value, str) and "backbone" in key and not key.endswith(("_kwargs", "_tag", "_source")):
            names.append(value)
    return list(dict.fromkeys(names))


def backbone_sources(config: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """(whether the config records backbone initialisation, the recorded sources): keys such as
    ``pretrained_backbone_source`` hold e.g. ``"timm/arch.tag (timm ImageNet weights)"`` or ``None``."""
    keys = [key for key in config if "pretrained" in key and key.endswith("source")]
    values = [config[key] for key in keys if isinstance(config[key], str) and config[key].strip()]
    return bool(keys), values


def base_models(config: Mapping[str, Any], backbones: list[str]) -> str | list[str] | None:
    """Hub ids the weights were initialised from; ``None`` when the config says the backbone started random.

    Without any record, the timm default pretrained weights of each backbone are named (per timm)."""
    recorded, sources = backbone_sources(config)
    if recorded:
        hub_ids = [source.split()[0] for source in sources if HUB_ID_PATTERN.match(source.split()[0])]
    else:
        hub_ids = [hub_id for hub_id in map(timm_hub_id, backbones) if hub_id]
    hub_ids = list(dict.fromkeys(hub_ids))
    return hub_ids[0] if len(hub_ids) == 1 else (hub_ids or None)


def folder_image_size(model_dir: Path, config: Mapping[str, Any]) -> str | None:
    """The input size a saved folder's processor resizes to (``"300 x 300"``), else the config's ``image_size``."""
    processor_path = model_dir / "preprocessor_config.json"
    if processor_path.is_file():
        size = read_json_file(processor_path, "preprocessor config").get("size")
        if isinstance(size, Mapping) and size:
            return " x ".join(str(size[k]) for k in ("height", "width", "shortest_edge") if k in size)
        if is_number(size):
            return f"{size} x {size}"
    return str(config["image_size"]) if "image_size" in config else None


def count_parameters_in_folder(model_dir: str | Path) -> int:
    """Exact parameter count of a saved model (built through the loader, weights and all)."""
    from leuk.hub.loader import _load_from_folder

    model, _ = _load_from_folder(Path(model_dir), "cpu")
    return sum(p.numel() for p in model.parameters())
