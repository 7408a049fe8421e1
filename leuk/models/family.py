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
- **the smear path**: :meth:`ModelFamily.has_segmenter` (whether a model finds cells) and
  :meth:`ModelFamily.cell_mask` (the cells it finds, with its own threshold);
- **its training engine**: :attr:`ModelFamily.engine`, the dotted name of a module with the engine's
  functions (imported when a command needs it, so choosing a family never imports torch training code);
  :meth:`ModelFamily.finetune_refusal` says why Monte Carlo ``finetune`` mode cannot train the family, or ``None``;
- **its training command**: :attr:`ModelFamily.train_command` names the module behind its ``leuk train``
  target(s), :meth:`ModelFamily.train_targets` the targets;
- **what cards and banners say of it** (:mod:`leuk.hub` asks these, never the family's name):
  :meth:`ModelFamily.describe` (its name and architecture, read from a ``config.json``),
  :meth:`ModelFamily.card_backbones`, :attr:`ModelFamily.real_data` / :attr:`ModelFamily.synthetic_data` /
  :attr:`ModelFamily.image_unit`, the card's template, dataset, tags, example image, default protocol and the
  optional sections that apply (:attr:`ModelFamily.card_sections`), which model of a cross-validation summary
  is its own (:meth:`ModelFamily.headline_model`);
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
from typing import Any, Mapping, Optional, Sequence

from leuk.errors import LeukError

__all__ = ["CARD_SECTIONS", "ClassifierView", "FamilyError", "ModelFamily", "preset_title", "register_family",
           "registered_families", "unregister_family"]


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
    #: the dataset layout its presets are trained on by default (``cnmc`` or ``aria``); a bundled demo's card
    #: names a sample of ``assets/samples/<dataset>/``
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

    # ---- what cards and banners say of the family (class attributes; see the methods below) -----------------
    #: what its real and its synthetic training data are called in a banner ("real C-NMC cells")
    real_data: str = "real data"
    synthetic_data: str = "synthetic data"
    #: what one image of its data is ("cells", "images")
    image_unit: str = "images"
    #: the model card's Jinja template: a file name in ``model_cards/`` or an absolute path
    card_template: str = "generic.md.j2"
    #: the dataset a card's ``model-index`` names (and its ``synthetic-`` twin when the data was synthetic)
    card_dataset_name: str = "unspecified dataset"
    card_dataset_type: str = "unspecified"
    #: the family's own card tags (the common leukemia/microscopy tags come first)
    card_tags: tuple[str, ...] = ()
    #: the image file a Hub card's loading snippet names (a bundled demo's card names a file of
    #: ``assets/samples/<dataset>/``)
    example_image: str = "image.png"
    #: the evaluation protocol a card names when the records say none ("patient"), or ``None``
    default_protocol: Optional[str] = None
    #: the optional card sections that apply to the family's models (a subset of :data:`CARD_SECTIONS`)
    card_sections: frozenset[str] = frozenset()
    #: dotted name of the module behind the family's ``leuk train`` target(s): ``add_target_arguments(parser)``,
    #: ``run_target(args) -> int`` and an optional one-line ``HELP`` (imported only when ``leuk train`` runs);
    #: ``""``: the family has no ``leuk train`` target
    train_command: str = ""

    # ---- presets and processor ------------------------------------------------------------------------
    def __init__(self) -> None:
        self._presets: list[str] = []
        self._descriptions: dict[str, str] = {}

    def add_preset(self, name: str, description: str = "") -> None:
        """Called by :func:`leuk.models.register_preset` for each preset of the family."""
        if name not in self._presets:
            self._presets.append(name)
        self._descriptions[name] = description

    def remove_preset(self, name: str) -> None:
        """Called by :func:`leuk.models.unregister_preset`."""
        self._presets = [other for other in self._presets if other != name]
        self._descriptions.pop(name, None)

    def preset_description(self, name: str) -> str:
        """The one-line description the preset was registered with (``""`` when none)."""
        return self._descriptions.get(name, "")

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

    # ---- a family whose models find cells (the smear path) -------------------------------------------------
    def has_segmenter(self, model: Any) -> bool:
        """Whether ``model`` carries a cell segmenter that :meth:`cell_mask` can run (``False`` by default)."""
        return False

    def cell_mask(self, model: Any, pixel_values: Any, size: Optional[tuple[int, int]] = None) -> Any:
        """The cells ``model``'s segmenter finds in one preprocessed ``(1, C, H, W)`` image, as a ``(height,
        width)`` bool numpy array at ``size`` (``(height, width)``; default the input's): the model's own
        probabilities and threshold, the mask its phase view splits into cells. Families without a segmenter
        raise :class:`FamilyError`."""
        raise FamilyError(f"{self.title} has no cell segmenter")

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

    # ---- its training command ---------------------------------------------------------------------------
    def train_targets(self) -> dict[str, Optional[str]]:
        """``leuk train`` target name -> its one-line help (``None``: the command module's ``HELP``); the default is
        one target named after the family (``hybridcn-nas``), none without :attr:`train_command`."""
        return {self.model_type.replace("_", "-"): None} if self.train_command else {}

    def train_target_defaults(self, target: str) -> dict[str, Any]:
        """Argument defaults ``leuk train`` sets for ``target`` (e.g. the preset a per-preset target trains)."""
        return {}

    # ---- what cards and banners say ---------------------------------------------------------------------
    def describe(self, config: Mapping[str, Any], backbones: list[str]) -> tuple[str, Optional[str]]:
        """(name, one-line architecture or ``None``) of a saved model, from its ``config.json`` and the backbones
        it names: by default the family's title with the variant of the preset it was trained as."""
        return preset_title(self.title or self.model_type or "model", self.model_type, config), None

    def card_backbones(self, config: Mapping[str, Any], backbones: list[str]) -> list[str]:
        """The backbones a card lists (by default those the config names)."""
        return backbones

    def headline_model(self, names: Sequence[str]) -> Optional[str]:
        """Which model of a ``cross_validation`` summary (its models by name: the family's own and the baselines run
        on the same folds) is the family's own, whose figure a banner and a card headline: by default the first
        name that begins with the family's :attr:`title`; ``None`` when none does."""
        return next((name for name in names if self.title and name.startswith(self.title)), None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_type!r})"


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Register ``family`` under its ``model_type`` (registering the same type again replaces it)."""
    if not family.model_type:
        raise ValueError("a model family needs a model_type")
    _FAMILIES[family.model_type] = family
    return family


def unregister_family(model_type: str) -> Optional[ModelFamily]:
    """Remove the family registered under ``model_type`` (a test's toy family); returns it, or ``None``."""
    return _FAMILIES.pop(model_type, None)


def registered_families() -> dict[str, ModelFamily]:
    """The families registered so far, by ``model_type`` (see :func:`leuk.models.list_families`)."""
    return dict(_FAMILIES)


#: The optional sections of a model card a family may ask for (:attr:`ModelFamily.card_sections`):
#: ``backbone_note`` (why a backbone departs from the paper's), ``comparison`` (the shipped recipe beside the
#: others run on the same folds), ``aria_protocols`` (image-level and file-number-block folds, the
#: segmentation reference).
CARD_SECTIONS = frozenset({"backbone_note", "comparison", "aria_protocols"})


def preset_title(title: str, model_type: str, config: Mapping[str, Any]) -> str:
    """``title`` with the variant of the preset a config records (``training_protocol.preset``):
    ``HybridCN-NAS lite`` for ``hybridcn-nas-lite``. A preset name is the family's name with an optional variant;
    runs before the preset names recorded the variant alone (``lite``; ``paper`` for the full model)."""
    protocol = config.get("training_protocol") if isinstance(config.get("training_protocol"), Mapping) else {}
    preset = protocol.get("preset")
    if not isinstance(preset, str):
        return title
    base = model_type.replace("_", "-")
    variant = preset[len(base) + 1:] if preset.startswith(base + "-") else "" if preset in (base, "paper") else preset
    return f"{title} {variant}" if variant else title
