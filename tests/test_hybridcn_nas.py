"""HybridCN-NAS as a Hub model: presets, forward, staged training, leakage, remote code, stages, ablation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from leuk.models import ModelConfigError, count_parameters, create_model
from leuk.models.hybridcn_nas import (
    LITE_PRESET,
    HybridCNNASConfig,
    HybridCNNASForImageClassification,
    HybridCNNASImageProcessor,
)

TINY_TRAINING = ["--segmenter-epochs", "2", "--extractor-epochs", "1", "--classifier-epochs", "4",
                 "--batch-size", "8", "--no-progress"]


def test_paper_preset_parameter_count(record_property) -> None:
    with torch.device("meta"):
        model = create_model("hybridcn-nas")
    n_parameters = count_parameters(model)
    record_property("hybridcn_nas_parameters", n_parameters)
    print(f"hybridcn-nas (paper preset): {n_parameters:,} parameters")
    config = model.config
    assert (config.branch_a_image_size, config.branch_b_image_size) == (224, 331)
    assert (config.branch_a_channels, config.branch_b_channels) == (1536, 4032)
    assert config.num_features == 1536 + 4032 + 2048 and config.num_tokens == 20
    assert model.extractor.projection_b[0].weight.shape == (2048, 4032)
    assert [m.out_features for m in model.extractor.factorized if hasattr(m, "out_features")] == [1536, 2048]
    parts = sum(count_parameters(child) for child in model.children())
    assert parts == n_parameters and 300e6 < n_parameters < 450e6


def test_lite_forward_attentions_and_temperature() -> None:
    torch.manual_seed(0)
    model = create_model("hybridcn-nas-lite").eval()
    pixels = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        output = model(pixel_values=pixels, output_attentions=True)
        assert output.logits.shape == (2, 4)
        assert len(output.attentions) == model.config.classifier_layers
        tokens = model.config.num_tokens
        assert output.attentions[0].shape == (2, model.config.classifier_heads, tokens, tokens)
        torch.testing.assert_close(output.attentions[0].sum(-1), torch.ones(2, model.config.classifier_heads, tokens))
        model.config.temperature = 2.0
        torch.testing.assert_close(model(pixel_values=pixels).logits, output.logits / 2)
    assert model.config.id2label == {0: "Benign", 1: "Early", 2: "Pre", 3: "Pro"}


def test_forward_follows_the_transformers_contract() -> None:
    import leuk.models

    assert leuk.models.HybridCNNASForImageClassification is HybridCNNASForImageClassification
    assert leuk.models.EfficientNetSEForImageClassification.__name__ == "EfficientNetSEForImageClassification"
    torch.manual_seed(0)
    model = create_model("hybridcn-nas-lite").eval()
    pixels, labels = torch.rand(2, 3, 128, 128), torch.tensor([0, 3])
    with torch.no_grad():
        as_dict = model(pixel_values=pixels, labels=labels)
        as_tuple = model(pixel_values=pixels, labels=labels, return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
        torch.testing.assert_close(as_tuple[0], as_dict.loss)
        torch.testing.assert_close(as_tuple[1], as_dict.logits)
        assert len(model(pixel_values=pixels, return_dict=False)) == 1
        with pytest.raises(TypeError, match="lables"):
            model(pixel_values=pixels, lables=labels)  # a misspelt keyword is an error, not a silent no-loss


def test_mask_dilation_grows_the_branch_mask_like_opencv() -> None:
    """``mask_dilation`` grows the segmenter's mask by a square of that radius (OpenCV's dilation as the
    oracle) before it gates the branches; a mask the segmenter left (almost) empty still lets all through."""
    import cv2

    torch.manual_seed(0)
    plain = create_model("hybridcn-nas-lite").eval()
    grown = create_model("hybridcn-nas-lite", mask_dilation=3).eval()
    grown.load_state_dict(plain.state_dict())
    with torch.no_grad():
        pixels = torch.rand(2, 3, 128, 128)
        probabilities = plain.cell_probabilities(pixels)
        # a threshold that marks a few scattered pixels as cell, so that dilation has room to grow them
        threshold = float(torch.quantile(probabilities.flatten(), 0.99))
        plain.config.mask_threshold = grown.config.mask_threshold = threshold
        before, after = plain.cell_mask(pixels), grown.cell_mask(pixels)
        grown.config.mask_threshold = 1.0
        nothing_found = grown.cell_mask(pixels)
    kernel = np.ones((7, 7), np.uint8)
    for index in range(2):
        segmented = (probabilities[index, 0] > threshold).numpy().astype(np.float32)
        np.testing.assert_array_equal(before[index, 0].numpy(), segmented)
        np.testing.assert_array_equal(after[index, 0].numpy(), cv2.dilate(segmented, kernel))
    assert 0 < before.mean() < after.mean() < 1
    assert bool((nothing_found == 1).all())
    with pytest.raises(ModelConfigError, match="mask_dilation"):
        create_model("hybridcn-nas-lite", mask_dilation=-2)


def test_invalid_presets_raise_one_clear_error() -> None:
    with pytest.raises(ModelConfigError, match="multiple of token_size"):
        create_model("hybridcn-nas-lite", num_selected=100)
    with pytest.raises(ModelConfigError, match="unknown HybridCN-NAS option"):
        create_model("hybridcn-nas-lite", hidden_size=3)


def test_fitted_statistics_ignore_test_rows() -> None:
    from leuk.data.splits import Split
    from leuk.training.hybridcn_nas import HybridTrainOptions, fit_head

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 15)
    features = rng.normal(size=(60, 48)) + np.eye(4)[labels] @ rng.normal(size=(4, 48))
    split = Split(np.arange(0, 60, 2), np.arange(1, 60, 4), np.arange(3, 60, 4))
    config = HybridCNNASConfig(**{**LITE_PRESET, "num_selected": 16})
    options = HybridTrainOptions(classifier_epochs=6, patience=100)
    first = fit_head(features, labels, split, config, options)

    altered, altered_labels = features.copy(), labels.copy()
    altered[split.test] = rng.normal(40, 7, altered[split.test].shape)
    altered_labels[split.test] = (altered_labels[split.test] + 2) % 4
    second = fit_head(altered, altered_labels, split, config, options)
    np.testing.assert_array_equal(first.selection.mean, second.selection.mean)
    np.testing.assert_array_equal(first.selection.scale, second.selection.scale)
    np.testing.assert_array_equal(first.selection.indices, second.selection.indices)
    assert first.temperature == second.temperature
    for name, tensor in first.classifier_state.items():
        torch.testing.assert_close(tensor, second.classifier_state[name], rtol=0, atol=0)


# ---- one tiny training run on the synthetic Aria fixture, shared below ------------------------------
@pytest.fixture(scope="module")
def trained_run(aria_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``leuk train hybridcn-nas`` on the synthetic Aria fixture (8 patients), a few epochs per stage."""
    from leuk.cli import main

    out = tmp_path_factory.mktemp("hybrid") / "run"
    assert main(["train", "hybridcn-nas", "--data", str(aria_root), "--out", str(out), *TINY_TRAINING]) == 0
    return out


def first_image(aria_root: Path) -> Path:
    return sorted((aria_root / "Original").rglob("*.jpg"))[0]


@pytest.mark.slow
def test_lite_training_writes_a_complete_model(trained_run: Path, aria_root: Path) -> None:
    results = json.loads((trained_run / "eval_results.json").read_text())
    test = results["test"]
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "mcc", "roc_auc", "per_class"):
        assert key in test
    assert set(test["per_class"]) == {"Benign", "Early", "Pre", "Pro"}
    assert {"sensitivity", "specificity"} <= set(test["per_class"]["Benign"])
    assert 0 <= results["segmentation"]["test"]["dice"] <= 1 and "iou" in results["segmentation"]["test"]
    assert results["protocol"] == "patient" and results["selection"]["fitted_on"] == "training rows only"
    assert results["temperature"] > 0

    model = HybridCNNASForImageClassification.from_pretrained(trained_run).eval()
    stages = trained_run / "stages"
    head = torch.load(stages / "head.pt", weights_only=True)
    np.testing.assert_allclose(model.feature_mean.numpy(), head["mean"].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(model.selected_indices.numpy(), head["indices"].numpy())
    split = json.loads((stages / "split.json").read_text())
    record = json.loads((trained_run / "training_split.json").read_text())  # the schema every family writes
    train_patients, test_patients = set(record["train"]["patients"]), set(record["test"]["patients"])
    assert train_patients.isdisjoint(test_patients) and split["test"]
    assert record["test_patients_hash"] == results["test_patients_hash"] and record["dataset"]["loader"] == "aria"
    assert record["test"]["n_images"] == len(split["test"]) == len(record["test"]["images"])

    # the saved processor reproduces, from the file, exactly what training cached
    processor = HybridCNNASImageProcessor.from_pretrained(trained_run)
    assert processor.stain_target_means is not None and processor.enabled_steps()[0] == "stain"
    from leuk.io import read_image
    from leuk.training.hybridcn_nas import load_table

    cached = np.load(stages / "preprocessed.npy")
    pixels = processor(read_image(load_table(aria_root).paths[0]))["pixel_values"][0]
    np.testing.assert_allclose(pixels.permute(1, 2, 0).numpy() * 255, cached[0], atol=1e-3)


@pytest.mark.slow
def test_evaluate_reproduces_the_recorded_test_figures(trained_run: Path, aria_root: Path, tmp_path: Path) -> None:
    from leuk.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(trained_run), "--data", str(aria_root), "--out", str(out),
                 "--device", "cpu"]) == 0
    recorded = json.loads((trained_run / "eval_results.json").read_text())
    report = json.loads((out / "metrics.json").read_text())
    assert report["split"] == "test" and report["protocol"] == "patient"
    assert report["patients_hash"] == recorded["test_patients_hash"] == report["recorded_test_patients_hash"]
    assert report["metrics"]["n"] == recorded["test"]["n"]
    for key in ("accuracy", "f1_weighted", "f1_macro", "mcc", "ece"):
        assert report["metrics"][key] == pytest.approx(recorded["test"][key], abs=1e-4), key


@pytest.mark.slow
def test_training_resumes_from_finished_stages(trained_run: Path, aria_root: Path, capsys) -> None:
    from leuk.cli import main

    stage_files = sorted((trained_run / "stages").glob("*.*"))
    before = {path.name: path.stat().st_mtime_ns for path in stage_files if path.name != "data.json"}
    command = ["train", "hybridcn-nas", "--data", str(aria_root), "--out", str(trained_run)]
    assert main([*command, *TINY_TRAINING]) == 0
    after = {path.name: path.stat().st_mtime_ns for path in stage_files if path.name != "data.json"}
    assert before == after
    capsys.readouterr()
    changed = [*TINY_TRAINING[:5], "7", *TINY_TRAINING[6:]]
    assert main([*command, *changed]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "classifier_epochs" in error and len(error.strip().splitlines()) == 1


def test_branch_loss_weight_supervises_each_branch(trained_run: Path, aria_root: Path, tmp_path: Path) -> None:
    """``--branch-loss-weight`` adds each branch's own classification loss: resuming the tiny run's stages
    with only the extractor redone, the weight is recorded and the extractor trains to other weights."""
    import shutil

    from leuk.cli import build_parser
    from leuk.cli.train_hybrid import options_from_args
    from leuk.training.hybridcn_nas import StageCache, load_table, run_feature_stages

    stages = tmp_path / "stages"
    shutil.copytree(trained_run / "stages", stages)
    for name in ("extractor.pt", "extractor.json", "features.npy"):
        (stages / name).unlink()
    args = build_parser("train").parse_args(["train", "hybridcn-nas", "--data", str(aria_root), "--out", "unused",
                                      *TINY_TRAINING, "--branch-loss-weight", "0.5"])
    options = options_from_args(args)
    run_record = json.loads((stages / "run.json").read_text())
    assert run_record["options"]["branch_loss_weight"] == 0.0
    run_record["options"]["branch_loss_weight"] = 0.5
    (stages / "run.json").write_text(json.dumps(run_record))
    table = load_table(aria_root, options.patients_csv)
    result = run_feature_stages(table, options, stages)
    assert result.reports["extractor"]["branch_loss_weight"] == 0.5
    assert np.isfinite(result.features).all()
    plain = StageCache(trained_run / "stages").load_state("extractor.pt")
    supervised = StageCache(stages).load_state("extractor.pt")
    assert plain.keys() == supervised.keys()
    changed = [name for name in plain if not torch.equal(plain[name], supervised[name])]
    assert any(name.startswith("branch_a.") for name in changed)
    assert any(name.startswith("branch_b.") for name in changed)


@pytest.mark.slow
def test_stages_for_the_pipeline_tab(trained_run: Path, aria_root: Path) -> None:
    from PIL import Image

    model = HybridCNNASForImageClassification.from_pretrained(trained_run).eval()
    stages = model.stages(Image.open(first_image(aria_root)))
    for key in ("input", "stain_normalized", "clahe", "denoised", "preprocessed"):
        assert stages[key].shape == (128, 128, 3) and stages[key].dtype == np.uint8
    assert stages["mask"].shape == (128, 128) and stages["mask"].dtype == bool
    assert stages["cell_labels"].max() == len(stages["cells"])
    # the branches' view: the preprocessed pixels inside the (grown) mask, branch A's mean colour outside
    gate = model.cell_mask(torch.from_numpy(stages["preprocessed"].transpose(2, 0, 1).copy()).float()[None] / 255)
    inside = gate[0, 0].bool().numpy()
    np.testing.assert_array_equal(stages["branch_view"][inside], stages["preprocessed"][inside])
    fill = np.round(np.asarray(model.config.branch_a_mean) * 255).astype(np.uint8)
    assert (stages["branch_view"][~inside] == fill).all()
    for cell in stages["cells"]:
        x0, y0, x1, y1 = cell["box"]
        assert cell["crop"].shape == (y1 - y0, x1 - x0, 3)
    assert sum(stages["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert stages["label"] in ("Benign", "Early", "Pre", "Pro")
    assert len(stages["top_features"]) == 10 and stages["token_attention"].shape == (model.config.num_tokens,)
    assert stages["token_attention"].sum() == pytest.approx(1, abs=1e-4)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["leuk"] = None  # leuk cannot be imported: only the folder's remote code may run
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    folder, image_path = sys.argv[1], sys.argv[2]
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        logits = model(**processor(Image.open(image_path))).logits[0].tolist()
    classify = pipeline("image-classification", model=folder, trust_remote_code=True)
    scores = classify(image_path, top_k=None)
    print(json.dumps({"module": type(model).__module__, "logits": logits, "scores": scores}))
    """
)


@pytest.mark.slow
def test_remote_code_loads_and_classifies_without_leuk(trained_run: Path, aria_root: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = first_image(aria_root)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    completed = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, str(trained_run), str(image)],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "leuk" not in result["module"]
    assert sorted(entry["label"] for entry in result["scores"]) == ["Benign", "Early", "Pre", "Pro"]
    assert sum(entry["score"] for entry in result["scores"]) == pytest.approx(1.0, abs=1e-5)

    model = HybridCNNASForImageClassification.from_pretrained(trained_run).eval()
    processor = HybridCNNASImageProcessor.from_pretrained(trained_run)
    with torch.no_grad():
        logits = model(**processor(Image.open(image))).logits[0]
    np.testing.assert_allclose(result["logits"], logits.numpy(), atol=1e-4)


# ---- ablation -----------------------------------------------------------------------------------------
def test_ablation_variants_follow_the_paper() -> None:
    from leuk.experiments.ablation import ablation_variants
    from leuk.training.hybridcn_nas import HybridTrainOptions

    options = HybridTrainOptions(preset="paper").resolved()
    variants = ablation_variants(HybridCNNASConfig(), options, ("architecture", "features", "optimizer"))
    names = {(v.study, v.name) for v in variants}
    architecture = ("full", "no_attention", "no_feed_forward", "no_dropout", "hidden_256")
    assert {("architecture", name) for name in architecture} <= names
    counts = [dict(v.config_overrides)["num_selected"] for v in variants if v.study == "features"]
    assert counts == [2000, 1800, 1600, 1400, 1200]
    assert [v.name for v in variants if v.study == "optimizer"] == ["adamw", "adam", "sgd", "rmsprop", "adamax"]


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # identical scores of near-identical variants
def test_ablation_runs_on_cached_features(aria_root: Path, tmp_path: Path) -> None:
    """A run folder with cached features (as training leaves it): every variant, every iteration, tables."""
    from leuk.data.splits import Split
    from leuk.experiments.ablation import held_out_monte_carlo, run_ablation
    from leuk.training.hybridcn_nas import StageCache, load_table

    table = load_table(aria_root)
    run_dir = tmp_path / "run"
    config = HybridCNNASConfig(**{**LITE_PRESET, "num_selected": 16, "classifier_layers": 1, "num_features": 40})
    config.save_pretrained(run_dir)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(table.labels), 40)) + np.eye(4)[table.labels] @ rng.normal(size=(4, 40))
    cache = StageCache(run_dir / "stages")
    cache.save_array("features.npy", features.astype(np.float32))
    # every patient held out, so the Monte Carlo draws have test patients of every class
    cache.save_json("split.json", {"protocol": "patient", "train": [], "val": [],
                                   "test": list(range(len(table.labels)))})
    cache.save_json("run.json", {"data": table.fingerprint(), "n_images": len(table.labels),
                                 "options": {"preset": "lite", "classifier_epochs": 3}})
    cache.save_json("data.json", {"root": str(aria_root)})

    draws = held_out_monte_carlo(table.labels, table.groups, Split([], [], np.arange(len(table.labels))),
                                 n_iter=2, seed=0)
    for _, _, split in draws:
        assert set(table.groups[split.test]).isdisjoint(table.groups[split.train])

    per_iteration, summary = run_ablation(run_dir, tmp_path / "ablation", studies=("architecture", "optimizer"),
                                          n_iter=2, progress=False)
    assert len(per_iteration) == (5 + 5) * 2 and per_iteration["f1_macro"].notna().all()
    assert set(summary.columns) >= {"mean", "p2_5", "p97_5", "t_pvalue"}
    markdown = (tmp_path / "ablation" / "ablation.md").read_text()
    assert "| no_attention |" in markdown and "| rmsprop |" in markdown
    assert (tmp_path / "ablation" / "ablation.csv").is_file()
