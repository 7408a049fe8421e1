"""How far an attribution map can be trusted: deletion / insertion curves and Captum's quality metrics.

Deletion (Petsiuk et al., 2018, "RISE"): remove the most-attributed pixels first, in ``steps`` equal
portions, and follow the target probability; a faithful map makes it fall fast (low AUC). Insertion
starts from the baseline image and puts the most-attributed pixels back first; a faithful map makes the
probability rise fast (high AUC). Each curve is one batched forward pass. Removed pixels take the value
of a baseline image: the image blurred (default, as RISE's insertion canvas), black, its per-channel mean
or zero. Partly blurred images are unlike anything seen in training, so the curves can be non-monotone:
read them next to each other (same image, same baseline), not as absolute truths.

Probabilities saturate: a model 0.999 sure of its class stays 0.99 sure with half the cell blurred, and every map
then scores about the same. Each curve is therefore also followed on the target's log-odds (``log p / (1 - p)``,
which keeps moving where the probability is flat); :attr:`Faithfulness.score` is the insertion curve's mean
log-odds minus the deletion curve's (nats, higher is better). When the log-odds stay within
:data:`MIN_LOGODDS_RANGE` over both curves, removing or restoring the map's pixels barely moves the model, the
score is near zero whatever the map, and :attr:`Faithfulness.separable` says so: either the map misses what the
model uses, or the model hardly reacts to that baseline on this image (compare another method on the same image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from captum.metrics import infidelity
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from leuk.explain._util import ExplainError, seeded
from leuk.explain.methods import BASELINES
#: Smallest range of the target's log-odds (nats) over both curves for which the deletion/insertion curves can
#: rank maps; below it the model barely reacts to any of the perturbed images.
MIN_LOGODDS_RANGE = 0.5


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion curves of one attribution map, and their areas under the curve.

    ``fractions[i]`` is the share of pixels removed (deletion) or inserted (insertion) at step ``i``;
    ``deletion[i]`` / ``insertion[i]`` the target-class probability there. Lower deletion AUC and higher
    insertion AUC mean a more faithful map; compare them between methods on the same image and model.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    baseline: str
    infidelity: Optional[float] = None
    sensitivity: Optional[float] = None
    #: the same curves on the target's log-odds (``log p - log(1 - p)``), which move where ``p`` saturates
    deletion_logodds: Optional[np.ndarray] = None
    insertion_logodds: Optional[np.ndarray] = None

    @property
    def logodds_range(self) -> Optional[float]:
        """Highest minus lowest target log-odds over both curves: how far the model moves at all."""
        if self.deletion_logodds is None or self.insertion_logodds is None:
            return None
        values = np.concatenate([self.deletion_logodds, self.insertion_logodds])
        return float(values.max() - values.min())

    @property
    def separable(self) -> bool:
        """Whether the score can rank this map: the log-odds move by :data:`MIN_LOGODDS_RANGE` or more along its
        curves (else the score is near zero, as for any map the model does not react to)."""
        spread = self.logodds_range
        return spread is not None and spread >= MIN_LOGODDS_RANGE

    @property
    def deletion_logodds_auc(self) -> Optional[float]:
        """Mean target log-odds along the deletion curve (area under it; lower is better)."""
        return None if self.deletion_logodds is None else _auc(self.fractions, self.deletion_logodds)

    @property
    def insertion_logodds_auc(self) -> Optional[float]:
        """Mean target log-odds along the insertion curve (higher is better)."""
        return None if self.insertion_logodds is None else _auc(self.fractions, self.insertion_logodds)

    @property
    def score(self) -> Optional[float]:
        """Insertion minus deletion area on the log-odds (nats; higher is more faithful; both curves share their
        end points, so only the order of the pixels counts); read it only when :attr:`separable`. ``None``
        without log-odds curves."""
        if self.deletion_logodds is None or self.insertion_logodds is None:
            return None
        return float(self.insertion_logodds_auc - self.deletion_logodds_auc)

    def summary(self) -> str:
        """One line: ``deletion AUC 0.123 (lower is better), insertion AUC 0.876 (higher is better)``, then the
        log-odds score, or why the curves cannot rank maps here."""
        text = (
            f"deletion AUC {self.deletion_auc:.3f} (lower is better), "
            f"insertion AUC {self.insertion_auc:.3f} (higher is better)"
        )
        if self.separable:
            text += (f"; on the log-odds: deletion {self.deletion_logodds_auc:+.3f}, insertion "
                     f"{self.insertion_logodds_auc:+.3f}, score {self.score:+.3f}")
        elif self.logodds_range is not None:
            text += (f"; cannot rank this map: the target's log-odds stay within {self.logodds_range:.3f} "
                     f"along its curves")
        if self.infidelity is not None:
            text += f", infidelity {self.infidelity:.3g}"
        if self.sensitivity is not None:
            text += f", max-sensitivity {self.sensitivity:.3g}"
        return text


def blur_sigma(height: int, width: int) -> float:
    """Blur strength of the ``"blur"`` baseline: a sixteenth of the shorter side (at least 1 pixel)."""
    return max(1.0, min(height, width) / 16.0)


def make_baseline(
    pixel_values: Tensor,
    kind: Union[str, Tensor, float] = "blur",
    *,
    normalization: Optional[tuple[Sequence[float], Sequence[float]]] = None,
) -> Tensor:
    """A reference image of the same shape as ``pixel_values`` (N x C x H x W).

    ``"blur"``: Gaussian blur (sigma from :func:`blur_sigma`), which keeps colour and coarse shape but
    removes the detail a classifier could use; ``"black"``: a black image, i.e. ``-mean / std`` under the
    input ``normalization`` ``(mean, std)`` (needed; the C-NMC background, "no cell"); ``"mean"``: each
    channel's mean; ``"zero"``: zeros of the normalised input (the dataset mean colour for
    ImageNet-normalised inputs); a number or a tensor is used as given.
    """
    if isinstance(kind, Tensor):
        return kind.to(device=pixel_values.device, dtype=pixel_values.dtype).expand_as(pixel_values)
    if isinstance(kind, (int, float)):
        return torch.full_like(pixel_values, float(kind))
    if kind == "zero":
        return torch.zeros_like(pixel_values)
    if kind == "black":
        if normalization is None:
            raise ExplainError(
                "baseline 'black' needs the input normalisation (the model config's image_mean/image_std)"
            )
        mean, std = (torch.as_tensor(v, dtype=pixel_values.dtype, device=pixel_values.device) for v in normalization)
        if mean.numel() != pixel_values.shape[1] or std.numel() != pixel_values.shape[1]:
            raise ExplainError(f"normalisation has {mean.numel()} channels, the input {pixel_values.shape[1]}")
        return (-mean / std).view(1, -1, 1, 1).expand_as(pixel_values).clone()
    if kind == "mean":
        return pixel_values.mean(dim=(-2, -1), keepdim=True).expand_as(pixel_values).clone()
    if kind == "blur":
        height, width = pixel_values.shape[-2:]
        sigma = blur_sigma(height, width)
        # reflection padding needs the half-kernel to stay inside the image
        half = min(math.ceil(3 * sigma), min(height, width) - 1)
        return gaussian_blur(pixel_values, kernel_size=[2 * half + 1] * 2, sigma=[sigma, sigma])
    raise ExplainError(f"unknown baseline {kind!r}: use one of {', '.join(BASELINES)}, a number or a tensor")


def pixel_order(saliency: Tensor, *, seed: int = 0) -> Tensor:
    """Rank of every pixel when sorted by attribution, highest first (0 = most attributed).

    Ties (for example the zeros of a ReLU-ed Grad-CAM) are broken in a seeded random order rather than
    in raster order, so that no image region is favoured.
    """
    flat = saliency.reshape(-1).float()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shuffle = torch.randperm(flat.numel(), generator=generator).to(flat.device)
    order = shuffle[torch.argsort(-flat[shuffle], stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank.reshape(saliency.shape)


def target_logodds(logits: Tensor, target: int) -> Tensor:
    """``log p / (1 - p)`` of class ``target`` from logits (N x K), computed stably: the target's logit minus the
    log-sum-exp of the others."""
    logits = logits.float().reshape(len(logits), -1)
    others = torch.cat([logits[:, :target], logits[:, target + 1:]], dim=1)
    return logits[:, target] - torch.logsumexp(others, dim=1)


def _target_scores(
    forward: Callable[[Tensor], Tensor], images: Tensor, target: int, batch_size: Optional[int]
) -> tuple[Tensor, Tensor]:
    """(probabilities, log-odds) of class ``target`` for a batch of images."""
    chunks = [images] if not batch_size else list(images.split(batch_size))
    probs, logodds = [], []
    with torch.no_grad():
        for chunk in chunks:
            logits = forward(chunk).float()
            probs.append(torch.softmax(logits, dim=-1)[:, target])
            logodds.append(target_logodds(logits, target))
    return torch.cat(probs).cpu(), torch.cat(logodds).cpu()


def _auc(fractions: np.ndarray, values: np.ndarray) -> float:
    return float(np.trapezoid(values, fractions))


def deletion_insertion(
    forward: Callable[[Tensor], Tensor],
    pixel_values: Tensor,
    saliency: Union[Tensor, np.ndarray],
    target: int,
    *,
    steps: int = 20,
    baseline: Union[str, Tensor, float] = "blur",
    reference_logits: Optional[Tensor] = None,
    batch_size: Optional[int] = None,
    seed: int = 0,
    normalization: Optional[tuple[Sequence[float], Sequence[float]]] = None,
) -> Faithfulness:
    """Deletion and insertion curves of ``saliency`` (H x W) for one image ``pixel_values`` (1 x C x H x W).

    ``forward`` maps a batch of images to logits. Each curve is one forward pass over ``steps`` images
    (or chunks of ``batch_size``); ``normalization`` (mean, std) is needed for the ``"black"`` baseline;
    ``reference_logits`` (the unperturbed image's logits, e.g. from the
    prediction) supply the curves' shared end point, so that forward pass is not repeated.
    """
    if pixel_values.dim() != 4 or pixel_values.shape[0] != 1:
        raise ExplainError(f"deletion/insertion needs one image (1 x C x H x W), got shape {tuple(pixel_values.shape)}")
    if steps < 1:
        raise ExplainError(f"steps must be at least 1, got {steps}")
    height, width = pixel_values.shape[-2:]
    saliency_t = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, Tensor) else saliency)
    if tuple(saliency_t.shape) != (height, width):
        raise ExplainError(
            f"attribution map of shape {tuple(saliency_t.shape)} does not match the image ({height} x {width})"
        )
    device = pixel_values.device
    reference = make_baseline(pixel_values, baseline, normalization=normalization)
    rank = pixel_order(saliency_t.detach().to(device), seed=seed)
    counts = torch.round(torch.arange(steps + 1, device=device) / steps * height * width)
    # masks[k] is True on the pixels among the first `counts[k]` in attribution order
    masks = (rank.unsqueeze(0) < counts.view(-1, 1, 1)).unsqueeze(1).to(pixel_values.dtype)

    with torch.no_grad():
        if reference_logits is None:
            reference_logits = forward(pixel_values)
        full_logits = reference_logits.detach().float().reshape(1, -1)
        full_prob = torch.softmax(full_logits, dim=-1)[0, target].cpu()
        full_logodds = target_logodds(full_logits, target)[0].cpu()
        deleted = pixel_values * (1 - masks[1:]) + reference * masks[1:]
        deleted_probs, deleted_logodds = _target_scores(forward, deleted, target, batch_size)
        del deleted
        inserted = reference * (1 - masks[:-1]) + pixel_values * masks[:-1]
        inserted_probs, inserted_logodds = _target_scores(forward, inserted, target, batch_size)
    deletion = torch.cat([full_prob.view(1), deleted_probs])
    insertion = torch.cat([inserted_probs, full_prob.view(1)])
    fractions = (counts / (height * width)).cpu().numpy().astype(np.float64)
    deletion_np = deletion.numpy().astype(np.float64)
    insertion_np = insertion.numpy().astype(np.float64)
    return Faithfulness(
        fractions=fractions,
        deletion=deletion_np,
        insertion=insertion_np,
        deletion_auc=_auc(fractions, deletion_np),
        insertion_auc=_auc(fractions, insertion_np),
        baseline=baseline if isinstance(baseline, str) else "custom",
        deletion_logodds=torch.cat([full_logodds.view(1), deleted_logodds]).numpy().astype(np.float64),
        insertion_logodds=torch.cat([inserted_logodds, full_logodds.view(1)]).numpy().astype(np.float64),
    )


def infidelity_score(
    forward: Callable[[Tensor], Tensor],
    pixel_values: Tensor,
    attributions: Tensor,
    target: int,
    *,
    noise: float = 0.1,
    n_perturb_samples: int = 8,
    batch_size: Optional[int] = None,
    seed: int = 0,
) -> float:
    """:func:`captum.metrics.infidelity` under Gaussian input noise (std ``noise`` x the input's range).

    ``attributions`` has the input's shape. Scores are normalised (``normalize=True``), so maps of any
    scale (Grad-CAM, IG) compare; lower is better.
    """
    std = noise * float(pixel_values.max() - pixel_values.min())

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        perturbation = torch.randn_like(inputs) * std
        return perturbation, inputs - perturbation

    with seeded(seed, pixel_values.device):
        score = infidelity(
            forward,
            perturb,
            pixel_values,
            attributions.to(pixel_values.dtype).expand_as(pixel_values),
            target=target,
            n_perturb_samples=n_perturb_samples,
            max_examples_per_batch=batch_size,
            normalize=True,
        )
    return float(score.reshape(-1)[0])


def mask_attribution_ratio(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Positive attribution per pixel inside the masks divided by positive attribution per pixel outside.

    Pooled over images (sums first, then the ratio), so images with little attribution weigh little. Where the
    class evidence is known, as in synthetic cells whose class shows only in the nucleus, a map that follows
    the evidence scores well above 1; compare against the same architecture with random weights, since a
    map that follows the input's structure can score high too. Maps and masks are ``H x W`` arrays.
    """
    if len(maps) != len(masks) or not maps:
        raise ExplainError(f"need one mask per map and at least one of each, got {len(maps)} maps, {len(masks)} masks")
    inside = outside = 0.0
    n_inside = n_outside = 0
    for attribution, mask in zip(maps, masks):
        attribution, mask = np.asarray(attribution, np.float64), np.asarray(mask, bool)
        if attribution.shape != mask.shape:
            raise ExplainError(f"map of shape {attribution.shape} does not match its mask of shape {mask.shape}")
        positive = np.clip(attribution, 0.0, None)
        inside += float(positive[mask].sum())
        outside += float(positive[~mask].sum())
        n_inside += int(mask.sum())
        n_outside += int((~mask).sum())
    if n_inside == 0 or n_outside == 0:
        raise ExplainError("the masks must leave pixels both inside and outside")
    return (inside / n_inside) / max(outside / n_outside, 1e-12)
