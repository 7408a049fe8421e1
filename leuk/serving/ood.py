"""The apps' view of out-of-distribution detection, which lives in :mod:`leuk.ood` (the detector fitted on a
model's training images and stored with its weights) and :mod:`leuk.verdict` (what the apps show).

Kept for the names the apps used before: the image statistics are the detector's cheap first gate.
"""

from __future__ import annotations

from leuk.ood import (  # noqa: F401
    STAT_NAMES,
    ReferenceStatistics,
    image_statistics,
    load_detector,
    reference_from_images,
)
