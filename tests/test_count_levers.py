"""``bench/count_levers.py`` tries other ways of reading the detector's heatmap and a smudge flag; its baseline must
be the shipped reading, or its comparison says nothing. Checked against :func:`leuk.cell_detector.decode` and
:func:`leuk.serving.smear_geometry.rescale_cells` as oracles on random heatmaps, and its cross-validated cut against
scikit-learn's own cross-validation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from leuk.cell_detector import PEAK_WINDOW, decode
from leuk.metrics import box_iou
from leuk.serving.smear_geometry import SmearCell, rescale_cells

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def levers():
    spec = importlib.util.spec_from_file_location("count_levers", REPO / "bench" / "count_levers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _output(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    heat = torch.randn(1, 40, 48, generator=generator) * 1.5 - 1.0
    sizes = torch.randn(2, 40, 48, generator=generator) * 0.3
    return torch.cat([heat, sizes])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.25, 0.4])
def test_the_baseline_reads_the_heatmap_as_the_shipped_decoder(levers, seed, threshold):
    output, shape = _output(seed), (80, 96)
    shipped = [d.box for d in decode(output, threshold, 13.0, shape)]
    assert shipped, "the random heatmap should hold peaks above the threshold"
    found = levers.candidates(output, PEAK_WINDOW, 13.0, shape)
    assert levers.keep(found, threshold, 0.0) == shipped


def test_suppression_drops_a_weaker_box_that_overlaps_a_kept_one(levers):
    found = [(0.9, (0, 0, 20, 20)), (0.8, (2, 1, 21, 20)), (0.7, (40, 40, 60, 60)), (0.2, (80, 80, 90, 90))]
    assert box_iou(found[0][1], found[1][1]) > 0.5
    assert levers.keep(found, 0.3, 0.0) == [(0, 0, 20, 20), (2, 1, 21, 20), (40, 40, 60, 60)]
    assert levers.keep(found, 0.3, 0.5) == [(0, 0, 20, 20), (40, 40, 60, 60)]


@pytest.mark.parametrize("factor", [1.0, 0.5, 0.37, 1.6])
def test_boxes_go_back_to_the_smear_as_the_apps_map_them(levers, factor):
    boxes = [(0, 0, 7, 9), (13, 21, 30, 33), (50, 60, 61, 70)]
    shape = (int(75 / factor), int(70 / factor))
    cells = [SmearCell(number=i + 1, box=b, area=10, diameter=5.0, centroid=(0.0, 0.0)) for i, b in enumerate(boxes)]
    assert levers.in_smear_pixels(boxes, factor, shape) == [c.box for c in rescale_cells(cells, factor, shape)]


def test_box_features_are_finite_for_every_box_shape(levers):
    rng = np.random.default_rng(0)
    work = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    median = levers.smear_median_lab(work)
    for box in [(0, 0, 40, 40), (5, 5, 6, 5.5), (75, 55, 80, 60), (0, 0, 1, 1), (79.6, 59.6, 80, 60)]:
        features = levers.box_features(work, box, median)
        assert len(features) == len(levers.FEATURES) and np.all(np.isfinite(features))


def test_a_dark_nucleus_reads_darker_than_a_pale_smudge(levers):
    import cv2

    work = np.full((80, 120, 3), (200, 180, 200), np.uint8)  # lavender red cells and background
    cv2.circle(work, (30, 40), 14, (90, 40, 140), -1)          # a violet nucleus
    cv2.circle(work, (90, 40), 16, (185, 150, 200), -1)        # a pale smudge
    median = levers.smear_median_lab(work)
    nucleus = dict(zip(levers.FEATURES, levers.box_features(work, (16, 26, 45, 55), median)))
    smudge = dict(zip(levers.FEATURES, levers.box_features(work, (74, 24, 107, 57), median)))
    assert nucleus["lightness_p25"] < smudge["lightness_p25"] - 40
    assert nucleus["share_darker_40"] > 0.5 > smudge["share_darker_40"]


@pytest.mark.parametrize("name", ["random forest", "logistic regression"])
def test_the_cut_is_chosen_on_out_of_fold_probabilities_as_scikit_learn_computes_them(levers, name):
    from sklearn.base import clone
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    rng = np.random.default_rng(0)
    table = rng.normal(size=(150, len(levers.FEATURES)))
    smudge = np.r_[np.zeros(120, bool), np.ones(30, bool)]
    table[smudge, 2:5] += 1.8  # smudges paler
    table[smudge, 7] -= 1.5    # and with fewer dark pixels
    groups = np.arange(150) % 5
    fit = levers.classifiers()[name]
    cut, held_out = levers.choose_cut(table, smudge, groups, fit)
    oracle = cross_val_predict(clone(fit(table, smudge, 0)), table, smudge, groups=groups, cv=LeaveOneGroupOut(),
                               method="predict_proba")[:, 1]
    gain = {c: int((oracle[smudge] > c).sum()) - int((oracle[~smudge] > c).sum()) for c in levers.CUTS}
    assert gain[cut] == max(gain.values()) and cut == max(c for c in levers.CUTS if gain[c] == gain[cut])
    assert held_out == {"smudges_flagged": int((oracle[smudge] > cut).sum()), "smudges": 30,
                        "white_cells_flagged": int((oracle[~smudge] > cut).sum()), "white_cells": 120}
    assert held_out["smudges_flagged"] >= 15 and held_out["white_cells_flagged"] < 10  # most smudges, few cells
