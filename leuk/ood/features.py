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


def feature_space(model: Any) -> str:
    """What :func:`pooled_features` returns for ``model``, in words (recorded with the detector)."""
    if hasattr(model, "forward_features") and hasattr(model, "pool"):
        return "pooled backbone features (SE channel attention + global average pool), the head's input"
    if hasattr(model, "extract_features") and hasattr(model, "feature_mean"):
        return "fused feature vector of both branches, z-scored with the training statistics (before mRMR)"
    if hasattr(model, "timm_model"):
        return "timm pre-logits features"
    raise OODError(f"{type(model).__name__} exposes no pooled features (forward_features + pool, "
                   "extract_features, or a timm model): no feature-space detector can be fitted")


def pooled_features(model: Any, pixel_values: "torch.Tensor") -> "torch.Tensor":
    """The ``(N, D)`` float32 feature vectors a detector compares (see :func:`feature_space`)."""
    import torch

    with torch.no_grad():
        if hasattr(model, "forward_features") and hasattr(model, "pool"):
            features = model.pool(model.forward_features(pixel_values))
        elif hasattr(model, "extract_features") and hasattr(model, "feature_mean"):
            pixel_values = pixel_values.to(model.feature_mean.dtype)
            features = (model.extract_features(pixel_values) - model.feature_mean) / model.feature_scale
        elif hasattr(model, "timm_model"):
            timm_model = model.timm_model
            features = timm_model.forward_head(timm_model.forward_features(pixel_values), pre_logits=True)
        else:
            feature_space(model)  # raises the explanation
            raise AssertionError  # pragma: no cover
    return features.reshape(len(features), -1).float()


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
