"""Attribution maps for leuk's image classifiers through Captum, behind one entry point.

:func:`explain` computes one method; :func:`explain_many` several at once, sharing what they can (the
forward pass that fixes the target, Grad-CAM inside Guided Grad-CAM). Every :class:`Explanation` carries
an H x W float32 map at the input's size, the target class, timings and its faithfulness numbers.

Methods (``METHODS``):

- ``gradcam``: :class:`captum.attr.LayerGradCam` on the model's final feature map (``get_gradcam_layer()``;
  for EfficientNet-SE the deepest map with at least ``config.gradcam_min_side`` cells a side, so a 96 px
  input is explained on a 6 x 6 map instead of a 3 x 3 one), ReLU, upsampled bilinearly with
  :meth:`captum.attr.LayerAttribution.interpolate`. One backward pass.
- ``guided_gradcam``: guided backpropagation times the (shared) upsampled Grad-CAM, as
  :class:`captum.attr.GuidedGradCam` computes it. Captum's guided backprop only rewrites the gradient of
  ``nn.ReLU`` modules; EfficientNetV2 has none in its backbone (SiLU everywhere), so on leuk's models
  Captum's rule reaches only the SE block and the head and the guided part is nearly a plain gradient
  through the backbone. By default (``guided="all"``) leuk applies the guided rule to every
  rectifier-like activation module (ReLU, SiLU, GELU, Mish, ...): the gradient leaving the activation
  towards its input is clipped at zero, ``max(0, act'(x) * g)``. For ReLU this is exactly Springenberg et
  al.'s rule; for smooth activations it is a generalisation that is not in the original paper.
  ``guided="relu"`` reproduces Captum. ``Explanation.notes`` says how many modules were rewritten.
- ``integrated_gradients``: :class:`captum.attr.IntegratedGradients` (``n_steps``, ``internal_batch_size``)
  from a black image by default (Sundararajan et al.'s choice, and "no cell" for C-NMC's segmented cells on
  black; ``baseline="blur"``, ``"mean"``, ``"zero"`` or a tensor otherwise); the completeness gap is kept
  in ``extras``. On cells segmented onto black, the black baseline credits the whole cell, and random
  weights do so too (:mod:`leuk.explain.evidence`); ``baseline="blur"`` asks which fine structure drove the
  call.
- ``smoothgrad``: :class:`captum.attr.NoiseTunnel` (``nt_type="smoothgrad"``) over
  :class:`captum.attr.Saliency` (signed gradients, like every map here but Grad-CAM: draw them with
  ``sign="absolute"`` for Smilkov et al.'s absolute view) or over Integrated Gradients.
- ``occlusion``: :class:`captum.attr.Occlusion`, a sliding window replaced by the baseline (black).

Attributions are computed on float32 inputs with the model in eval mode (restored afterwards); maps are
summed over colour channels.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from captum.attr import (
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from captum.metrics import sensitivity_max
from torch import Tensor, nn

from leuk.explain._util import ExplainError, seeded
from leuk.explain.guided import guided_activations
from leuk.explain.model_view import (
    branch_layers,
    class_labels,
    eval_mode,
    find_gradcam_layer,
    input_normalization,
    model_dtype_device,
    resolve_target,
    unwrap_model,
)
from leuk.explain.methods import METHOD_OPTIONS, METHODS, canonical_method, resolve_methods  # noqa: F401  (re-exported)
from leuk.explain.twin import FOLD_MAX_PARAMETERS, attribution_twin, compiled_forward  # noqa: F401  (re-exported)
from leuk.models import fusion
from leuk.models.outputs import LogitsOnly, logits_of  # noqa: F401  (logits_of re-exported)
from leuk.explain.faithfulness import (
    Faithfulness,
    deletion_insertion,
    infidelity_score,
    make_baseline,
)

#: Default number of images per forward/backward inside IG, SmoothGrad and occlusion, per device type.
DEFAULT_INTERNAL_BATCH = {"cpu": 8, "cuda": 64}


@contextlib.contextmanager
def _quiet_captum() -> Iterator[None]:
    """Silence Captum's notice that it switched on input gradients (it does so on every call, as intended)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
        yield


# ---------------------------------------------------------------------------------------- explanation
@dataclass
class Explanation:
    """One attribution map and what is needed to trust it.

    ``attribution``: H x W float32 at the input's size (summed over colour channels; Grad-CAM is
    non-negative, the others are signed). ``channels``: the per-channel C x H x W map where the method
    has one. ``timings``: seconds (``forward`` is 0 when the caller's logits were reused).
    """

    method: str
    attribution: np.ndarray
    target: int
    label: Optional[str]
    probability: float
    timings: dict[str, float]
    faithfulness: Optional[Faithfulness]
    notes: list[str] = field(default_factory=list)
    channels: Optional[np.ndarray] = field(default=None, repr=False)
    extras: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        """One line: method, target, probability, time and faithfulness."""
        label = f"{self.label} ({self.target})" if self.label is not None else str(self.target)
        text = f"{self.method}: target {label} p={self.probability:.3f}, {self.timings.get('attribution', 0.0):.2f} s"
        if self.faithfulness is not None:
            text += "; " + self.faithfulness.summary()
        return text


def _as_image_batch(pixel_values: Any) -> Tensor:
    if isinstance(pixel_values, Mapping) or hasattr(pixel_values, "pixel_values"):
        pixel_values = pixel_values["pixel_values"] if isinstance(pixel_values, Mapping) else pixel_values.pixel_values
    x = torch.as_tensor(pixel_values)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ExplainError(
            f"explain takes one image as C x H x W or 1 x C x H x W pixel values, got shape {tuple(x.shape)}"
        )
    return x


def _check_options(opts: Mapping[str, Any]) -> None:
    """Options no method knows are typos: refuse them. Options of methods not asked for are ignored."""
    known = {name for options in METHOD_OPTIONS.values() for name in options}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ExplainError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


class _Attributor:
    """Runs the Captum methods for one model and layer; every method works on a batch of images."""

    def __init__(
        self,
        model: nn.Module,
        layer: Optional[nn.Module],
        internal_batch_size: int,
        opts: Mapping[str, Any],
        *,
        channels_last: bool = False,
        torch_compile: bool = False,
    ) -> None:
        self.model = model
        self.forward = LogitsOnly(model, channels_last=channels_last)
        #: the forward of the methods that hook no layer and rewrite no activation (IG, SmoothGrad, occlusion)
        self.hookless_forward = compiled_forward(model, channels_last) if torch_compile else self.forward
        self.layer = layer
        self.batch = internal_batch_size
        self.opts = opts
        self.notes: dict[str, list[str]] = {}
        self.extras: dict[str, dict[str, Any]] = {}
        self.normalization = input_normalization(model)
        #: logits of the explained image (1 x classes), once known: reused instead of recomputed
        self.reference_logits: Optional[Tensor] = None

    def baseline(self, method: str, x: Tensor, kind: Any) -> Tensor:
        if isinstance(kind, str) and kind == "black" and self.normalization is None:
            self.notes.setdefault(method, []).append(
                "the model records no image_mean/image_std: the 'black' baseline is the zero input "
                "(black only for inputs in [0, 1])"
            )
            kind = "zero"
        return make_baseline(x, kind, normalization=self.normalization)

    def option(self, method: str, name: str) -> Any:
        value = self.opts.get(name)
        return METHOD_OPTIONS[method][name] if value is None else value

    def gradcam(self, x: Tensor, target: int) -> tuple[Tensor, Tensor]:
        """Upsampled (N x 1 x H x W) and layer-resolution Grad-CAM."""
        x = x.detach()
        cam = LayerGradCam(self.forward, self.layer).attribute(x, target=target, relu_attributions=True)
        cam = cam[0] if isinstance(cam, tuple) else cam
        if cam.dim() != 4:
            raise ExplainError(
                f"Grad-CAM layer {type(self.layer).__name__} gives a {cam.dim()}-d output; it needs a spatial "
                "feature map (N x C x h x w): pass layer= a convolutional layer"
            )
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear"), cam

    def guided_gradcam(self, x: Tensor, target: int, cam: Optional[Tensor] = None) -> Tensor:
        x = x.detach()
        if cam is None:
            cam = self.gradcam(x, target)[0]
        which = self.option("guided_gradcam", "guided")
        with guided_activations(self.model, which) as rewritten:
            guided = Saliency(self.forward).attribute(x, target=target, abs=False)
        note = f"guided rule applied to {rewritten} activation module(s) ({which})"
        if rewritten == 0:
            note += "; none found, so the guided part is the plain input gradient"
        self.notes.setdefault("guided_gradcam", []).append(note)
        return guided * cam

    def integrated_gradients(self, x: Tensor, target: int) -> Tensor:
        baseline = self.baseline("integrated_gradients", x, self.option("integrated_gradients", "baseline"))
        attr = IntegratedGradients(self.hookless_forward).attribute(
            x,
            baselines=baseline,
            target=target,
            n_steps=int(self.option("integrated_gradients", "n_steps")),
            method=self.option("integrated_gradients", "ig_method"),
            internal_batch_size=self.batch,
        )
        # completeness: the attributions should sum to f(x) - f(baseline); f(x) is the prediction's
        with torch.no_grad():
            start = self.forward(baseline)[:, target].float()
            end = (self.reference_logits if len(x) == 1 and self.reference_logits is not None
                   else self.forward(x))[:, target].float()
        gap = end - start
        delta = attr.detach().float().reshape(len(x), -1).sum(dim=1) - gap
        relative = (delta.abs() / gap.abs().clamp_min(1e-6)).max().item()
        self.extras["integrated_gradients"] = {"convergence_delta": delta.cpu().numpy(), "relative_delta": relative}
        kind = self.option("integrated_gradients", "baseline")
        kind = kind if isinstance(kind, str) else "custom"
        note = f"from the {kind} baseline, {int(self.option('integrated_gradients', 'n_steps'))} steps"
        if kind == "black":
            note += ("; on a cell segmented onto black this credits the cell as a whole, random weights too "
                     "(baseline='blur' asks which fine structure drove the call)")
        self.notes.setdefault("integrated_gradients", []).append(note)
        if relative > 0.05:
            self.notes.setdefault("integrated_gradients", []).append(
                f"completeness gap {relative:.1%} of f(x) - f(baseline): raise n_steps for a more exact integral"
            )
        return attr

    def smoothgrad(self, x: Tensor, target: int) -> Tensor:
        base = self.option("smoothgrad", "smoothgrad_base")
        if base in ("saliency", "gradient"):
            tunnel, extra = NoiseTunnel(Saliency(self.hookless_forward)), {"abs": False}
        elif base in ("integrated_gradients", "ig"):
            tunnel = NoiseTunnel(IntegratedGradients(self.hookless_forward))
            extra = {"n_steps": int(self.option("smoothgrad", "n_steps")), "internal_batch_size": self.batch,
                     "baselines": self.baseline("smoothgrad", x, self.option("integrated_gradients", "baseline"))}
        else:
            raise ExplainError(f"smoothgrad_base={base!r}: use 'saliency' or 'integrated_gradients'")
        stdev = float(self.option("smoothgrad", "noise")) * float((x.max() - x.min()).detach())
        n_samples = int(self.option("smoothgrad", "nt_samples"))
        with seeded(int(self.option("smoothgrad", "seed")), x.device):
            return tunnel.attribute(
                x,
                nt_type="smoothgrad",
                nt_samples=n_samples,
                nt_samples_batch_size=min(self.batch, n_samples) if base in ("saliency", "gradient") else 1,
                stdevs=stdev,
                target=target,
                **extra,
            )

    def occlusion(self, x: Tensor, target: int) -> Tensor:
        channels, height, width = x.shape[1:]
        window = int(self.option("occlusion", "window") or max(2, round(min(height, width) / 8)))
        stride = int(self.option("occlusion", "stride") or max(1, window // 2))
        return Occlusion(self.hookless_forward).attribute(
            x,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=self.baseline("occlusion", x, self.option("occlusion", "baseline")),
            target=target,
            perturbations_per_eval=self.batch,
        )

    def attribute(self, method: str, x: Tensor, target: int) -> Tensor:
        """Per-pixel attributions of ``method`` (N x C x H x W, or N x 1 x H x W for Grad-CAM)."""
        x = x.detach()  # Captum switches on requires_grad of the tensor it gets: never the caller's
        with _quiet_captum():
            if method == "gradcam":
                return self.gradcam(x, target)[0]
            return getattr(self, method)(x, target)


def explain_many(
    model: Any,
    pixel_values: Any,
    methods: Union[str, Sequence[str]] = "all",
    *,
    target: Union[int, str, None] = None,
    logits: Optional[Union[Tensor, np.ndarray]] = None,
    layer: Optional[nn.Module] = None,
    internal_batch_size: Optional[int] = None,
    faithfulness: bool = True,
    faithfulness_steps: int = 20,
    faithfulness_baseline: Union[str, Tensor, float] = "blur",
    infidelity: bool = False,
    sensitivity: bool = False,
    progress: bool = False,
    fold_batchnorm: bool = True,
    torch_compile: bool = False,
    **opts: Any,
) -> dict[str, Explanation]:
    """Several attribution methods for one image, sharing the forward pass and Grad-CAM.

    ``model``: a classifier (Hugging Face output with ``.logits``, or a tensor-returning module);
    ``pixel_values``: the processor's output for ONE image (C x H x W or 1 x C x H x W);
    ``target``: class index or label name, default the predicted class; ``logits``: the prediction's
    logits for this image, if the caller has them (then no forward pass is repeated).
    ``internal_batch_size``: images per forward/backward inside IG, SmoothGrad and occlusion.
    ``faithfulness``: compute deletion/insertion curves (``faithfulness_steps`` steps, baseline
    ``"blur"``/``"mean"``/``"zero"``); ``infidelity`` / ``sensitivity`` add Captum's metrics (costly).
    ``fold_batchnorm``: run the attributions on :func:`attribution_twin` (same function, BatchNorms folded
    into the convolutions, channels_last): about 20% faster on a CPU; a Grad-CAM ``layer`` that is a folded
    convolution keeps the original model. ``torch_compile``: run IG, SmoothGrad and occlusion through
    :func:`compiled_forward` (a one-time compile of minutes, then faster on a CPU; Grad-CAM and Guided
    Grad-CAM hook layers and stay eager).
    Method options (``METHOD_OPTIONS``): ``guided``, ``n_steps``, ``baseline``, ``ig_method``,
    ``nt_samples``, ``noise``, ``smoothgrad_base``, ``seed``, ``window``, ``stride``.
    Returns ``{method: Explanation}`` in the order asked.
    """
    names = resolve_methods(methods)
    _check_options(opts)
    net = unwrap_model(model)
    dtype, device = model_dtype_device(net)
    x = _as_image_batch(pixel_values).to(device=device, dtype=torch.float32)
    batch = int(internal_batch_size or DEFAULT_INTERNAL_BATCH.get(device.type, 8))
    if batch < 1:
        raise ExplainError(f"internal_batch_size must be at least 1, got {internal_batch_size}")
    labels = class_labels(net)

    results: dict[str, Explanation] = {}
    with eval_mode(net):
        needs_layer = layer is None and any(m in ("gradcam", "guided_gradcam") for m in names)
        cam_layer = find_gradcam_layer(net) if needs_layer else layer
        attribution_net, cam_layer, channels_last = net, cam_layer, False
        if fold_batchnorm:
            twin, report = attribution_twin(net, x)
            layer_name = None if cam_layer is None else fusion.module_name(net, cam_layer)
            if twin is not net and (cam_layer is None or (
                    layer_name is not None and not report.changes_output_of(layer_name))):
                # the twin is the same function; a Grad-CAM layer that is a folded convolution is not
                attribution_net, channels_last = twin, True
                cam_layer = None if layer_name is None else twin.get_submodule(layer_name)
        dtype = model_dtype_device(attribution_net)[0]
        if dtype != torch.float32:
            x = x.to(dtype)
        attributor = _Attributor(attribution_net, cam_layer, batch, opts, channels_last=channels_last,
                                 torch_compile=torch_compile)
        if needs_layer:
            branches = list(branch_layers(net))
            if len(branches) > 1:
                note = (f"Grad-CAM of branch {branches[0]} only; the model has {len(branches)} branches "
                        "(leuk.explain.explain_hybrid maps each)")
                for method in ("gradcam", "guided_gradcam"):
                    attributor.notes.setdefault(method, []).append(note)
        start = time.perf_counter()
        if logits is None:
            with torch.no_grad():
                reference_logits = attributor.forward(x).detach()
            forward_time = time.perf_counter() - start
        else:
            reference_logits = torch.as_tensor(logits).detach().to(device)
            if reference_logits.dim() > 2 or (reference_logits.dim() == 2 and reference_logits.shape[0] != 1):
                raise ExplainError(f"logits must be this one image's (classes or 1 x classes), got shape "
                                   f"{tuple(reference_logits.shape)}")
            reference_logits = reference_logits.reshape(1, -1)
            forward_time = 0.0
        attributor.reference_logits = reference_logits
        target_index = resolve_target(target, reference_logits, labels)
        probability = float(torch.softmax(reference_logits.float(), dim=-1)[0, target_index])

        shared_cam: Optional[Tensor] = None
        cam_layer_map: Optional[np.ndarray] = None
        cam_layer_name = None if cam_layer is None else fusion.module_name(attribution_net, cam_layer)
        cam_time = 0.0
        iterator = names
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(names, desc="explain", unit="method")
        for method in iterator:
            timings = {"forward": forward_time}
            extras: dict[str, Any] = {}
            if method in ("gradcam", "guided_gradcam"):
                if shared_cam is None:
                    start = time.perf_counter()
                    with _quiet_captum():
                        shared_cam, low_res = attributor.gradcam(x, target_index)
                    cam_time = time.perf_counter() - start
                    cam_layer_map = low_res.detach().float().cpu().numpy()[0, 0]
                timings["gradcam"] = cam_time
                extras["gradcam_layer_map"] = cam_layer_map
                extras["gradcam_layer"] = cam_layer_name
            start = time.perf_counter()
            if method == "gradcam":
                raw = shared_cam
            elif method == "guided_gradcam":
                with _quiet_captum():
                    raw = attributor.guided_gradcam(x, target_index, shared_cam)
            else:
                raw = attributor.attribute(method, x, target_index)
            # the cost of a method as if run alone: Guided Grad-CAM includes its Grad-CAM
            timings["attribution"] = time.perf_counter() - start + timings.get("gradcam", 0.0)
            raw = raw.detach().float()
            attribution_map = raw.sum(dim=1)[0]
            if not torch.isfinite(attribution_map).all():
                attribution_map = torch.nan_to_num(attribution_map, nan=0.0, posinf=0.0, neginf=0.0)
                attributor.notes.setdefault(method, []).append("non-finite attributions were set to 0")

            start = time.perf_counter()
            faith = None
            if faithfulness:
                faith = _faithfulness(
                    attributor, method, x, raw, attribution_map, target_index, reference_logits,
                    steps=faithfulness_steps, baseline=faithfulness_baseline,
                    infidelity=infidelity, sensitivity=sensitivity,
                )
            timings["faithfulness"] = time.perf_counter() - start
            timings["total"] = forward_time + timings["attribution"] + timings["faithfulness"]

            extras.update(attributor.extras.get(method, {}))
            if method == "gradcam" and cam_layer_map is not None:
                attributor.notes.setdefault(method, []).append(
                    f"Grad-CAM on {cam_layer_name or 'the given layer'} "
                    f"({cam_layer_map.shape[0]} x {cam_layer_map.shape[1]} map, upsampled to the image)"
                )
            results[method] = Explanation(
                method=method,
                attribution=attribution_map.cpu().numpy().astype(np.float32),
                target=target_index,
                label=labels.get(target_index),
                probability=probability,
                timings=timings,
                faithfulness=faith,
                notes=list(attributor.notes.get(method, [])),
                channels=raw[0].cpu().numpy().astype(np.float32) if raw.shape[1] > 1 else None,
                extras=extras,
            )
            if dtype != torch.float32:
                results[method].notes.append(f"model runs in {dtype}; attributions are returned as float32")
    return results


def _faithfulness(
    attributor: _Attributor,
    method: str,
    x: Tensor,
    raw: Tensor,
    attribution_map: Tensor,
    target: int,
    reference_logits: Tensor,
    *,
    steps: int,
    baseline: Union[str, Tensor, float],
    infidelity: bool,
    sensitivity: bool,
) -> Faithfulness:
    """Deletion/insertion curves of one map (each curve one forward), plus Captum's metrics if asked."""
    faith = deletion_insertion(
        attributor.forward, x, attribution_map, target, steps=steps, baseline=attributor.baseline(method, x, baseline),
        reference_logits=reference_logits, batch_size=max(attributor.batch, steps),
    )
    faith = replace(faith, baseline=baseline if isinstance(baseline, str) else "custom")
    if infidelity:
        faith = replace(faith, infidelity=infidelity_score(
            attributor.forward, x, raw.expand_as(x), target, batch_size=attributor.batch))
    if sensitivity:
        faith = replace(faith, sensitivity=_sensitivity(attributor, method, x, target))
    return faith


def _sensitivity(attributor: _Attributor, method: str, x: Tensor, target: int, n_samples: int = 5) -> float:
    """Captum's max-sensitivity of ``method`` (recomputes the explanation ``n_samples`` times)."""
    def explanation(inputs: Any) -> Any:
        # captum passes the inputs as a tuple and expects the same structure back
        if isinstance(inputs, tuple):
            return tuple(attributor.attribute(method, t, target).expand_as(t).contiguous() for t in inputs)
        return attributor.attribute(method, inputs, target).expand_as(inputs).contiguous()

    # the perturbed inputs are other images: nothing computed for the original may be reused
    reference, attributor.reference_logits = attributor.reference_logits, None
    try:
        with seeded(0, x.device):
            score = sensitivity_max(explanation, x, n_perturb_samples=n_samples, max_examples_per_batch=1)
    finally:
        attributor.reference_logits = reference
    return float(score.reshape(-1)[0])


def explain(
    model: Any,
    pixel_values: Any,
    method: str,
    *,
    target: Union[int, str, None] = None,
    **opts: Any,
) -> Explanation:
    """One attribution map for one image, with timings and faithfulness (see :func:`explain_many`).

    >>> exp = explain(model, processor(images=img, return_tensors="pt").pixel_values, "gradcam")
    >>> exp.attribution.shape, exp.target, exp.faithfulness.deletion_auc
    """
    name = canonical_method(method)
    return explain_many(model, pixel_values, [name], target=target, **opts)[name]

