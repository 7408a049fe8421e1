"""Shared test set-up: one thread per library, no network, and tiny synthetic datasets for every test module.

Fixtures (session-scoped, written once under pytest's tmp_path_factory):
- ``cnmc_root``: synthetic C-NMC (Kaggle layout), 12 patients x 6 images, 64 px; nucleus masks under ``masks/``.
- ``aria_root``: synthetic Aria, 8 patients x 4 images, 128 px, with Segmented/, Masks/ and patients.csv.
- ``cnmc_dataset`` / ``aria_dataset``: the same, loaded with :func:`leuk.data.load_cnmc` / :func:`leuk.data.load_aria`.
"""

from __future__ import annotations

import os

# Set before any library reads them (torch, OpenMP, the Hugging Face stack read these at import time).
for _name, _value in {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "MPLBACKEND": "Agg",
}.items():
    os.environ.setdefault(_name, _value)

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)

# Shared CPUs make timings unreliable: no per-example deadline for property tests.
settings.register_profile("leuk", deadline=None)
settings.load_profile("leuk")

CNMC_FIXTURE = dict(patients=12, images_per_patient=6, size=64, seed=0, confounding=0.5)
ARIA_FIXTURE = dict(patients=8, images_per_patient=4, size=128, seed=0, confounding=0.5)


@pytest.fixture(scope="session")
def cnmc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding ``C-NMC_Leukemia/training_data/fold_{0,1,2}/{all,hem}`` (72 images) and ``masks/``."""
    from leuk.data.synthetic import write_cnmc

    return write_cnmc(tmp_path_factory.mktemp("cnmc"), **CNMC_FIXTURE)


@pytest.fixture(scope="session")
def aria_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding ``Original``, ``Segmented``, ``Masks`` (4 classes, 32 images) and ``patients.csv``."""
    from leuk.data.synthetic import write_aria

    return write_aria(tmp_path_factory.mktemp("aria"), **ARIA_FIXTURE)


@pytest.fixture(scope="session")
def cnmc_dataset(cnmc_root: Path):
    """:func:`leuk.data.load_cnmc` of ``cnmc_root``."""
    from leuk.data import load_cnmc

    return load_cnmc(cnmc_root)


@pytest.fixture(scope="session")
def aria_dataset(aria_root: Path):
    """:func:`leuk.data.load_aria` of ``aria_root`` (patients from its patients.csv)."""
    from leuk.data import load_aria

    return load_aria(aria_root)
