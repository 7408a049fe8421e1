"""The serving layer's decisions that both apps show (issue #28 items 2, 8, 9b, 10): which samples a model takes,
an upload replacing a sample and results naming their file, numbers rounded for display, the IG steps setting and
its advice, an empty Grad-CAM said in words, Grad-CAM's heat on the black background masked, and the CLI's panel
without an empty cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_app_api import CNMC_SAMPLES, ARIA_SAMPLES, save_tiny_models, write_montecarlo_run


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    from leuk import serving

    folders = save_tiny_models(tmp_path_factory.mktemp("tiny"))
    return serving.ModelRegistry([folders["cnmc"], folders["aria"]], device="cpu"), folders


def test_each_model_is_offered_only_the_samples_of_its_task(registry):
    from leuk import serving

    reg, folders = registry
    cells = serving.samples_for_model(folders["cnmc"], registry=reg)
    smears = serving.samples_for_model(folders["aria"], registry=reg)
    assert serving.sample_task(folders["cnmc"], registry=reg) == "cnmc"
    assert serving.sample_task(folders["aria"], registry=reg) == "aria"
    assert cells and {s.task for s in cells} == {"cnmc"}
    assert smears and {s.task for s in smears} == {"aria"}


def test_an_upload_replaces_a_sample_and_says_so(tmp_path):
    from leuk import serving

    sample = CNMC_SAMPLES[0]
    copy = tmp_path / "cache" / sample.name  # Gradio's copy of the clicked sample
    copy.parent.mkdir()
    copy.write_bytes(sample.read_bytes())
    mine = tmp_path / sample.name  # the user's own file of the same name, other bytes
    mine.write_bytes(ARIA_SAMPLES[0].read_bytes())
    other = tmp_path / "patient_2.png"
    other.write_bytes(sample.read_bytes())
    assert serving.without_sample([str(copy), str(mine), str(other)], sample) == [str(mine), str(other)]
    assert serving.without_sample([str(copy)], None) == [str(copy)]

    chosen = serving.choose_input("mine.png", b"bytes", sample)
    assert chosen.image == b"bytes" and chosen.name == "mine.png"
    assert "mine.png" in chosen.note and sample.name in chosen.note and "set aside" in chosen.note
    only_sample = serving.choose_input(None, None, sample)
    assert only_sample.name == sample.name and only_sample.note == ""
    assert serving.choose_input(None, None, None) is None


def test_results_name_their_files(registry):
    from leuk import serving

    reg, folders = registry
    result = serving.classify([str(p) for p in CNMC_SAMPLES[:2]], folders["cnmc"], registry=reg)
    assert "Classified 2 images" in result.files_markdown
    assert all(f"`{p.name}`" in result.files_markdown for p in CNMC_SAMPLES[:2])
    explained = serving.explain_image(CNMC_SAMPLES[0].read_bytes(), folders["cnmc"], registry=reg,
                                      image_name="mine.png")
    assert "of `mine.png`" in explained.summary_markdown
    by_path = serving.explain_image(str(CNMC_SAMPLES[0]), folders["cnmc"], registry=reg)
    assert f"of `{CNMC_SAMPLES[0].name}`" in by_path.summary_markdown
    phases = serving.pipeline_stages(str(ARIA_SAMPLES[0]), folders["aria"], registry=reg)
    assert f"in `{ARIA_SAMPLES[0].name}`" in phases.summary_markdown


def test_displayed_numbers_are_rounded_and_headers_readable(registry, tmp_path, monkeypatch):
    from leuk import serving

    reg, folders = registry
    smears = serving.classify_smears([str(ARIA_SAMPLES[0])], folders["cnmc"], registry=reg, segmenter="classical")
    shown = smears.cell_table()
    probabilities = shown[[c for c in shown.columns if c.startswith("p_")]].stack().dropna()
    assert len(probabilities) and all(abs(v - round(v, 3)) < 1e-12 for v in probabilities)
    full = smears.table()
    assert any(abs(v - round(v, 3)) > 1e-9 for v in full[[c for c in full.columns if c.startswith("p_")]].stack().dropna())

    write_montecarlo_run(tmp_path / "results" / "run")
    monkeypatch.setenv("LEUK_RESULTS_DIR", str(tmp_path / "results"))
    report = serving.montecarlo_report(None, "f1_weighted", figures=False)
    table = report.pvalue_table()
    assert "t-test p" in table.columns and "Wilcoxon p (Holm)" in table.columns and "metric" not in table.columns
    assert not any("_" in column for column in table.columns)
    assert "t_pvalue" in report.pvalues.columns  # the raw table (API, downloads) keeps its names


def test_ig_steps_are_passed_through_and_the_gap_advice_names_the_setting(registry):
    from leuk import serving
    from leuk.serving.explanations import _app_note

    reg, folders = registry
    result = serving.explain_image(str(CNMC_SAMPLES[0]), folders["cnmc"], method="integrated_gradients",
                                   ig_steps=4, registry=reg)
    assert result.ig_steps == 4 and "4 steps" in result.summary_markdown
    assert [title for title, steps in serving.ig_steps_choices()][0].startswith("auto")
    advice = _app_note("completeness gap 22.1% of f(x) - f(baseline): raise n_steps for a more exact integral", 16)
    assert "n_steps" not in advice and "choose 64 under 'Integrated Gradients steps'" in advice
    assert "most IG steps" in _app_note("completeness gap 9.0% of f(x): raise n_steps", 256)


class _Explanation:
    def __init__(self, attribution: np.ndarray, method: str = "gradcam") -> None:
        self.attribution, self.method, self.label, self.target = attribution, method, "all", 0


def test_an_empty_gradcam_says_so_and_names_the_method_that_shows_the_call():
    from leuk.serving.explanations import _checked_map

    view = np.full((32, 32, 3), 120, np.uint8)
    _, caveats = _checked_map(_Explanation(np.zeros((32, 32), np.float32)), view)
    assert len(caveats) == 1 and "map is empty" in caveats[0] and "Integrated Gradients" in caveats[0]
    _, none = _checked_map(_Explanation(np.zeros((32, 32), np.float32), "integrated_gradients"), view)
    assert none == []


def test_gradcam_heat_on_the_black_background_is_masked_and_said():
    from leuk.serving.explanations import _checked_map

    view = np.zeros((32, 32, 3), np.uint8)
    view[8:24, 8:24] = 150  # a cell on black
    heat = np.ones((32, 32), np.float32)
    masked, caveats = _checked_map(_Explanation(heat), view)
    assert masked[0, 0] == 0 and masked[16, 16] == 1
    assert len(caveats) == 1 and "Background masked" in caveats[0] and "75%" in caveats[0]
    # a smear (no black background) is drawn as it is
    unmasked, none = _checked_map(_Explanation(heat), np.full((32, 32, 3), 200, np.uint8))
    assert none == [] and np.array_equal(unmasked, heat)


def test_the_cli_panel_has_no_empty_cell(registry, tmp_path, capsys):
    from leuk.cli import main

    _, folders = registry
    out = tmp_path / "cell.png"
    assert main(["explain", "--model", folders["cnmc"], "--method", "all", str(CNMC_SAMPLES[0]), "--out", str(out),
                 "--steps", "4", "--faithfulness-steps", "4", "--device", "cpu"]) == 0
    written = sorted(tmp_path.glob("cell-*.png"))
    assert len(written) == 5
    for path in written:
        picture = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        height, width = picture.shape
        # the bottom-left quarter (under the original) holds text: dark pixels, not a blank area
        quarter = picture[height // 2 + 10:height - 10, 10:width // 2 - 10]
        assert (quarter < 128).mean() > 0.005, path.name


def test_render_panel_fills_the_cell_under_the_original():
    import torch

    from leuk.explain import explain_many, render_panel
    from leuk.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet-se-test").eval()
    pixels = torch.rand(1, 3, 64, 64)
    exps = explain_many(model, pixels, ["gradcam"], faithfulness_steps=4)
    fig = render_panel(np.zeros((64, 64, 3), np.uint8), list(exps.values()), curves=True)
    texts = [t.get_text() for t in fig.axes[2].texts]
    assert texts and "explained:" in texts[0] and "deletion AUC" in texts[0]


@pytest.mark.parametrize("threshold", [0.01, 0.999])
def test_serving_renders_the_verdict_the_predictor_decides_at_the_threshold_in_force(registry, threshold):
    """The verdict is decided once, by the prediction engine, with the caller's threshold (issue #29): what
    serving shows per image is exactly what ``Predictor.predict_images(..., uncertain_below=threshold)`` says,
    for a threshold that is not the model's own."""
    from leuk import serving
    from leuk.inference import Predictor

    reg, folders = registry
    loaded = reg.get(folders["cnmc"])
    assert threshold != loaded.uncertain_below
    paths = [str(p) for p in CNMC_SAMPLES[:3]]
    result = serving.classify(paths, folders["cnmc"], threshold=threshold, registry=reg)
    predictions = Predictor.from_loaded(loaded, device="cpu", batch_size=2).predict_images(
        paths, uncertain_below=threshold)
    assert result.threshold == threshold
    for item, prediction in zip(result.images, predictions):
        assert item.label == prediction.label
        assert (item.uncertain, item.reasons, item.note) == (prediction.uncertain, prediction.reasons, prediction.note)
        assert item.verdict == prediction.verdict
    low = [any(r.startswith("low calibrated probability") for r in item.reasons) for item in result.images]
    assert all(low) if threshold > 0.5 else not any(low)
    if threshold > 0.5:
        assert all(f"< {threshold:.2f}" in "; ".join(item.reasons) for item in result.images)
