"""Registry of model presets and families: ``create_model(name, **config_overrides)``, ``list_models()``,
``count_parameters(model)``, ``get_family``/``family_of``/``family_of_preset``/``list_families``.

This module knows no family. A model family is a subpackage of ``leuk.models`` whose ``__init__`` registers its Auto classes, its :class:`leuk.models.family.ModelFamily`
(``register_family``) and calls ``register_preset(name, factory, family=...)``; ``list_models()``,
``import_model_families()``, ``get_family`` and ``create_model`` (for a name not yet registered) import every
such subpackage once. The preset registry is the one definition of preset names: the CLI, the apps and the
docs list them from here.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn
from transformers import PreTrainedModel

from leuk.errors import LeukError, ModelNotFoundError
from leuk.models.family import FamilyError, ModelFamily, register_family, registered_families, unregister_family


class ModelConfigError(LeukError, ValueError):
    """A preset option that does not exist or has an invalid value."""


class PresetFactory(Protocol):
    """Builds a model: ``factory(pretrained=False, **config_overrides)``."""

    def __call__(self, *, pretrained: bool | str = False, **config_overrides: Any) -> PreTrainedModel: ...


@dataclass(frozen=True)
class Preset:
    """A named way to build a model."""

    name: str
    factory: PresetFactory
    description: str = ""
    #: ``model_type`` of the preset's family (:class:`leuk.models.family.ModelFamily`)
    family: str = ""


_PRESETS: dict[str, Preset] = {}
_families_imported = False


def register_preset(name: str, factory: PresetFactory, *, description: str = "", replace: bool = False,
                    family: ModelFamily | None = None) -> None:
    """Add a preset; ``factory(pretrained=..., **config_overrides)`` must return a ``PreTrainedModel``;
    ``family`` is the registered family it belongs to."""
    if name in _PRESETS and not replace:
        raise ValueError(f"model preset {name!r} is already registered")
    _PRESETS[name] = Preset(name, factory, description, family.model_type if family is not None else "")
    if family is not None:
        family.add_preset(name, description)


def unregister_preset(name: str) -> Preset | None:
    """Remove the preset ``name`` (a test's toy preset) from the registry and from its family; returns it, or
    ``None`` when there was none."""
    preset = _PRESETS.pop(name, None)
    if preset is not None and preset.family in registered_families():
        registered_families()[preset.family].remove_preset(name)
    return preset


def import_model_families() -> None:
    """Import every model-family subpackage of ``leuk.models`` once, so that its presets and Auto classes
    are registered."""
    global _families_imported
    if _families_imported:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}")
    _families_imported = True


def list_models() -> list[str]:
    """Names of all model presets, sorted."""
    import_model_families()
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``ModelNotFoundError`` (with close matches) when there is none."""
    if name not in _PRESETS:
        import_model_families()
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, _PRESETS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"unknown model preset {name!r}{hint} (known: {', '.join(sorted(_PRESETS))})")
    return _PRESETS[name]


def list_families() -> list[ModelFamily]:
    """Every registered model family, by ``model_type``."""
    import_model_families()
    return [family for _, family in sorted(registered_families().items())]


def get_family(model_type: str) -> ModelFamily:
    """The family registered under ``model_type``; :class:`FamilyError` when there is none."""
    families = registered_families()
    if model_type not in families:
        import_model_families()
        families = registered_families()
    if model_type not in families:
        raise FamilyError(f"no leuk model family {model_type!r} (known: {', '.join(sorted(families))})")
    return families[model_type]


def family_of(model: Any) -> ModelFamily:
    """The family of a model, a configuration or a ``model_type`` string (wrappers with ``.module`` or
    ``._orig_mod`` are unwrapped)."""
    if isinstance(model, str):
        return get_family(model)
    for attribute in ("module", "_orig_mod"):
        inner = getattr(model, attribute, None)
        if isinstance(inner, nn.Module) and hasattr(inner, "config"):
            model = inner
    config = getattr(model, "config", model)
    model_type = getattr(config, "model_type", None)
    if not model_type:
        raise FamilyError(f"{type(model).__name__} is not a model of a leuk family (no config.model_type)")
    return get_family(model_type)


def family_of_preset(name: str) -> ModelFamily:
    """The family of preset ``name``."""
    return get_family(get_preset(name).family)


def create_model(name: str, *, pretrained: bool | str = False, **config_overrides: Any) -> PreTrainedModel:
    """Build the preset ``name`` with random weights, or with ImageNet backbone weights when ``pretrained`` is
    ``True`` or a source of :func:`leuk.models.pretrained.load_backbone_weights` (``"auto"``, ``"hub"``,
    ``"package"``, a file): ``True`` means ``"auto"``, an installed weights package first, else the Hub.

    ``config_overrides`` replace configuration values, e.g. ``create_model("efficientnet-se", image_size=224)``.
    """
    return get_preset(name).factory(pretrained=pretrained, **config_overrides)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Exact number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


#: Names the families' packages define, handed out from here for convenience and imported when first asked for
#: (the packages register their presets through this module, so they cannot be imported at the top of it).
_FAMILY_CLASSES = {
    "EfficientNetSEConfig": "leuk.models.efficientnet_se",
    "EfficientNetSEForImageClassification": "leuk.models.efficientnet_se",
    "EFFICIENTNET_SE": "leuk.models.efficientnet_se.presets",
    "efficientnet_se_factory": "leuk.models.efficientnet_se.presets",
    "HybridCNNASConfig": "leuk.models.hybridcn_nas",
    "HybridCNNASForImageClassification": "leuk.models.hybridcn_nas",
    "HybridCNNASImageProcessor": "leuk.models.hybridcn_nas",
}


def __getattr__(name: str) -> Any:
    if name in _FAMILY_CLASSES:
        return getattr(importlib.import_module(_FAMILY_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_FAMILY_CLASSES,
    "FamilyError",
    "ModelConfigError",
    "ModelFamily",
    "Preset",
    "count_parameters",
    "create_model",
    "family_of",
    "family_of_preset",
    "get_family",
    "get_preset",
    "import_model_families",
    "list_families",
    "list_models",
    "register_family",
    "register_preset",
    "unregister_family",
    "unregister_preset",
]
