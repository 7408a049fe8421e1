"""The feature space of the out-of-distribution detector: a model's pooled features, the Mahalanobis score on
them, and the hash that ties a detector to the weights it was fitted for."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leuk.errors import OODError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["MODEL_WEIGHTS", "feature_space", "mahalanobis_scores", "pooled_features", "weights_sha256",
           "whitening_of"]

#: Weights file whose hash ties a detector to its model.
MODEL_WEIGHTS = "model.safetensors"


def _family(model: Any):
    from leuk.models import FamilyError, family_of

    try:
        return family_of(model)
    except FamilyError as err:
        raise OODError(f"{type(model).__name__} is not a model of a leuk family ({err}): no feature-space "
                       "detector can be fitted") from err


def feature_space(model: Any) -> str:
    """What :func:`pooled_features` returns for ``model``, in words (recorded with the detector): its family's
    :attr:`~leuk.models.family.ModelFamily.pooled_description`."""
    return _family(model).pooled_description


def pooled_features(model: Any, pixel_values: "torch.Tensor") -> "torch.Tensor":
    """The ``(N, D)`` float32 feature vectors a detector compares: the family's
    :meth:`~leuk.models.family.ModelFamily.pooled_features` (what the light heads of Monte Carlo read too)."""
    import torch

    family = _family(model)
    with torch.no_grad():
        return family.pooled_features(model, pixel_values)


def mahalanobis_scores(features: Any, class_means: Any, precision: Any) -> np.ndarray:
    """Mahalanobis distance of each row of ``features`` ``(N, D)`` to its nearest row of ``class_means``
    ``(K, D)`` under the shared ``precision`` ``(D, D)``: ``sqrt(min_k (f - mu_k)^T P (f - mu_k))``."""
    f = np.asarray(features, dtype=np.float64)
    means = np.asarray(class_means, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    squared = np.empty((len(f), len(means)))
    for k, mean in enumerate(means):
        centred = f - mean
        squared[:, k] = np.einsum("nd,de,ne->n", centred, precision, centred)
    return np.sqrt(np.clip(squared.min(axis=1), 0.0, None))


def whitening_of(precision: np.ndarray) -> np.ndarray:
    """``W`` with ``W @ W.T == precision`` (eigenvectors times the square roots of the eigenvalues)."""
    eigenvalues, eigenvectors = np.linalg.eigh(np.asarray(precision, dtype=np.float64))
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


def _precision_of(whitening: np.ndarray) -> np.ndarray:
    w = np.asarray(whitening, dtype=np.float64)
    return w @ w.T


def weights_sha256(folder: str | Path) -> str | None:
    """SHA-256 of a model folder's ``model.safetensors`` (``None`` when there is none)."""
    path = Path(folder) / MODEL_WEIGHTS
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
