"""The learned white-cell detector (leuk.cell_detector, leuk.training.cell_detector): box matching checked against
torchvision, decoding, training targets and augmentation, a seeded run, the bundled weights, and the detector as
the smear path runs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leuk.cell_detector import (
    STRIDE,
    CellCentreEnsemble,
    CellCentreNet,
    LoadedCellDetector,
    decode,
    load_cell_detector,
    save_cell_detector,
    standardise,
)
from leuk.metrics import box_iou, match_boxes
from leuk.training.cell_detector import (BoxedSmear, DetectorRecipe, augment, choose_threshold, cut_by_crop, targets,
                                         train_detector)


def test_box_iou_agrees_with_torchvision():
    from torchvision.ops import box_iou as oracle

    rng = np.random.default_rng(0)
    corners = rng.integers(0, 60, (40, 2))
    boxes = np.concatenate([corners, corners + rng.integers(1, 30, (40, 2))], axis=1).astype(float)
    expected = oracle(torch.from_numpy(boxes), torch.from_numpy(boxes)).numpy()
    ours = np.array([[box_iou(a, b) for b in boxes] for a in boxes])
    np.testing.assert_allclose(ours, expected, atol=1e-9)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_matching_is_one_to_one_and_a_detection_on_a_smudge_is_not_counted():
    truth = [(0, 0, 10, 10), (20, 0, 30, 10)]
    # two detections on the first cell (only one can match), one on the second, one on a smudge, one on nothing
    found = [(0, 0, 10, 10), (1, 0, 11, 10), (21, 0, 31, 10), (50, 50, 60, 60), (80, 80, 90, 90)]
    matched, counted = match_boxes(truth, found, ignore=[(50, 50, 60, 60)])
    assert (matched, counted) == (2, 4)  # precision 2/4, recall 2/2
    assert match_boxes(truth, [(0, 0, 10, 30)]) == (0, 1)  # IoU 1/3 is not a find
    assert match_boxes([], []) == (0, 0)


def test_decode_finds_each_peak_once_with_its_box():
    h, w = 40, 50
    out = torch.full((3, h, w), -8.0)
    out[1:] = np.log(2.0)  # boxes 2 size units (26 px) everywhere
    for x, y, score in ((10, 12, 4.0), (30, 25, 1.0)):
        out[0, y, x] = score
        out[0, y, x + 1] = score - 0.5  # a shoulder next to the peak is not a second cell
    found = decode(out, threshold=0.5, size_unit=13.0, shape=(2 * h, 2 * w))
    assert [d.centre for d in found] == [(21.0, 25.0), (61.0, 51.0)]  # strongest first, at the pixel centre
    assert found[0].box == (8, 12, 34, 38)
    assert found[1].box == (48, 38, 74, 64)
    assert decode(out, threshold=0.9, size_unit=13.0, shape=(2 * h, 2 * w))[0].score > 0.9
    assert len(decode(out, threshold=0.99, size_unit=13.0, shape=(2 * h, 2 * w))) == 0


def test_standardise_is_per_image_and_needs_nothing_fitted():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (32, 40, 3)).astype(np.uint8)
    x = standardise(rgb)
    assert x.shape == (3, 32, 40) and x.dtype == np.float32
    np.testing.assert_allclose(x.reshape(3, -1).mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(x.reshape(3, -1).std(1), 1, atol=1e-2)
    brighter = np.clip(rgb.astype(int) // 2 + 100, 0, 255).astype(np.uint8)  # a darker stain, a brighter lamp
    np.testing.assert_allclose(standardise(brighter), x, atol=0.05)


def drawn(cells, size=96):
    """A pale picture with violet discs at (cx, cy, r)."""
    rgb = np.full((size, size, 3), 235, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for cx, cy, r in cells:
        rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2] = (110, 60, 170)
    return rgb


def test_targets_peak_at_each_centre_and_ignore_smudges_and_padding():
    white = np.array([[10, 10, 30, 30], [50, 20, 70, 44]], np.float32)
    smudge = np.array([[60, 60, 80, 80]], np.float32)
    void = np.zeros((96, 96), bool)
    void[:, 90:] = True
    heat, weight, sizes, centres = targets((96, 96), white, smudge, void, size_unit=13.0)
    assert heat.shape == (48, 48) and centres.sum() == 2
    assert heat[10, 10] == 1.0 and heat[16, 30] == 1.0  # (20, 20) and (60, 32) at stride 2
    np.testing.assert_allclose(sizes[:, 16, 30], np.log([20 / 13, 24 / 13]), rtol=1e-6)
    assert weight[35, 35] == 0 and weight[20, 46] == 0 and weight[40, 10] == 1


def test_augmented_crops_keep_their_boxes_on_their_cells():
    """After turns, flips, rescaling and cropping, every target box still frames a violet disc."""
    cells = [(30, 30, 10), (70, 40, 12), (40, 75, 9)]
    smear = BoxedSmear(rgb=drawn(cells, 110), white=[(cx - r, cy - r, cx + r + 1, cy + r + 1) for cx, cy, r in cells],
                       smudge=[])
    recipe = DetectorRecipe(crop=80)
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(30):
        rgb, white, ignore, void = augment(smear, recipe, rng)
        assert rgb.shape == (80, 80, 3) and void.shape == (80, 80)
        for x0, y0, x1, y1 in white:
            cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
            assert rgb[min(cy, 79), min(cx, 79), 2] > rgb[min(cy, 79), min(cx, 79), 1] + 40  # violet at the centre
            checked += 1
    assert checked > 30


def test_smudges_are_ignored_or_background_as_the_recipe_says():
    """Under ``smudges="background"`` (the default) a smudge box is background like the rest of the smear, so its
    pixels weigh in the loss; under ``"ignored"`` (the recipe before) it is left out of the loss."""
    smear = BoxedSmear(rgb=drawn([(30, 30, 10), (66, 66, 12)]), white=[(20, 20, 41, 41)], smudge=[(54, 54, 79, 79)])
    weights = {}
    assert DetectorRecipe().smudges == "background"
    for smudges in ("ignored", "background"):
        recipe = DetectorRecipe(crop=96, scale_range=(1.0, 1.0), smudges=smudges)
        rgb, white, ignore, void = augment(smear, recipe, np.random.default_rng(0))
        assert len(white) == 1 and len(ignore) == (1 if smudges == "ignored" else 0)
        _, weight, _, _ = targets(rgb.shape[:2], white, ignore, void, recipe.size_unit)
        weights[smudges] = weight
    # the smudge lands somewhere after the turns and flip, but it is the one place the two weights differ
    assert (weights["ignored"] == 0).sum() >= 100 and (weights["background"] == 1).all()
    with pytest.raises(ValueError, match="smudges"):
        DetectorRecipe(smudges="negative")


def test_a_cell_the_crop_cuts_is_a_target_while_most_of_it_shows_and_ignored_after():
    boxes = np.array([[10, 10, 30, 30],     # inside: kept as is
                      [-10, 40, 10, 60],    # half shows at the left edge: a target, cut
                      [70, -16, 90, 4],     # a fifth shows at the top (under 30%): ignored
                      [100, 10, 120, 30]],  # wholly outside: dropped
                     np.float32)
    kept, ignored = cut_by_crop(boxes, 80, keep_visible=0.3)
    np.testing.assert_array_equal(kept, [[10, 10, 30, 30], [0, 40, 10, 60]])
    np.testing.assert_array_equal(ignored, [[70, 0, 80, 4]])


@pytest.fixture(scope="module")
def tiny_run():
    """A detector trained for a few steps on drawn smears (twice, to check the seed)."""
    rng = np.random.default_rng(0)
    smears = []
    for _ in range(6):
        cells = [(rng.uniform(15, 81), rng.uniform(15, 81), rng.uniform(8, 12)) for _ in range(2)]
        smears.append(BoxedSmear(rgb=drawn(cells), white=[(cx - r, cy - r, cx + r, cy + r) for cx, cy, r in cells],
                                 smudge=[]))
    recipe = DetectorRecipe(steps=6, batch=4, crop=64)
    losses: list[float] = []
    first = train_detector(smears, recipe, progress=lambda step, loss: losses.append(loss))
    second = train_detector(smears, recipe)
    return smears, recipe, first, second, losses


def test_a_seeded_training_run_repeats_exactly(tiny_run):
    smears, recipe, first, second, losses = tiny_run
    assert len(losses) == recipe.steps and all(np.isfinite(losses))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    threshold, figures = choose_threshold(first, smears, recipe.size_unit)
    assert 0.2 <= threshold <= 0.5 and figures["smears"] == len(smears)


def test_saved_weights_load_back_and_detect_alike(tiny_run, tmp_path):
    smears, recipe, net, _, _ = tiny_run
    save_cell_detector(net, tmp_path, {"threshold": 0.3, "size_unit": recipe.size_unit, "note": "test"})
    loaded = load_cell_detector(tmp_path)
    assert loaded.threshold == 0.3 and loaded.meta["note"] == "test"
    pixels = torch.from_numpy(standardise(smears[0].rgb))[None]
    with torch.no_grad():
        np.testing.assert_allclose(loaded.net(pixels).numpy(), net(pixels).numpy(), atol=0.05)  # float16 on disk
    with pytest.raises(ValueError, match="threshold"):
        save_cell_detector(net, tmp_path / "bad", {"size_unit": 13.0})


def test_an_ensemble_reads_the_mean_of_its_networks_probabilities_and_sizes(tiny_run, tmp_path):
    """Two networks read as one: the centre probability is the mean of theirs (a logit, so decode's thresholds apply
    alike), the log box sizes the mean of theirs; saved and loaded back it is still two networks."""
    smears, recipe, trained, _, _ = tiny_run
    torch.manual_seed(3)
    other = CellCentreNet().eval()  # a second, different network
    both = CellCentreEnsemble([trained, other]).eval()
    pixels = torch.from_numpy(standardise(smears[0].rgb))[None]
    with torch.no_grad():
        a, b, mean = trained(pixels), other(pixels), both(pixels)
        alone = CellCentreEnsemble([trained])(pixels)
    np.testing.assert_allclose(torch.sigmoid(mean[:, 0]).numpy(),
                               ((torch.sigmoid(a[:, 0]) + torch.sigmoid(b[:, 0])) / 2).numpy(), atol=1e-5)
    np.testing.assert_allclose(mean[:, 1:].numpy(), ((a[:, 1:] + b[:, 1:]) / 2).numpy(), atol=1e-6)
    np.testing.assert_allclose(torch.sigmoid(alone[:, 0]).numpy(), torch.sigmoid(a[:, 0]).numpy(), atol=1e-6)
    save_cell_detector(both, tmp_path, {"threshold": 0.3, "size_unit": recipe.size_unit})
    loaded = load_cell_detector(tmp_path)
    assert isinstance(loaded.net, CellCentreEnsemble) and len(loaded.net.members) == 2
    assert loaded.meta["members"] == 2
    with torch.no_grad():
        np.testing.assert_allclose(loaded.net(pixels).numpy(), mean.numpy(), atol=0.05)  # float16 on disk
    with pytest.raises(ValueError, match="at least one"):
        CellCentreEnsemble([])


def test_the_mirrored_reading_averages_four_views_of_the_smear(tiny_run):
    """``flips``: the mean of the smear as it is and mirrored three ways, each view's maps mirrored back."""
    from leuk.cell_detector import predict_maps

    smears, _, net, _, _ = tiny_run
    rgb = smears[1].rgb
    plain = predict_maps(net, rgb)
    with torch.no_grad():
        assert torch.allclose(plain, net(torch.from_numpy(standardise(rgb))[None])[0])
        views = [net(torch.from_numpy(standardise(np.ascontiguousarray(v)))[None])[0]
                 for v in (rgb, rgb[:, ::-1], rgb[::-1], rgb[::-1, ::-1])]
    back = [views[0], views[1].flip(-1), views[2].flip(-2), views[3].flip(-1).flip(-2)]
    expected_heat = torch.stack([v[0].sigmoid() for v in back]).mean(0)
    both = predict_maps(net, rgb, flips=True)
    assert both.shape == plain.shape
    assert torch.allclose(both[0].sigmoid(), expected_heat, atol=1e-5)
    assert torch.allclose(both[1:], torch.stack([v[1:] for v in back]).mean(0), atol=1e-5)


def test_a_folder_without_a_detector_says_how_to_get_one(tmp_path):
    from leuk.errors import LeukError

    with pytest.raises(LeukError, match="train_cell_detector.py"):
        load_cell_detector(tmp_path)


def test_the_bundled_detector_loads_with_its_recipe_and_cross_validated_figures():
    loaded = load_cell_detector()
    meta = loaded.meta
    assert isinstance(loaded.net, CellCentreNet) and 0.2 <= loaded.threshold <= 0.5 and loaded.size_unit == 13.0
    assert "Aria" in meta["trained_on"] and meta["recipe"]["seed"] == 0
    cv = meta["cross_validation"]
    assert cv["folds"] == 5 and cv["all"]["smears"] == 104
    assert set(cv["per_set"]) == {"mask-review", "extra"}
    assert set(cv["variants"]) == {"plain", "flips", "flips and scales"}
    # the shipped reading is the one the mask-review smears chose, and the figures shown are that reading's
    review = {name: v["per_set"]["mask-review"] for name, v in cv["variants"].items()}
    chosen = cv["variant"]
    assert (cv["flips"], tuple(cv["scales"])) == (loaded.flips, loaded.scales) == (meta["flips"], tuple(meta["scales"]))
    assert cv["all"] == cv["variants"][chosen]["all"]
    key = lambda f: (f["count_exact_share"], f["precision"] + f["recall"])
    assert all(key(review[chosen]) >= key(figures) for figures in review.values())


def test_the_detector_path_keeps_the_detector_boxes_and_gives_each_cell_its_pixels():
    """find_white_cells with a detector: one cell per box, the box as drawn, the mask inside it."""
    from leuk.serving.detection import find_white_cells

    class Fixed(LoadedCellDetector):
        def detect(self, rgb):
            from leuk.cell_detector import Detection

            return [Detection(box=(20, 20, 52, 52), centre=(36, 36), score=0.9),
                    Detection(box=(46, 24, 74, 50), centre=(60, 37), score=0.8)]

    image = drawn([(36, 36, 15), (60, 37, 12)], size=100)
    found = find_white_cells(image, "detector", detector=Fixed(net=CellCentreNet(), threshold=0.5, size_unit=13.0))
    assert found.found_by.startswith("white-cell detector")
    assert sorted(c.box for c in found.cells) == [(20, 20, 52, 52), (46, 24, 74, 50)]
    first, second = sorted(found.cells, key=lambda c: c.box)
    assert not (first.mask & second.mask).any()  # a shared pixel goes to one cell only
    x0, y0, x1, y1 = first.box
    assert first.mask[y0:y1, x0:x1].sum() == first.mask.sum() > 300
    assert all(c.skipped is not None and c.skipped.startswith("overlapping") for c in found.cells)


def test_the_multiscale_reading_averages_the_resized_views_on_the_smear_grid(tiny_run):
    """``scales``: each resized view's maps brought back to the smear's heatmap grid, its log sizes to the smear's
    pixels; one scale of 1 is the reading it was."""
    import cv2
    import torch.nn.functional as F

    from leuk.cell_detector import predict_maps

    smears, _, net, _, _ = tiny_run
    rgb = smears[1].rgb
    assert torch.equal(predict_maps(net, rgb, flips=True, scales=(1.0,)), predict_maps(net, rgb, flips=True))
    many = predict_maps(net, rgb, flips=True, scales=(0.85, 1.0, 1.15))
    assert many.shape == predict_maps(net, rgb).shape
    heats, sizes = [], []
    for scale in (1.0, 0.85, 1.15):
        view = rgb if scale == 1 else cv2.resize(rgb, None, fx=scale, fy=scale,
                                                 interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        out = predict_maps(net, view, flips=True)
        out = torch.cat([out[:1].sigmoid(), out[1:]])  # probabilities are what is resampled and averaged
        if out.shape != many.shape:
            out = F.interpolate(out[None], size=many.shape[-2:], mode="bilinear", align_corners=False)[0]
        heats.append(out[0])
        sizes.append(out[1:] - float(np.log(scale)))
    assert torch.allclose(many[0].sigmoid(), torch.stack(heats).mean(0), atol=1e-4)
    assert torch.allclose(many[1:], torch.stack(sizes).mean(0), atol=1e-4)
