"""``bench/count_levers.py`` tries other ways of reading the detector's heatmap; its baseline must be the shipped
reading, or its comparison says nothing. Checked against :func:`leuk.cell_detector.decode` and
:func:`leuk.serving.smear_geometry.rescale_cells` as oracles, on random heatmaps."""

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
    smear = {"work": work, "factor": 0.5}
    median = np.median(work.reshape(-1, 3).astype(float), 0)
    for box in [(0, 0, 40, 40), (10, 10, 12, 11), (150, 110, 160, 120), (0, 0, 1, 1)]:
        features = levers.box_features(smear, box, median)
        assert len(features) == 13 and np.all(np.isfinite(features))
