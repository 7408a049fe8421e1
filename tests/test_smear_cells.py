"""From a smear to a call per white cell (leuk.serving.cells): geometry on synthetic smears with known cells
(boxes, crops on black, the C-NMC scale, skipped cells with their reasons), then real Aria smears when
../shared is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leuk.serving import ModelRegistry
from leuk.serving.cells import (
    CNMC_CANVAS,
    CNMC_CELL_DIAMETER,
    SKIP_BORDER,
    SKIP_OVERLAP,
    SKIP_SMALL,
    classify_smear,
    classify_smears,
    cut_out,
    find_cells,
)

REPO = Path(__file__).resolve().parents[1]
ARIA = REPO.parent / "shared" / "datasets" / "aria-real" / "Original"
REFERENCE = REPO / "assets" / "aria_reference"
from leuk.experiments.aria_protocols import reference_mask_path  # noqa: E402

BACKGROUND = (238, 234, 240)
RED_CELL = (204, 198, 216)  # pale grey-violet, as red cells of a May-Gruenwald-Giemsa smear
WHITE_CELL = (120, 70, 175)  # violet cytoplasm
NUCLEUS = (80, 30, 140)


def disc(shape: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2


def smear(white: list[tuple[float, float, float]], *, size: int = 256, red: int = 24, seed: int = 0) -> np.ndarray:
    """A smear with red cells (kept off the white cells) and white cells at (cx, cy, radius)."""
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.float32)
    image[:] = BACKGROUND
    placed = 0
    while placed < red:
        cx, cy = rng.uniform(0, size, 2)
        if any(np.hypot(cx - x, cy - y) < r + 16 for x, y, r in white):
            continue
        image[disc((size, size), cx, cy, 11)] = RED_CELL
        placed += 1
    for cx, cy, r in white:
        image[disc((size, size), cx, cy, r)] = WHITE_CELL
        image[disc((size, size), cx + 0.1 * r, cy, 0.6 * r)] = NUCLEUS
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(["demo:efficientnet-se"], device="cpu")


def nonblack(crop: np.ndarray) -> np.ndarray:
    return crop.max(axis=2) > 0


def test_one_white_cell_is_found_cut_out_onto_black_at_the_cnmc_scale(registry):
    image = smear([(100, 120, 30)])
    result = classify_smears([image], "demo:efficientnet-se", names=["one.png"], segmenter="classical",
                             registry=registry)
    (only,) = result.smears
    assert len(only.cells) == 1 and not only.skipped
    cell = only.cells[0]
    x0, y0, x1, y1 = cell.box
    assert abs(x0 - 70) <= 2 and abs(y0 - 90) <= 2 and abs(x1 - 131) <= 2 and abs(y1 - 151) <= 2
    assert cell.diameter == pytest.approx(60, abs=3)
    assert cell.scale == pytest.approx(CNMC_CELL_DIAMETER / cell.diameter)
    crop = cell.crop
    assert crop.shape == (CNMC_CANVAS, CNMC_CANVAS, 3) and crop.dtype == np.uint8
    inside = nonblack(crop)
    rows, cols = np.nonzero(inside)
    assert np.sqrt(4 * inside.sum() / np.pi) == pytest.approx(CNMC_CELL_DIAMETER, rel=0.04)
    assert rows.mean() == pytest.approx(CNMC_CANVAS / 2, abs=4) and cols.mean() == pytest.approx(CNMC_CANVAS / 2, abs=4)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[:40].max() == 0  # black around the cell, as in C-NMC
    assert cell.result is not None and cell.result.label in ("hem", "all")
    assert cell.result.verdict.word in ("confident", "uncertain")
    table = result.table()
    assert list(table["row"]) == ["cell", "smear"]
    smear_row = table[table["row"] == "smear"].iloc[0]
    assert smear_row["cells_found"] == 1 and smear_row["classified"] == 1
    if cell.result.assessed:
        assert smear_row["label"] == cell.result.label
        assert smear_row["share_all"] == (1.0 if cell.result.label == "all" else 0.0)
    else:  # a drawn cell unlike the real C-NMC cells: no call, and the smear reading says so
        assert smear_row["label"] == "not assessed" and smear_row["not_assessed_cells"] == 1
        assert pd.isna(smear_row["share_all"]) and "1 not assessed" in only.headline
        assert only.gallery()[0][1].startswith("one.png cell 1: not assessed")
    assert "1 white cell found" in only.headline and "colour threshold" in only.segmenter
    assert max(only.annotated().size) == 1024 and len(only.gallery()) == 1


def test_a_smear_of_red_cells_only_says_so_and_classifies_nothing(registry):
    result = classify_smear(smear([], red=40), "demo:efficientnet-se", segmenter="auto", registry=registry)
    assert result.cells == [] and result.classified == [] and result.aggregate is None
    assert "no white cell found" in result.headline and "nothing classified" in result.headline
    assert result.row()["note"] == "no white cell found" and result.row()["classified"] == 0


def test_touching_cells_are_split_and_overlapping_border_and_tiny_ones_are_skipped_with_the_reason(registry):
    size = 320
    image = smear([(60, 60, 25), (108, 60, 25),  # touching: centres 48 px apart, radii 25
                   (315, 150, 25),  # cut by the right border
                   (230, 250, 28)], size=size, red=5)  # too few red cells for a ruler: the smear's own scale
    result = classify_smear(image, "demo:efficientnet-se", segmenter="classical", registry=registry)
    by_place = {(round(c.centroid[0] / 20), round(c.centroid[1] / 20)): c for c in result.cells}
    touching = [c for c in result.cells if c.centroid[1] < 100]
    assert len(touching) == 2 and all(c.skipped is None and c.result is not None for c in touching)
    assert sorted(round(c.centroid[0]) for c in touching) == pytest.approx([59, 109], abs=3)
    border = [c for c in result.cells if c.centroid[0] > 290]
    assert len(border) == 1 and border[0].skipped == SKIP_BORDER and border[0].crop is None
    assert len(result.classified) == 3 and len(by_place) == len(result.cells) == 4
    row = result.row()
    assert row["skipped"] == 1 and row[f"skipped {SKIP_BORDER}"] == 1 and row[f"skipped {SKIP_OVERLAP}"] == 0

    # on a mask: two discs whose centres are 40 px apart (radii 25) are split but share a long edge: overlapping;
    # a fragment much smaller than the smear's cells is too small
    shape = (240, 240)
    mask = (disc(shape, 60, 60, 25) | disc(shape, 100, 60, 25) | disc(shape, 60, 170, 30)
            | disc(shape, 170, 170, 6))
    cells = find_cells(np.full(shape + (3,), 200, np.uint8), mask)
    assert len(cells) == 4
    pair = [c for c in cells if c.centroid[1] < 100]
    assert sorted(round(c.centroid[0]) for c in pair) == pytest.approx([55, 105], abs=4)
    assert all(c.skipped.startswith(SKIP_OVERLAP) for c in pair)
    whole, fragment = sorted((c for c in cells if c.centroid[1] > 100), key=lambda c: -c.area)
    assert whole.skipped is None and fragment.skipped.startswith(SKIP_SMALL)


def test_the_smear_scale_keeps_relative_sizes_and_the_cell_scale_equalises_them(registry):
    image = smear([(70, 128, 20), (180, 128, 30)], red=12)
    per_cell = classify_smear(image, "demo:efficientnet-se", segmenter="classical", registry=registry)
    per_smear = classify_smear(image, "demo:efficientnet-se", segmenter="classical", scale="smear",
                               registry=registry)

    def diameters(result):
        cells = sorted(result.cells, key=lambda c: c.centroid[0])  # the small cell is on the left
        return [np.sqrt(4 * nonblack(c.crop).sum() / np.pi) for c in cells]

    assert diameters(per_cell) == pytest.approx([CNMC_CELL_DIAMETER] * 2, rel=0.05)
    small, large = diameters(per_smear)
    assert large / small == pytest.approx(1.5, rel=0.06)
    assert np.median([small, large]) == pytest.approx(CNMC_CELL_DIAMETER, rel=0.05)


def test_cut_out_centres_a_cell_and_shrinks_a_scale_that_would_not_fit():
    rgb = np.full((100, 100, 3), 90, np.uint8)
    mask = disc((100, 100), 30, 40, 10)
    crop = cut_out(rgb, mask, 100.0)  # 20 px x 100 would be 2000 px: shrunk to 95% of the canvas
    rows, cols = np.nonzero(nonblack(crop))
    assert cols.max() - cols.min() + 1 <= 0.96 * CNMC_CANVAS and rows.min() > 0 and cols.min() > 0
    assert set(np.unique(crop[nonblack(crop)])) == {90}


def test_an_unreadable_smear_gets_its_row_and_the_others_are_processed(registry, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    good = tmp_path / "good.png"
    from PIL import Image

    Image.fromarray(smear([(128, 128, 30)])).save(good)
    result = classify_smears([str(bad), str(good)], "demo:efficientnet-se", segmenter="classical",
                             registry=registry)
    assert result.smears[0].error and "broken.png" in result.smears[0].error
    assert len(result.smears[1].classified) == 1 and result.aggregate is not None
    assert list(result.table()["row"]) == ["cell", "smear", "smear", "patient"]
    from leuk.errors import ImageReadError, LeukError

    with pytest.raises(ImageReadError, match="broken.png"):
        classify_smears([str(bad)], "demo:efficientnet-se", registry=registry)
    with pytest.raises(LeukError, match="unknown segmenter"):
        classify_smears([str(good)], "demo:efficientnet-se", segmenter="magic", registry=registry)


# ------------------------------------------------------------------------------------------- real smears


def _reference_single_cell() -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray]:
    """A window of a real reviewed Aria smear holding exactly one whole reference cell, and one of red cells only."""
    import csv

    import cv2
    from PIL import Image

    with open(REFERENCE / "reviewed.csv", newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["source"] == "classical"]
    for row in rows:
        label, name = row["image"].split("/")
        mask = np.asarray(Image.open(reference_mask_path(REFERENCE, f"{label}/{name}")).convert("L")) > 127
        rgb = np.asarray(Image.open(ARIA / row["image"]).convert("RGB"))
        count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
        for k in range(1, count):
            x, y, w, h, area = stats[k]
            x0, y0, x1, y1 = x - 15, y - 15, x + w + 15, y + h + 15
            if area < 400 or x0 < 0 or y0 < 0 or x1 > mask.shape[1] or y1 > mask.shape[0]:
                continue
            window = components[y0:y1, x0:x1]
            if set(np.unique(window)) == {0, k}:
                empty = next(((ey, ex) for ey in range(0, 224 - 64, 16) for ex in range(0, 224 - 64, 16)
                              if not mask[ey:ey + 64, ex:ex + 64].any()), None)
                if empty is not None:
                    ey, ex = empty
                    return rgb[y0:y1, x0:x1], (15, 15, 15 + w, 15 + h), rgb[ey:ey + 64, ex:ex + 64]
    pytest.skip("no reviewed smear holds an isolated cell")


@pytest.mark.skipif(not ARIA.is_dir(), reason="needs ../shared/datasets/aria-real")
def test_a_real_smear_with_one_white_cell_and_one_with_red_cells_only(registry):
    one_cell, box, red_only = _reference_single_cell()
    result = classify_smears([one_cell, red_only], "demo:efficientnet-se", names=["one", "red"],
                             segmenter="classical", registry=registry)
    found, empty = result.smears
    assert len(found.cells) == 1 and len(found.classified) == 1
    x0, y0, x1, y1 = found.cells[0].box
    assert abs(x0 - box[0]) <= 3 and abs(y0 - box[1]) <= 3 and abs(x1 - box[2]) <= 3 and abs(y1 - box[3]) <= 3
    assert nonblack(found.cells[0].crop)[:30].sum() == 0
    assert empty.cells == [] and "no white cell found" in empty.headline
    table = result.table()
    assert list(table["row"]) == ["cell", "smear", "smear", "patient"]


# ------------------------------------------------------------------------------------------------- CLI


def test_leuk_predict_cells_writes_a_row_per_cell_with_its_box_and_a_smear_row(tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    from leuk.cli import main

    one, empty, broken = tmp_path / "one.png", tmp_path / "red.png", tmp_path / "broken.jpg"
    Image.fromarray(smear([(100, 120, 30)])).save(one)
    Image.fromarray(smear([], red=40)).save(empty)
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "cells.csv"
    code = main(["predict", "--cells", "--segmenter", "classical", "--model", "demo:efficientnet-se",
                 str(one), str(empty), str(broken), "--csv", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.splitlines()[0].split()[:4] == ["smear", "cell", "box", "status"]
    assert "one.png: 1 white cell found" in captured.out and "red.png: no white cell found" in captured.out
    assert "patient (3 smears)" in captured.out
    assert any(line.startswith("error:") and "broken.jpg" in line for line in captured.err.splitlines())
    table = pd.read_csv(out)
    assert list(table["row"]) == ["cell", "smear", "smear", "smear", "patient"]
    cell = table.iloc[0]
    assert (cell["smear"], cell["cell"], cell["status"]) == ("one.png", 1, "classified")
    assert abs(cell["x0"] - 70) <= 2 and abs(cell["y1"] - 151) <= 2 and cell["label"] in ("hem", "all")
    rows = table[table["row"] == "smear"].set_index("smear")
    assert rows.loc["one.png", "classified"] == 1 and rows.loc["red.png", "cells_found"] == 0
    assert rows.loc["red.png", "note"] == "no white cell found" and "broken.jpg" in rows.loc["broken.jpg", "note"]


# ------------------------------------------------------------------ the red-cell ruler and scale invariance


def crowded_smear(white: list[tuple[float, float, float]], *, size: int = 320, red: int = 110, seed: int = 1):
    """A smear with many red cells (22 px across, allowed to touch each other) around the white cells."""
    return smear(white, size=size, red=red, seed=seed)


def test_the_red_cells_are_read_as_a_ruler_at_any_magnification():
    import cv2

    from leuk.serving.detection import working_scale
    from leuk.serving.smear_geometry import red_cell_ruler

    image = crowded_smear([(160, 160, 24)])
    (one, factor_one), (two, factor_two) = (
        working_scale(image), working_scale(cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)))
    assert one is not None and two is not None
    assert factor_one == pytest.approx(2 * factor_two, rel=0.15)
    assert 22 * 0.8 <= one.diameter <= 22 * 1.25  # drawn 22 px across
    # every whole radius around the granulometry's peak: 2.3% apart (5% when the radii stepped by 2 px at 2x)
    assert abs(two.diameter / one.diameter - 2) <= 0.06
    assert one.count >= 50 and "used as the ruler" in one.text()
    assert red_cell_ruler(np.full((200, 200, 3), 240, np.uint8)) is None  # nothing to read


@pytest.mark.parametrize("segmenter", ["auto", "classical"])
def test_a_smear_and_its_2x_enlargement_give_the_same_cells(segmenter):
    """Found at the red-cell scale: the same count, and every box within 10% of the cell's size after rescaling
    (``auto``: the learned detector, as the apps run it by default; ``classical``: the colour rule)."""
    import cv2

    from leuk.serving.detection import find_white_cells

    image = crowded_smear([(90, 100, 26), (230, 210, 22), (220, 80, 30)])
    one = find_white_cells(image, segmenter)
    two = find_white_cells(cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), segmenter)
    assert one.found_by == two.found_by and one.found_by.startswith(
        "white-cell detector" if segmenter == "auto" else "colour threshold")
    assert one.ruler is not None and two.ruler is not None and two.factor < one.factor
    assert len(one.cells) == len(two.cells) == 3
    for a, b in zip(sorted(c.box for c in one.cells), sorted(c.box for c in two.cells)):
        side = max(a[2] - a[0], a[3] - a[1])
        assert all(abs(u - v / 2) <= 0.1 * side for u, v in zip(a, b)), (a, b)


def test_one_white_cell_among_a_hundred_red_cells_is_exactly_one(registry):
    image = crowded_smear([(170, 150, 26)], size=360, red=140)
    result = classify_smears([image], "demo:efficientnet-se", names=["one.png"], registry=registry)
    (only,) = result.smears
    assert only.ruler is not None and only.ruler.count >= 100
    assert only.segmenter.startswith("white-cell detector")  # the default finder
    assert len(only.cells) == 1 and len(only.classified) == 1
    assert only.headline.startswith("one.png: 1 white cell found") and "used as the ruler" in only.headline
    row = result.table().iloc[-1]
    assert row["red_cells"] == only.ruler.count


def test_the_boxes_are_drawn_in_proportion_to_the_picture():
    """The annotated smear is always ANNOTATED_SIDE px long, its lines a fixed share of it, whatever the smear's size."""
    from leuk.serving.cells import ANNOTATED_SIDE, box_line_unit

    assert box_line_unit((ANNOTATED_SIDE, 768)) == 3 and box_line_unit((2592, 1944)) == 6
    assert box_line_unit((100, 80)) == 1


def test_a_smear_that_is_cell_from_edge_to_edge_gives_a_row_not_a_crash(registry):
    """A picture the colour rule takes for one cell from edge to edge (no background pixel: every distance would
    be infinite) is split like any other mask; the other smears of the request are processed."""
    from leuk.serving.smear_geometry import distance_peaks, find_cells

    violet = np.zeros((120, 160, 3), np.uint8)
    violet[:] = WHITE_CELL
    cells = find_cells(violet, np.ones(violet.shape[:2], bool), seeds=distance_peaks(np.ones((120, 160), bool), 6, 3))
    assert cells and all(np.isfinite(c.diameter) for c in cells)
    result = classify_smears([violet, smear([(100, 120, 30)])], "demo:efficientnet-se", names=["full.png", "one.png"],
                             segmenter="classical", registry=registry)
    assert [s.name for s in result.smears] == ["full.png", "one.png"]
    assert len(result.smears[1].classified) == 1


def test_the_bundled_smears_read_one_ruler_and_no_crowd_of_cells():
    """The 12 bundled Aria samples are drawn at one magnification: the ruler reads them alike (within 20% of their
    median) and none gives more than 8 cells (they hold 2-5; ``Early_1``'s violet-pink red cells once emptied its
    ruler's red-cell count and gave 38)."""
    import cv2

    from leuk.serving.detection import find_white_cells

    samples = sorted((Path(__file__).resolve().parents[1] / "assets" / "samples" / "aria").glob("*.jpg"))
    assert len(samples) == 12
    found = {path.stem: find_white_cells(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), "classical")
             for path in samples}
    diameters = {name: f.ruler.diameter for name, f in found.items() if f.ruler is not None}
    assert len(diameters) == 12
    median = float(np.median(list(diameters.values())))
    assert all(abs(d / median - 1) <= 0.2 for d in diameters.values()), diameters
    assert all(1 <= len(f.cells) <= 8 for f in found.values()), {n: len(f.cells) for n, f in found.items()}
    # their red cells are drawn pink, a stain the learned detector never saw: the default finder is the colour rule
    auto = find_white_cells(cv2.cvtColor(cv2.imread(str(samples[0])), cv2.COLOR_BGR2RGB))
    assert auto.found_by.startswith("colour threshold") and "unlike the" in auto.found_by
    assert [c.box for c in auto.cells] == [c.box for c in found[samples[0].stem].cells]


def test_pink_red_cells_are_not_white_cells(registry):
    """Red cells drawn pink, as in Wright-stained smears (OpenCV hue ~175), around one violet white cell: one cell,
    and the red cells read as the ruler."""
    rng = np.random.default_rng(3)
    size = 320
    image = np.empty((size, size, 3), np.float32)
    image[:] = (246, 240, 242)
    for _ in range(120):
        cx, cy = rng.uniform(0, size, 2)
        if np.hypot(cx - 160, cy - 160) < 45:
            continue
        image[disc((size, size), cx, cy, 11)] = (232, 150, 165)  # pink
    image[disc((size, size), 160, 160, 26)] = WHITE_CELL
    image[disc((size, size), 163, 160, 16)] = NUCLEUS
    image = np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)
    from leuk.serving.detection import find_white_cells, working_scale

    found = find_white_cells(image, "classical")
    assert len(found.cells) == 1
    assert found.ruler is not None and 22 * 0.75 <= found.ruler.diameter <= 22 * 1.3
    assert found.ruler.hue is not None and found.ruler.hue > 160  # pink, past the wrap of the hue circle
    # the grey-violet red cells of the other drawn smears read as the Aria smears' (hue about 100-145)
    assert 100 <= working_scale(crowded_smear([(160, 160, 24)]))[0].hue <= 145


def test_two_overlapping_cells_are_cut_at_their_notches_and_one_big_cell_is_not():
    """Concave-point cutting (``concave_cut``): two overlapping discs of two red-cell diameters are cut into their
    two halves at any magnification (sizes in red-cell diameters), one large round cell and an oval stay whole,
    and ``find_cells`` with the ruler cuts the region a single watershed seed left merged."""
    import cv2

    from leuk.serving.smear_geometry import concave_cut

    for scale in (1, 2):
        shape = (80 * scale, 100 * scale)
        two = disc(shape, 40 * scale, 40 * scale, 13 * scale) | disc(shape, 58 * scale, 40 * scale, 13 * scale)
        parts = concave_cut(two, 13.0 * scale)
        assert len(parts) == 2 and not (parts[0] & parts[1]).any() and (parts[0] | parts[1]).sum() == two.sum()
        centres = sorted(np.nonzero(p)[1].mean() / scale for p in parts)
        assert abs(centres[0] - 39) < 3 and abs(centres[1] - 59) < 3
        assert len(concave_cut(disc((120 * scale, 120 * scale), 60 * scale, 60 * scale, 30 * scale), 13.0 * scale)) == 1
        oval = cv2.ellipse(np.zeros((80 * scale, 120 * scale), np.uint8), (60 * scale, 40 * scale),
                           (35 * scale, 18 * scale), 0, 0, 360, 1, -1).astype(bool)
        assert len(concave_cut(oval, 13.0 * scale)) == 1
    two = disc((80, 100), 40, 40, 13) | disc((80, 100), 58, 40, 13)
    seed = np.zeros(two.shape, bool)
    seed[40, 49] = True
    grey = np.full((80, 100, 3), 200, np.uint8)
    assert len(find_cells(grey, two, seeds=seed)) == 1
    assert len(find_cells(grey, two, seeds=seed, concave_ruler=13.0)) == 2


def test_a_region_at_the_blue_edge_of_the_violet_rule_is_red_cells_not_a_white_cell():
    """``min_region_hue`` (:data:`WHITE_REGION_HUE_MIN`): a saturated region at hue 115, the violet rule's floor
    (the grey-blue red cells of pale smears), is dropped whole; a violet white cell (hue 125) stays."""
    import cv2

    from leuk.segmentation import WHITE_REGION_HUE_MIN, classical_cell_mask

    shape = (120, 200)
    hsv = np.zeros((*shape, 3), np.uint8)
    hsv[:] = (100, 10, 245)  # near-white background
    violet, blue = disc(shape, 50, 60, 22), disc(shape, 150, 60, 22)
    hsv[violet] = (125, 150, 200)
    hsv[blue] = (115, 150, 200)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    both = classical_cell_mask(rgb, min_area=50)
    assert both[60, 50] and both[60, 150]
    kept = classical_cell_mask(rgb, min_area=50, min_region_hue=WHITE_REGION_HUE_MIN)
    assert kept[60, 50] and not kept[:, 100:].any()
    assert (kept[:, :100] == both[:, :100]).all()


def test_the_mask_grows_into_the_pale_part_of_a_white_cell_but_not_into_red_cells():
    """``grow_hue_min`` (:data:`WHITE_GROW_HUE_MIN`): the pale violet cytoplasm of a cell (under the saturation
    threshold) joins the mask through the cell's saturated nucleus; a pale grey-blue red cell touching it and a pale
    violet disc touching nothing saturated stay out."""
    import cv2

    from leuk.segmentation import WHITE_GROW_HUE_MIN, classical_cell_mask

    shape = (120, 260)
    hsv = np.zeros((*shape, 3), np.uint8)
    hsv[:] = (100, 10, 245)  # near-white background
    cell, red, alone = disc(shape, 60, 60, 30), disc(shape, 60 + 52, 60, 22), disc(shape, 210, 60, 22)
    hsv[cell] = (130, 65, 220)  # pale cytoplasm
    hsv[red & ~cell] = (110, 65, 220)
    hsv[alone] = (130, 65, 220)
    hsv[disc(shape, 50, 60, 14)] = (128, 160, 180)  # the nucleus
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    plain = classical_cell_mask(rgb, min_area=50)
    grown = classical_cell_mask(rgb, min_area=50, grow_hue_min=WHITE_GROW_HUE_MIN)
    assert plain[60, 50] and not plain[60, 82]
    assert grown[60, 82] and grown[35, 60] and grown[85, 60]  # the whole cell
    assert not grown[60, 115] and not grown[:, 180:].any()
