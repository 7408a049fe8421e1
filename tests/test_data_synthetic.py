"""The synthetic cell renderer and the C-NMC / Aria writers."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from leuk.data.synthetic import RenderedCell, StainSignature, render_cell, render_smear, write_aria, write_cnmc
from leuk.io import read_rgb_array

CNMC_NAME = re.compile(r"^UID_(H?\d+)_(\d+)_(\d+)_(all|hem)\.bmp$")
ARIA_NAME = re.compile(r"^WBC-(Benign|Malignant-(Early|Pre|Pro))-(\d{3})\.jpg$")


def _cells(label: str, count: int, size: int = 64, seed: int = 0, **kwargs) -> list[RenderedCell]:
    rng = np.random.default_rng(seed)
    return [render_cell(rng, label, size, None, **kwargs) for _ in range(count)]


def test_render_cell_outputs_image_and_consistent_masks():
    cell = render_cell(np.random.default_rng(3), "all", 80, StainSignature.random(np.random.default_rng(1), 0.5))
    assert cell.image.shape == (80, 80, 3) and cell.image.dtype == np.uint8
    assert cell.cell_mask.dtype == bool and cell.nucleus_mask.shape == (80, 80)
    assert cell.nucleus_mask.any() and not (cell.nucleus_mask & ~cell.cell_mask).any()
    grown = cv2.dilate(cell.cell_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (cell.image[~grown] == 0).all(), "C-NMC cells are segmented onto a black background"
    nucleus = cell.image[cell.nucleus_mask].mean()
    cytoplasm = cell.image[cell.cell_mask & ~cv2.dilate(cell.nucleus_mask.astype(np.uint8), np.ones((3, 3))).astype(bool)]
    assert nucleus < cytoplasm.mean(), "haematoxylin nucleus is darker than the pale cytoplasm"
    rgb = cell.image[cell.nucleus_mask].astype(float).mean(axis=0)
    assert rgb[2] > rgb[1] and rgb[0] > rgb[1], "nucleus is purple (red and blue above green)"


def test_render_cell_is_deterministic_for_a_seed():
    first, second = _cells("hem", 2, seed=7), _cells("hem", 2, seed=7)
    for a, b in zip(first, second):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.nucleus_mask, b.nucleus_mask)
    assert not np.array_equal(first[0].image, _cells("hem", 1, seed=8)[0].image)


def test_blasts_are_larger_with_higher_nc_ratio_but_classes_overlap():
    blasts, normals = _cells("all", 40, seed=1), _cells("hem", 40, seed=2)
    blast_area = np.array([c.cell_mask.sum() for c in blasts], float)
    normal_area = np.array([c.cell_mask.sum() for c in normals], float)
    blast_nc = np.mean([c.nucleus_mask.sum() / c.cell_mask.sum() for c in blasts])
    normal_nc = np.mean([c.nucleus_mask.sum() / c.cell_mask.sum() for c in normals])
    diameter_ratio = np.sqrt(blast_area.mean() / normal_area.mean())
    assert 1.15 < diameter_ratio < 1.5, f"ALL cells should be about 30% larger, got {diameter_ratio:.2f}"
    assert blast_nc > normal_nc
    assert normal_area.max() > blast_area.min(), "class distributions must overlap"


def test_normal_chromatin_is_darker_and_coarser():
    def nucleus_stats(cells):
        gray = [cv2.cvtColor(c.image, cv2.COLOR_RGB2GRAY).astype(float) for c in cells]
        return np.mean([g[c.nucleus_mask].mean() for g, c in zip(gray, cells)])

    assert nucleus_stats(_cells("hem", 20, seed=4)) < nucleus_stats(_cells("all", 20, seed=5))


def _outside_nucleus_stats(cells: list[RenderedCell]) -> dict[str, np.ndarray]:
    ring = [c.cell_mask & ~cv2.dilate(c.nucleus_mask.astype(np.uint8), np.ones((3, 3))).astype(bool) for c in cells]
    return {
        "cell area": np.array([c.cell_mask.sum() for c in cells], float),
        "N:C ratio": np.array([c.nucleus_mask.sum() / c.cell_mask.sum() for c in cells]),
        "cytoplasm blue": np.array([c.image[r][:, 2].mean() - c.image[r][:, 0].mean() for c, r in zip(cells, ring)]),
    }


def test_nucleus_class_evidence_leaves_the_rest_of_the_cell_class_independent():
    """``class_evidence="nucleus"``: size, N:C ratio and cytoplasm colour have one distribution for both classes
    (Mann-Whitney U, scipy), while they separate the classes in the default mode; the nucleus still differs."""
    from scipy.stats import mannwhitneyu

    for mode, separated in (("morphology", True), ("nucleus", False)):
        blasts = _outside_nucleus_stats(_cells("all", 120, seed=21, class_evidence=mode))
        normals = _outside_nucleus_stats(_cells("hem", 120, seed=22, class_evidence=mode))
        for name in blasts:
            p_value = mannwhitneyu(blasts[name], normals[name]).pvalue
            if separated:
                assert p_value < 1e-6, f"{mode}: {name} should tell the classes apart (p={p_value:.2g})"
            else:
                assert p_value > 0.01, f"{mode}: {name} gives the class away (p={p_value:.2g})"

    def nucleus_gray(cells):
        return np.mean([cv2.cvtColor(c.image, cv2.COLOR_RGB2GRAY)[c.nucleus_mask].mean() for c in cells])

    assert nucleus_gray(_cells("hem", 40, seed=4, class_evidence="nucleus")) < nucleus_gray(
        _cells("all", 40, seed=5, class_evidence="nucleus")
    ), "condensed dark chromatin still marks normal cells"
    with pytest.raises(ValueError, match="class_evidence must be one of morphology, nucleus"):
        render_cell(np.random.default_rng(0), "all", 64, class_evidence="size")


def test_subtypes_and_labels_are_validated():
    rng = np.random.default_rng(0)
    assert render_cell(rng, "Pro", 48).image.shape == (48, 48, 3)
    assert render_cell(rng, "all", 48, subtype="Pre").image.shape == (48, 48, 3)
    with pytest.raises(ValueError, match="unknown cell label"):
        render_cell(rng, "blast", 48)
    with pytest.raises(ValueError, match="malignant"):
        render_cell(rng, "hem", 48, subtype="Early")
    with pytest.raises(ValueError, match="contradicts"):
        render_cell(rng, "Early", 48, subtype="Pro")


def test_stain_signature_strength_zero_is_neutral_and_apply_changes_colours():
    rng = np.random.default_rng(0)
    assert StainSignature.random(rng, 0.0) == StainSignature()
    image = np.random.default_rng(1).uniform(0.2, 0.9, (32, 32, 3)).astype(np.float32)
    assert np.allclose(StainSignature().apply(image), image)
    strong = StainSignature(hue_shift=20.0, saturation=1.3, brightness=0.9, tint=(0.05, 0.0, -0.05), blur_sigma=1.0)
    changed = strong.apply(image)
    assert changed.shape == image.shape and 0.0 <= changed.min() and changed.max() <= 1.0
    assert np.abs(changed - image).mean() > 0.02


def test_render_smear_has_white_cells_on_pink_red_cells():
    image, mask = render_smear(np.random.default_rng(0), "Benign", 128, None, white_cells=3)
    assert image.shape == (128, 128, 3) and mask.dtype == bool
    assert 0.02 < mask.mean() < 0.6
    background = image[~mask].astype(float)
    assert background[:, 0].mean() > background[:, 1].mean(), "red cells and plasma are pink, not green"
    count, _ = cv2.connectedComponents(mask.astype(np.uint8))
    assert 2 <= count <= 4  # background + up to 3 cells (touching cells merge)


def test_write_cnmc_layout_masks_and_imbalance(tmp_path: Path):
    root = write_cnmc(tmp_path, patients=5, images_per_patient=4, size=48, seed=1)
    images = sorted((root / "C-NMC_Leukemia" / "training_data").rglob("*.bmp"))
    assert len(images) == 20
    subjects_by_fold: dict[str, set] = defaultdict(set)
    per_class = Counter()
    for path in images:
        match = CNMC_NAME.match(path.name)
        assert match, path.name
        fold, folder = path.parent.parent.name, path.parent.name
        assert fold in {"fold_0", "fold_1", "fold_2"} and folder == match.group(4)
        assert match.group(1).startswith("H") == (folder == "hem")
        subjects_by_fold[fold].add(match.group(1))
        per_class[folder] += 1
        mask_path = root / "masks" / path.relative_to(root).with_suffix(".png")
        mask = read_rgb_array(mask_path)[..., 0]
        assert set(np.unique(mask)) <= {0, 255} and (mask == 255).any()
        assert read_rgb_array(path).shape == (48, 48, 3)
    folds = list(subjects_by_fold.values())
    assert all(not (a & b) for i, a in enumerate(folds) for b in folds[i + 1 :]), "a subject lives in one fold"
    assert per_class["all"] > per_class["hem"] > 0


def test_write_cnmc_refuses_to_overwrite_without_flag(tmp_path: Path):
    write_cnmc(tmp_path, patients=2, images_per_patient=1, size=32)
    with pytest.raises(FileExistsError, match="already exists"):
        write_cnmc(tmp_path, patients=2, images_per_patient=1, size=32)
    write_cnmc(tmp_path, patients=3, images_per_patient=1, size=32, overwrite=True)
    assert len(list((tmp_path / "C-NMC_Leukemia").rglob("*.bmp"))) == 3
    with pytest.raises(ValueError, match="patients"):
        write_cnmc(tmp_path / "other", patients=1)


def test_synth_cli_writes_nucleus_evidence_and_says_so(tmp_path: Path, capsys):
    from leuk.cli import main

    assert main(["synth", "cnmc", "--out", str(tmp_path), "--patients", "3", "--images-per-patient", "2",
                 "--size", "48", "--class-evidence", "nucleus"]) == 0
    assert "class evidence nucleus" in capsys.readouterr().out
    assert "- class_evidence: nucleus" in (tmp_path / "SYNTHETIC.md").read_text()
    default = write_cnmc(tmp_path / "default", patients=3, images_per_patient=2, size=48)
    assert "class_evidence" not in (default / "SYNTHETIC.md").read_text()
    assert main(["synth", "aria", "--out", str(tmp_path / "aria"), "--patients", "2", "--images-per-patient", "1",
                 "--size", "64", "--class-evidence", "nucleus"]) == 0


def test_write_aria_layout_names_masks_and_patient_map(tmp_path: Path):
    root = write_aria(tmp_path, patients=4, images_per_patient=2, size=64, seed=2)
    with open(root / "patients.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {row["label"] for row in rows} == {"Benign", "Early", "Pre", "Pro"}
    numbers: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        path = root / row["image"]
        label = row["label"]
        match = ARIA_NAME.match(path.name)
        assert match and path.parent.name == label and (match.group(2) or "Benign") == label
        numbers[label].append(int(match.group(3)))
        original = read_rgb_array(path)
        segmented = read_rgb_array(root / "Segmented" / label / path.name)
        mask = read_rgb_array(root / "Masks" / label / f"{path.stem}.png")[..., 0] > 127
        assert original.shape == segmented.shape == (64, 64, 3) and mask.any()
        assert segmented[~mask].min() > 200, "segmented cells lie on a plain white background"
    assert all(sorted(n) == list(range(1, len(n) + 1)) for n in numbers.values()), "per-class sequential numbers"
    patients_of = defaultdict(set)
    for row in rows:
        patients_of[row["patient_id"]].add(row["label"])
    assert len(patients_of) == 4 and all(len(labels) == 1 for labels in patients_of.values())
