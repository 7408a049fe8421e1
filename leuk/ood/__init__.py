"""Out-of-distribution detection: is this image like the images the model was trained on?

A classifier answers for every input, a photo of a cat or a blood smear it never saw included, and its softmax
can be high on exactly those. leuk therefore checks every image against the model's own training images, in
two steps, before it calls a prediction confident (see :mod:`leuk.verdict`):

1. **Feature distance** (the detector): the image's pooled features (what the classification head reads:
   EfficientNet-SE's SE-weighted global-average pool, HybridCN-NAS's standardised fused feature vector) are
   compared with those of the training images by the Mahalanobis distance to the nearest class mean, with one
   covariance shared by the classes (Lee et al., NeurIPS 2018, "A Simple Unified Framework for Detecting
   Out-of-Distribution Samples and Adversarial Attacks"), estimated with Ledoit-Wolf shrinkage
   (``sklearn.covariance.LedoitWolf``) because there are about as many feature dimensions as images.
   The score is that distance (0 = a class mean; larger = less familiar).
2. **Image statistics** (a cheap gate): ten colour and texture statistics of a thumbnail (:func:`image_statistics`)
   as z-scores against the training images; the score is the largest absolute z-score. It catches gross mismatches
   (blank, saturated or noise images, a different background) whatever the network's features say.

Both are fitted on the model's **training images only** (:func:`fit_detector`; ``leuk ood fit`` for an
existing model folder, run automatically after ``leuk train``). Each threshold is the ``quantile`` (default
0.99) of the scores of the **validation images** (images the fit did not see, of the training subjects), or of
the training images when no validation image exists (then the threshold is optimistic, and the record says so).
The detector is stored next to the weights (:data:`DETECTOR_WEIGHTS` safetensors + :data:`DETECTOR_CONFIG` JSON)
together with the SHA-256 of the weights it was fitted for; :func:`load_detector` refuses a detector of other
weights with a note instead of using it.

What it cannot catch: an image close to the training cells in feature space but wrong anyway (a cell of another
disease, another stain batch that happens to land near a class mean), and, by construction, a share
``1 - quantile`` of genuine in-distribution images is flagged. A low score is no guarantee of a correct answer.

The score is computed from plain tensors (:func:`mahalanobis_scores`); the stored files can be read with
``safetensors`` and ``json`` alone.

Modules, from the bottom up: :mod:`leuk.ood.statistics` (the image-statistics gate), :mod:`leuk.ood.features`
(pooled features, the Mahalanobis score, the weights hash), :mod:`leuk.ood.detector` (the fitted detector, its
files, :func:`load_detector`) and :mod:`leuk.ood.fit` (fitting, on tensors or on a saved model folder). Only
:mod:`leuk.ood.fit` reaches up to the prediction engine and the loader; they in turn import the lower modules.
"""

from __future__ import annotations

from leuk.errors import OODError
from leuk.ood.detector import DETECTOR_CONFIG, DETECTOR_WEIGHTS, FORMAT_VERSION, OODDetector, OODResult, load_detector
from leuk.ood.features import (
    MODEL_WEIGHTS,
    feature_space,
    mahalanobis_scores,
    pooled_features,
    weights_sha256,
    whitening_of,
)
from leuk.ood.fit import (
    DEFAULT_QUANTILE,
    MIN_LOSO_SUBJECTS,
    fit_after_training,
    fit_detector,
    fit_detector_for_folder,
    fit_mahalanobis,
    leave_one_subject_out_scores,
    split_images,
)
from leuk.ood.statistics import (
    STAT_NAMES,
    STD_FLOOR,
    THUMBNAIL,
    ReferenceStatistics,
    image_statistics,
    reference_from_images,
    reference_from_statistics,
)

__all__ = [
    "DEFAULT_QUANTILE",
    "DETECTOR_CONFIG",
    "DETECTOR_WEIGHTS",
    "FORMAT_VERSION",
    "MIN_LOSO_SUBJECTS",
    "MODEL_WEIGHTS",
    "OODDetector",
    "OODError",
    "OODResult",
    "ReferenceStatistics",
    "STAT_NAMES",
    "STD_FLOOR",
    "THUMBNAIL",
    "feature_space",
    "fit_after_training",
    "fit_detector",
    "fit_detector_for_folder",
    "fit_mahalanobis",
    "image_statistics",
    "leave_one_subject_out_scores",
    "load_detector",
    "mahalanobis_scores",
    "pooled_features",
    "reference_from_images",
    "reference_from_statistics",
    "split_images",
    "weights_sha256",
    "whitening_of",
]
