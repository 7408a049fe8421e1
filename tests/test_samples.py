"""The bundled sample images: real C-NMC cells from held-out subjects (with their attribution), synthetic Aria
smears, and the seeded rule of ``train/make_samples.py`` that picks the real cells (run here on synthetic cells
laid out like C-NMC, so the test needs no dataset)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CNMC_SAMPLES = REPO / "assets" / "samples" / "cnmc"


def _make_samples_module():
    spec = importlib.util.spec_from_file_location("make_samples", REPO / "train" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _fold_test_subjects(root: Path, fold: int, seed: int) -> set[str]:
    from leuk.data import load_cnmc
    from leuk.data.splits import leave_one_rare_subject_out

    table = load_cnmc(root)
    groups = np.asarray([str(p) for p in table["patient_id"]])
    split = leave_one_rare_subject_out(np.asarray(table["label"]), groups, seed=seed)[fold]
    return set(groups[split.test].tolist())


def test_real_cells_come_from_the_held_out_subjects_by_a_seeded_rule(cnmc_root):
    make_samples = _make_samples_module()
    chosen = make_samples.choose_cnmc_samples(cnmc_root, per_class=3, seed=2026)
    again = make_samples.choose_cnmc_samples(cnmc_root, per_class=3, seed=2026)
    assert chosen == again, "same seed, same cells"
    assert [s.target_name for s in chosen] == ["hem_1.png", "hem_2.png", "hem_3.png",
                                              "all_1.png", "all_2.png", "all_3.png"]
    held_out = _fold_test_subjects(cnmc_root, fold=0, seed=0)
    assert {s.subject for s in chosen} <= held_out
    assert all(s.source.parent.name == s.label for s in chosen)
    assert len({s.source for s in chosen}) == 6
    for label in ("hem", "all"):  # one cell per held-out subject before a second one
        subjects = [s.subject for s in chosen if s.label == label]
        available = {g for g in held_out if (g.startswith("H")) == (label == "hem")}
        assert len(set(subjects)) == min(3, len(available))
    other = make_samples.choose_cnmc_samples(cnmc_root, per_class=3, seed=7, fold=1)
    assert {s.subject for s in other} <= _fold_test_subjects(cnmc_root, fold=1, seed=0)


def test_make_cnmc_samples_writes_pngs_and_attribution(cnmc_root, tmp_path):
    make_samples = _make_samples_module()
    written = make_samples.make_cnmc_samples(cnmc_root, tmp_path, per_class=2, seed=1, fold=0, split_seed=0)
    names = sorted(p.name for p in written)
    assert names == ["ATTRIBUTION.md", "all_1.png", "all_2.png", "hem_1.png", "hem_2.png"]
    text = (tmp_path / "cnmc" / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needle in ("C-NMC 2019", "SBILab", "AIIMS New Delhi", "The Cancer Imaging Archive", "CC BY 3.0"):
        assert needle in text
    for path in written:
        if path.suffix == ".png":
            assert Image.open(path).format == "PNG"
            assert f"`{path.name}`" in text


def test_committed_cnmc_samples_are_real_cells_with_attribution():
    attribution = (CNMC_SAMPLES / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needle in ("C-NMC 2019", "SBILab, IIIT-Delhi and AIIMS New Delhi", "The Cancer Imaging Archive (TCIA)",
                   "CC BY 3.0"):
        assert needle in attribution
    fold0_held_out = {"23", "32", "33", "38", "51", "H10"}
    for name in ("all_1", "all_2", "all_3", "hem_1", "hem_2", "hem_3"):
        path = CNMC_SAMPLES / f"{name}.png"
        with Image.open(path) as image:
            assert image.size == (450, 450) and image.mode == "RGB"
        row = re.search(rf"^\| `{name}\.png` \| (HEM|ALL) \| (\w+) \| `(UID_\w+\.bmp)` \|", attribution, re.MULTILINE)
        assert row, f"{name}.png has no attribution row"
        label, subject, original = row.groups()
        assert label.lower() == name.split("_")[0] and subject in fold0_held_out
        assert original.startswith(f"UID_{subject}_") and original.endswith(f"_{label.lower()}.bmp")
    assert sum(p.stat().st_size for p in CNMC_SAMPLES.iterdir()) < 500_000


def test_sample_provenance_says_real_for_cnmc_and_synthetic_for_aria():
    from leuk.serving.samples import list_samples, samples_description

    samples = list_samples()
    assert {s.task: s.real for s in samples} == {"cnmc": True, "aria": False}
    text = samples_description()
    assert "real" in text and "synthetic" in text and "CC BY 3.0" in text
