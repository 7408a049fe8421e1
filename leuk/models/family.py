"""The contract every model family implements once: :class:`ModelFamily`.

A family is the set of presets that share one configuration class, one model class, one image processor
and one training engine (EfficientNet-SE with its baselines; HybridCN-NAS). Code outside a family's own
files -- ``leuk train``/``evaluate``/``montecarlo``/``explain``, the serving layer, the Hub loader -- reaches
a model only through this contract, never through the family's internals:

- **presets and processor**: :meth:`ModelFamily.presets` (the registry of :mod:`leuk.models` is the one
  definition of preset names), :meth:`ModelFamily.processor` (the one preprocessing of training and inference);
- **the timm-style model interface**: :meth:`ModelFamily.forward_features` (what the backbone(s) compute),
  :meth:`ModelFamily.forward_head` (``pre_logits=True``: the pooled feature vector a light head, a Monte
  Carlo head or the out-of-distribution detector reads; ``False``: raw logits, before the temperature),
  :meth:`ModelFamily.branch_layers` (the layers explanations may hook), :meth:`ModelFamily.classifier_view`
  (for feature-selecting families: the classifier and the input it receives);
- **its training engine**: :attr:`ModelFamily.engine`, the dotted name of a module with the engine's
  functions (imported when a command needs it, so choosing a family never imports torch training code);
  :meth:`ModelFamily.finetune_refusal` says why Monte Carlo ``finetune`` mode cannot train the family, or ``None``;
- **one record schema** for every family: ``training_split.json`` and ``eval_results.json`` are read and
  written by :mod:`leuk.records`.

Families register themselves (:func:`register_family`) when their package is imported; look them up with
:func:`leuk.models.get_family`, :func:`leuk.models.family_of` (a model, config or ``model_type``) and
:func:`leuk.models.family_of_preset`. This module imports nothing of leuk but its errors.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Optional

from leuk.errors import LeukError

__all__ = ["ClassifierView", "FamilyError", "ModelFamily", "register_family", "registered_families"]


class FamilyError(LeukError, ValueError):
    """A model family that is not registered, or that cannot do what was asked."""


@dataclass
class ClassifierView:
    """What a feature-selecting family's classifier sees: ``module(inputs)`` returns logits (or
    ``(logits, attentions)``); ``names`` are the input columns' names (``None`` when unnamed); ``token_size``
    groups them into tokens (``None`` without tokens)."""

    module: Any
    inputs: Any
    names: Optional[list[str]] = None
    token_size: Optional[int] = None


class ModelFamily:
    """Base class of a family; subclasses set the class attributes and implement the model interface."""

    #: the ``model_type`` of the family's configuration (and the name the family is registered under)
    model_type: str = ""
    #: the family's name for people ("EfficientNet-SE")
    title: str = ""
    #: the dataset layout its presets are trained on by default (``cnmc`` or ``aria``)
    dataset: str = "cnmc"
    #: dotted module name of the training engine (``leuk.training.<...>``)
    engine: str = ""
    #: ``module:Class`` of the family's image processor (imported when asked for)
    processor_path: str = ""
    #: what :meth:`pooled_features` returns, in words (an out-of-distribution detector records it)
    pooled_description: str = ""
    #: whether the family's models show their phases on one image (``model.stages(image, processor=, top_k=)``:
    #: preprocessing, segmentation, cells, top features), which the serving layer's pipeline view draws
    has_phases: bool = False

    # ---- presets and processor ------------------------------------------------------------------------
    def __init__(self) -> None:
        self._presets: list[str] = []

    def add_preset(self, name: str) -> None:
        """Called by :func:`leuk.models.register_preset` for each preset of the family."""
        if name not in self._presets:
            self._presets.append(name)

    def presets(self) -> list[str]:
        """The family's preset names as registered with :func:`leuk.models.register_preset`, sorted."""
        return sorted(self._presets)

    def processor_class(self) -> type:
        module, _, name = self.processor_path.partition(":")
        return getattr(importlib.import_module(module), name)

    def processor(self, config: Any) -> Any:
        """The family's image processor for ``config`` (its default settings)."""
        return self.processor_class().from_model_config(config)

    # ---- the model interface ----------------------------------------------------------------------------
    def forward_features(self, model: Any, pixel_values: Any) -> Any:
        """The backbone output for ``pixel_values`` (a feature map, or a feature vector per image)."""
        raise NotImplementedError

    def forward_head(self, model: Any, features: Any, *, pre_logits: bool = False) -> Any:
        """``pre_logits=True``: the ``(N, D)`` pooled feature vector of :meth:`forward_features`' output;
        else the raw ``(N, num_labels)`` logits (not divided by the temperature)."""
        raise NotImplementedError

    def pooled_features(self, model: Any, pixel_values: Any) -> Any:
        """``forward_head(forward_features(x), pre_logits=True)`` as ``(N, D)`` float32."""
        pooled = self.forward_head(model, self.forward_features(model, pixel_values), pre_logits=True)
        return pooled.reshape(len(pooled), -1).float()

    def branch_layers(self, model: Any) -> dict[str, Any]:
        """The layers whose outputs are each branch's final feature map, by branch name (``{}``: one branch)."""
        return {}

    def classifier_view(self, model: Any, pixel_values: Any) -> ClassifierView:
        """The classifier and its input for a feature-selecting family; others raise :class:`FamilyError`."""
        raise FamilyError(f"{self.title} has no separate feature-selecting classifier")

    def load_pretrained(self, model: Any, source: str = "auto") -> str:
        """Fill the model's backbone(s) with ImageNet weights through :mod:`leuk.models.pretrained`
        (``source``: ``auto``, ``hub``, ``package`` or a file); returns where they came from and records it
        in ``config.pretrained_backbone_source``."""
        raise FamilyError(f"{self.title} cannot load ImageNet weights through leuk")

    # ---- the training engine ----------------------------------------------------------------------------
    def engine_module(self) -> ModuleType:
        """The training engine's module (imported now)."""
        if not self.engine:
            raise FamilyError(f"{self.title} has no training engine")
        return importlib.import_module(self.engine)

    def finetune_refusal(self) -> Optional[str]:
        """Why Monte Carlo ``finetune`` mode cannot train this family, or ``None`` when it can."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_type!r})"


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Register ``family`` under its ``model_type`` (registering the same type again replaces it)."""
    if not family.model_type:
        raise ValueError("a model family needs a model_type")
    _FAMILIES[family.model_type] = family
    return family


def registered_families() -> dict[str, ModelFamily]:
    """The families registered so far, by ``model_type`` (see :func:`leuk.models.list_families`)."""
    return dict(_FAMILIES)
