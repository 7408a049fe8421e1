"""Explanations inside multi-branch, feature-selecting, attention-based models (HybridCN-NAS).

Generic tools that take modules and tensors, not a model class:

- :func:`gradcam_per_layer`: Grad-CAM of several layers (one per backbone branch) from ONE forward and
  ONE backward pass (Captum's :class:`~captum.attr.LayerGradCam` takes one layer per call, i.e. one full
  forward/backward of every branch per layer). Same formula as Captum: ReLU(sum_c mean_hw(dy/dA) * A).
- :func:`feature_attributions`: Integrated Gradients on a classifier's input (the selected features or
  tokens): which features drove the call.
- :func:`capture_attention`: the attention weights of every ``nn.MultiheadAttention`` in a module during
  one forward pass (per head, not averaged).
- :func:`branch_layers` finds a model's per-branch feature-map layers and :func:`explain_hybrid` puts the
  three together for HybridCN-NAS (``leuk.models.hybridcn_nas``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients
from torch import Tensor, nn

from leuk.explain._util import ExplainError
from leuk.explain.model_view import branch_layers, class_labels, eval_mode, resolve_target, unwrap_model
from leuk.models.outputs import LogitsOnly


def _first_tensor(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, Tensor):
                return item
    raise ExplainError(f"layer output of type {type(output).__name__} holds no tensor")


@dataclass
class LayerCams:
    """Grad-CAM maps of several layers for one image and one target class.

    ``maps[name]``: H x W float32 at the input's size (bilinear, non-negative); ``layer_maps[name]``: the
    map at the layer's own resolution; ``logits``: the forward pass's logits (1 x classes).
    """

    maps: dict[str, np.ndarray]
    layer_maps: dict[str, np.ndarray]
    target: int
    logits: Tensor


@contextlib.contextmanager
def _capture_outputs(layers: Mapping[str, nn.Module]) -> Iterator[dict[str, Tensor]]:
    captured: dict[str, Tensor] = {}

    def hook_for(name: str):
        def store(module: nn.Module, args: Any, output: Any) -> None:
            captured[name] = _first_tensor(output)

        return store

    handles = [layer.register_forward_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def gradcam_per_layer(
    model: Any,
    pixel_values: Tensor,
    layers: Mapping[str, nn.Module],
    *,
    target: Union[int, str, None] = None,
) -> LayerCams:
    """Grad-CAM of every layer in ``layers`` (name -> module with a N x C x h x w output) for one image.

    One forward pass (which also fixes the target when ``target`` is None) and one backward pass for all
    layers. A layer that does not influence the target gets an all-zero map.
    """
    if not layers:
        raise ExplainError("gradcam_per_layer needs at least one layer")
    net = unwrap_model(model)
    forward = LogitsOnly(net)
    x = torch.as_tensor(pixel_values).float()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ExplainError(f"gradcam_per_layer takes one image (1 x C x H x W), got shape {tuple(x.shape)}")
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    # the input needs a gradient so that the layers' outputs are in the graph even with frozen weights
    x = x.to(device).requires_grad_(True)
    labels = {int(k): str(v) for k, v in (getattr(getattr(net, "config", None), "id2label", None) or {}).items()}
    with eval_mode(net), torch.enable_grad(), _capture_outputs(layers) as outputs:
        logits = forward(x)
        missing = sorted(set(layers) - set(outputs))
        if missing:
            raise ExplainError(f"layer(s) {', '.join(missing)} did not run in the forward pass")
        index = resolve_target(target, logits.detach(), labels)
        names = list(layers)
        activations = [outputs[name] for name in names]
        for name, act in zip(names, activations):
            if act.dim() != 4:
                raise ExplainError(f"layer {name!r} gives a {act.dim()}-d output; Grad-CAM needs N x C x h x w")
        grads = torch.autograd.grad(logits[0, index], activations, allow_unused=True)
    maps: dict[str, np.ndarray] = {}
    layer_maps: dict[str, np.ndarray] = {}
    size = tuple(x.shape[-2:])
    for name, act, grad in zip(names, activations, grads):
        if grad is None:
            cam = torch.zeros_like(act[:, :1])
        else:
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * act).sum(dim=1, keepdim=True))
        cam = cam.detach().float()
        layer_maps[name] = cam[0, 0].cpu().numpy()
        maps[name] = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
    return LayerCams(maps=maps, layer_maps=layer_maps, target=index, logits=logits.detach())


@dataclass
class FeatureAttribution:
    """Integrated-Gradients attribution of each classifier input (feature or token) to the target class.

    ``values``: one number per feature (tokens: summed over the embedding); ``order``: indices sorted by
    value, most supporting first; ``names``: feature names where given; ``delta``: IG completeness gap.
    """

    values: np.ndarray
    order: np.ndarray
    target: int
    names: Optional[list[str]]
    delta: float

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` features that most supported the target, as (name or index, attribution)."""
        picked = self.order[:k]
        return [((self.names[i] if self.names else str(int(i))), float(self.values[i])) for i in picked]


def feature_attributions(
    classifier: nn.Module,
    features: Tensor,
    *,
    target: Union[int, str, None] = None,
    baseline: Optional[Tensor] = None,
    n_steps: int = 50,
    internal_batch_size: Optional[int] = None,
    names: Optional[Sequence[str]] = None,
) -> FeatureAttribution:
    """Which inputs of ``classifier`` drove its call: IG on one sample ``features`` (F, 1 x F or 1 x T x D).

    ``baseline`` defaults to zeros, which after z-scoring is the training mean of every feature.
    """
    x = torch.as_tensor(features).float()
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.shape[0] != 1:
        raise ExplainError(f"feature_attributions takes one sample, got a batch of {x.shape[0]}")
    forward = LogitsOnly(classifier)
    device = next((p.device for p in classifier.parameters()), torch.device("cpu"))
    x = x.to(device)
    reference = torch.zeros_like(x) if baseline is None else torch.as_tensor(baseline).to(x).expand_as(x)
    with eval_mode(classifier):
        with torch.no_grad():
            logits = forward(x)
        index = resolve_target(target, logits, {})
        attr, delta = IntegratedGradients(forward).attribute(
            x, baselines=reference, target=index, n_steps=n_steps,
            internal_batch_size=internal_batch_size, return_convergence_delta=True,
        )
    values = attr.detach().float()[0]
    if values.dim() > 1:
        values = values.reshape(values.shape[0], -1).sum(dim=1)
    values_np = values.cpu().numpy()
    if names is not None and len(names) != len(values_np):
        raise ExplainError(f"{len(names)} feature names for {len(values_np)} features")
    return FeatureAttribution(
        values=values_np,
        order=np.argsort(-values_np, kind="stable"),
        target=index,
        names=list(names) if names is not None else None,
        delta=float(delta.abs().max()),
    )


def capture_attention(module: nn.Module, *args: Any, **kwargs: Any) -> tuple[dict[str, np.ndarray], Any]:
    """Run ``module(*args, **kwargs)`` once and return ``({name: weights}, output)``.

    ``weights`` has shape N x heads x L x S for every ``nn.MultiheadAttention`` inside ``module``
    (asked for per head, whatever the caller's ``need_weights``); a module called several times keeps its
    last call. Attention modules of other types are not seen (expose their weights on the model instead).
    """
    captured: dict[str, np.ndarray] = {}

    def ask_for_weights(mha: nn.Module, call_args: tuple, call_kwargs: dict) -> tuple[tuple, dict]:
        positional = list(call_args)
        # forward(query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, ...)
        if len(positional) > 4:
            positional[4] = True
        else:
            call_kwargs["need_weights"] = True
        if len(positional) > 6:
            positional[6] = False
        else:
            call_kwargs["average_attn_weights"] = False
        return tuple(positional), call_kwargs

    def store_for(name: str):
        def store(mha: nn.Module, call_args: Any, output: Any) -> None:
            if isinstance(output, tuple) and len(output) > 1 and isinstance(output[1], Tensor):
                weights = output[1].detach().float()
                if weights.dim() == 3:  # unbatched input: heads x L x S
                    weights = weights.unsqueeze(0)
                captured[name] = weights.cpu().numpy()

        return store

    handles = []
    for name, sub in module.named_modules():
        if isinstance(sub, nn.MultiheadAttention):
            handles.append(sub.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
            handles.append(sub.register_forward_hook(store_for(name or "attention")))
    if not handles:
        raise ExplainError(f"{type(module).__name__} has no nn.MultiheadAttention module to read weights from")
    try:
        with eval_mode(module), torch.no_grad():
            output = module(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return captured, output


@dataclass
class HybridExplanation:
    """Why a multi-branch, feature-selecting classifier made its call on one image.

    ``branch_maps``: Grad-CAM per branch (H x W at the input's size); ``features``: IG over the selected
    features the classifier receives (names from the model where it has them) and ``token_attributions``
    (the same summed per token); ``attention``: per attention module, N x heads x tokens x tokens weights.
    """

    target: int
    label: Optional[str]
    probability: float
    branch_maps: dict[str, np.ndarray]
    features: FeatureAttribution
    token_attributions: Optional[np.ndarray]
    attention: dict[str, np.ndarray]


def explain_hybrid(
    model: Any,
    pixel_values: Tensor,
    *,
    target: Union[int, str, None] = None,
    n_steps: int = 32,
) -> HybridExplanation:
    """Per-branch Grad-CAM, feature attributions and token attention of HybridCN-NAS for one image.

    Asks the model's family (:meth:`leuk.models.family.ModelFamily.classifier_view`) for the classifier and
    the input it receives (returning logits, or ``(logits, attentions)``), and for the branch layers. The
    classifier's logits are not divided by the temperature; IG attributions are scaled by it, their ranking
    is not.
    """
    from leuk.models import FamilyError, family_of

    net = unwrap_model(model)
    try:
        family = family_of(net)
    except FamilyError as err:
        raise ExplainError(f"explain_hybrid needs a model of a leuk family: {err}") from err
    layers = branch_layers(net)
    if not layers:
        raise ExplainError(f"{type(net).__name__} exposes no branch feature maps for Grad-CAM")
    cams = gradcam_per_layer(net, pixel_values, layers, target=target)
    x = torch.as_tensor(pixel_values).float()
    x = (x.unsqueeze(0) if x.dim() == 3 else x).to(cams.logits.device)
    try:
        with eval_mode(net), torch.no_grad():
            view = family.classifier_view(net, x)
    except FamilyError as err:
        raise ExplainError(f"explain_hybrid needs a feature-selecting model such as HybridCN-NAS: {err}") from err
    selected, classifier = view.inputs, view.module
    features = feature_attributions(classifier, selected, target=cams.target, n_steps=n_steps, names=view.names)
    tokens = None
    if view.token_size and features.values.size % int(view.token_size) == 0:
        tokens = features.values.reshape(-1, int(view.token_size)).sum(axis=1)
    attention: dict[str, np.ndarray] = {}
    if any(isinstance(m, nn.MultiheadAttention) for m in classifier.modules()):
        attention, _ = capture_attention(classifier, selected)
    labels = class_labels(net)
    return HybridExplanation(
        target=cams.target,
        label=labels.get(cams.target),
        probability=float(torch.softmax(cams.logits.float(), dim=-1)[0, cams.target]),
        branch_maps=cams.maps,
        features=features,
        token_attributions=tokens,
        attention=attention,
    )


__all__ = [
    "FeatureAttribution",
    "HybridExplanation",
    "LayerCams",
    "branch_layers",
    "capture_attention",
    "explain_hybrid",
    "feature_attributions",
    "gradcam_per_layer",
]
