"""The out-of-distribution detector (leuk.ood) and the one verdict (leuk.verdict): the Mahalanobis score against
pytorch-ood and sklearn, fitting on training images only, storage next to the weights, the clear fallback
without a detector, and the verdict of ``leuk predict`` / ``leuk explain`` on a smear shown to a cell model."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leuk.cli import main

REPO = Path(__file__).resolve().parents[1]
SMEARS = sorted((REPO / "assets" / "samples" / "aria").glob("*.jpg"))
PRESET = "efficientnet-se-test"


# ------------------------------------------------------------------------------------------------ the score

def _blobs(seed: int = 0, n: int = 300, d: int = 8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    mixing = rng.normal(size=(d, d))
    features = rng.normal(size=(n, d)) @ mixing + labels[:, None] * 3.0
    return features, labels


def test_mahalanobis_matches_pytorch_ood():
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    from leuk.ood import fit_mahalanobis, mahalanobis_scores

    features, labels = _blobs()
    queries = np.random.default_rng(1).normal(size=(50, features.shape[1])) * 4
    means, precision, _ = fit_mahalanobis(features, labels, shrinkage=0.0)
    ours = mahalanobis_scores(queries, means, precision)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # pytorch-ood allocates its means and covariance in the default dtype
    try:
        oracle = detector_module.Mahalanobis(None).fit_features(torch.as_tensor(features), torch.as_tensor(labels))
        theirs = oracle.predict_features(torch.as_tensor(queries)).numpy()
    finally:
        torch.set_default_dtype(default)
    # pytorch-ood: half the squared distance, with the covariance summed over the N images instead of averaged
    np.testing.assert_allclose(0.5 * ours**2 / len(features), theirs, rtol=1e-6)


def test_ledoit_wolf_distance_matches_sklearn():
    from sklearn.covariance import LedoitWolf

    from leuk.ood import fit_mahalanobis, mahalanobis_scores

    features, _ = _blobs(n=40, d=30)  # fewer images than twice the features: shrinkage matters
    queries = np.random.default_rng(2).normal(size=(20, 30))
    means, precision, shrinkage = fit_mahalanobis(features, np.zeros(len(features), dtype=int))
    oracle = LedoitWolf().fit(features)
    assert shrinkage == pytest.approx(oracle.shrinkage_)
    np.testing.assert_allclose(mahalanobis_scores(queries, means, precision) ** 2, oracle.mahalanobis(queries),
                               rtol=1e-8)


def test_detector_round_trips_through_safetensors_and_json(tmp_path):
    from leuk.ood import OODDetector, fit_mahalanobis, reference_from_statistics

    features, labels = _blobs()
    means, precision, _ = fit_mahalanobis(features, labels)
    stats = np.random.default_rng(3).uniform(size=(20, 10))
    detector = OODDetector(means, precision, threshold=4.2, statistics=reference_from_statistics(stats, "x"),
                           stats_threshold=3.3, labels=["hem", "all"], info={"threshold_rule": "rule"})
    detector.save(tmp_path)
    loaded = OODDetector.load(tmp_path)
    np.testing.assert_allclose(loaded.feature_scores(features), detector.feature_scores(features), rtol=1e-5)
    np.testing.assert_allclose(loaded.stats_scores(stats), detector.stats_scores(stats))
    assert (loaded.threshold, loaded.stats_threshold, loaded.labels) == (4.2, 3.3, ["hem", "all"])
    assert json.loads((tmp_path / "ood_detector.json").read_text())["threshold_rule"] == "rule"


# --------------------------------------------------------------------------------------------- the verdict

def test_out_of_distribution_is_never_confident_alone_or_in_a_batch():
    from leuk.ood import OODResult
    from leuk.serving import ImageResult, aggregate
    from leuk.verdict import image_verdict

    far, near = OODResult(score=90.0, threshold=30.0), OODResult(score=10.0, threshold=30.0)
    alone = image_verdict(0.99, far)
    assert alone.uncertain and alone.reasons[0].startswith("out of distribution")
    assert not image_verdict(0.99, near).uncertain
    assert image_verdict(0.5, near).reasons[0].startswith("low calibrated probability")
    assert image_verdict(None, None, "x.png: not a readable image").reasons[0].startswith("unreadable")
    assert "not checked" in image_verdict(0.99, None).text

    labels = ["hem", "all"]

    def row(name: str, ood: OODResult) -> ImageResult:
        verdict = image_verdict(0.98, ood)
        return ImageResult(name=name, label="all", probabilities={"hem": 0.02, "all": 0.98}, top_probability=0.98,
                           uncertain=verdict.uncertain, reasons=list(verdict.reasons))

    assert aggregate([row("smear.jpg", far)], labels).uncertain  # a single image counts too
    batch = aggregate([row(f"cell{i}.png", near) for i in range(5)] + [row("smear.jpg", far)], labels)
    assert batch.uncertain and batch.reasons[0] == "out of distribution: 1 of 6 images unlike the training images"
    assert not aggregate([row(f"cell{i}.png", near) for i in range(5)], labels).uncertain
    broken = aggregate([row("cell.png", near), ImageResult(name="b.png", error="b.png: not a readable image")], labels)
    assert broken.uncertain and any(r.startswith("unreadable: 1 of 2") for r in broken.reasons)


# ------------------------------------------------------------------------- fitted at training, on train only

@pytest.fixture(scope="module")
def trained(cnmc_root, tmp_path_factory):
    """A tiny EfficientNet-SE trained for two steps on a private copy of the synthetic C-NMC set."""
    from leuk.experiments.runs import train_efficientnet_se

    data = tmp_path_factory.mktemp("ood_data") / "cnmc"
    shutil.copytree(cnmc_root, data)
    out = tmp_path_factory.mktemp("ood_model")
    train_efficientnet_se(data=str(data), out=str(out), model=PRESET, max_steps=2, batch_size=16, seed=0,
                          progress=False, quiet=True, synthetic=True)
    return out, data


def test_training_stores_a_detector_fitted_on_its_training_images(trained):
    from leuk.hub import load_model

    folder, _ = trained
    split = json.loads((folder / "training_split.json").read_text())
    record = json.loads((folder / "ood_detector.json").read_text())
    assert record["fit"]["n_train_images"] == split["train"]["n_images"]
    assert record["fit"]["n_val_images"] == split["val"]["n_images"]
    # thresholds from what the fit did not see: each training subject left out in turn, and the validation images
    assert sorted(record["fit"]["leave_one_subject_out_subjects"]) == sorted(split["train"]["patients"])
    assert "subject left out" in record["threshold_rule"] and "validation images" in record["threshold_rule"]
    assert record["quantile"] == 0.99
    assert record["image_statistics"]["n_images"] == split["train"]["n_images"]
    loaded = load_model(str(folder), device="cpu")
    assert loaded.ood_detector is not None and loaded.ood_note is None
    assert loaded.ood_detector.threshold == pytest.approx(record["threshold"])


def test_a_test_image_cannot_change_the_detector(trained, tmp_path, capsys):
    from leuk.ood import OODDetector

    folder, data = trained
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    fit = ["ood", "fit", "--model", str(model), "--data", str(data), "--device", "cpu", "--batch-size", "16"]
    assert main(fit) == 0
    assert "fitted on" in capsys.readouterr().out
    at_training, refitted = OODDetector.load(folder), OODDetector.load(model)  # the command refits the same
    np.testing.assert_allclose(refitted.precision, at_training.precision, rtol=1e-3, atol=1e-3)
    assert refitted.threshold == pytest.approx(at_training.threshold, rel=1e-3)
    split = json.loads((model / "training_split.json").read_text())
    rng = np.random.default_rng(0)
    for name in split["test"]["images"]:  # every held-out image becomes noise
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / name, format="BMP")
    assert main(fit) == 0
    after = OODDetector.load(model)
    np.testing.assert_array_equal(after.precision, refitted.precision)
    np.testing.assert_array_equal(after.class_means, refitted.class_means)
    assert (after.threshold, after.stats_threshold, after.statistics) == (
        refitted.threshold, refitted.stats_threshold, refitted.statistics)
    # the same change to one training image does change it (so the comparison above can fail)
    train_image = data / split["train"]["images"][0]
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(train_image, format="BMP")
    assert main(fit) == 0
    changed = OODDetector.load(model)
    assert not np.array_equal(changed.class_means, refitted.class_means)
    assert changed.statistics != refitted.statistics


def test_missing_stale_or_broken_detector_falls_back_with_a_note(trained, tmp_path, capsys):
    from leuk.hub import clear_model_cache, load_model

    folder, _ = trained
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    (model / "ood_detector.json").unlink()
    clear_model_cache()
    loaded = load_model(str(model), device="cpu")
    assert loaded.ood_detector is None and "leuk ood fit" in loaded.ood_note
    assert main(["predict", "--model", str(model), str(SMEARS[0])]) == 0
    captured = capsys.readouterr()
    assert "note: no out-of-distribution detector" in captured.err
    assert "confident" in captured.out or "uncertain" in captured.out

    shutil.copy(folder / "ood_detector.json", model / "ood_detector.json")
    record = json.loads((model / "ood_detector.json").read_text())
    record["model_sha256"] = "0" * 64
    (model / "ood_detector.json").write_text(json.dumps(record))
    clear_model_cache()
    assert "fitted for other weights" in load_model(str(model), device="cpu").ood_note
    (model / "ood_detector.json").write_text("{not json")
    clear_model_cache()
    assert "was not used" in load_model(str(model), device="cpu").ood_note
    clear_model_cache()


def test_fit_refuses_a_folder_without_split_or_data(trained, tmp_path, capsys):
    folder, data = trained
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    assert main(["ood", "fit", "--model", str(model), "--data", str(tmp_path)]) == 1
    assert "error:" in capsys.readouterr().err
    (model / "training_split.json").unlink()
    assert main(["ood", "fit", "--model", str(model), "--data", str(data)]) == 1
    assert "training_split.json" in capsys.readouterr().err


# -------------------------------------------------------------------------------- the CLI's verdict columns

def test_predict_calls_a_smear_uncertain_in_table_csv_and_json(trained, tmp_path, capsys):
    from leuk.hub import clear_model_cache

    folder, data = trained
    clear_model_cache()
    split = json.loads((folder / "training_split.json").read_text())
    cell = data / split["train"]["images"][1]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (255, 255, 255)).save(blank)
    json_out, csv_out = tmp_path / "p.json", tmp_path / "p.csv"
    inputs = [str(cell), str(SMEARS[0]), str(blank)]
    assert main(["predict", "--model", str(folder), *inputs, "--json", str(json_out), "--csv", str(csv_out)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["file", "label", "probability", "ood_score", "verdict"]
    smear_line, blank_line = out[2], out[3]
    assert "uncertain: out of distribution" in smear_line and "uncertain: out of distribution" in blank_line
    # a rejected image shows no class and no probability in the table: "not assessed", "-"
    for line, path in ((smear_line, SMEARS[0]), (blank_line, blank)):
        assert line.split()[:4] == [str(path), "not", "assessed", "-"], line
    rows = list(csv.DictReader(csv_out.open()))
    assert {"ood_score", "assessed", "uncertain", "reasons"} <= set(rows[0])
    assert [row["uncertain"] for row in rows[1:]] == ["True", "True"]
    assert [row["assessed"] for row in rows[1:]] == ["False", "False"]
    assert rows[1]["label"] and float(rows[1]["probability"]) > 0  # the CSV keeps the numbers with the verdict
    assert rows[1]["reasons"].startswith("out of distribution") and float(rows[1]["ood_score"]) > 0
    records = json.loads(json_out.read_text())
    assert records[1]["assessed"] is False and records[1]["label"] and records[1]["top_probability"] > 0
    assert records[1]["uncertain"] is True and records[1]["reasons"][0].startswith("out of distribution")
    assert records[1]["ood_score"] > records[1]["ood_threshold"] or (
        records[1]["ood_stats_score"] > records[1]["ood_stats_threshold"])


def test_explain_prints_the_verdict_and_puts_it_in_the_picture(trained, tmp_path, capsys):
    folder, _ = trained
    out = tmp_path / "smear.png"
    assert main(["explain", "--model", str(folder), str(SMEARS[0]), "--out", str(out), "--no-curves",
                 "--faithfulness-steps", "2", "--json", str(tmp_path / "e.json"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "verdict: uncertain: out of distribution" in err
    assert out.is_file()
    record = json.loads((tmp_path / "e.json").read_text())
    assert record["verdict"]["uncertain"] and record["verdict"]["reasons"][0].startswith("out of distribution")


# the README's "without leuk" recipe: the stored detector scores an image with safetensors, json and the
# folder's remote code only
REMOTE_SCRIPT = r"""
import json, sys
sys.modules["leuk"] = None  # leuk cannot be imported: only the folder's remote code may run
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

folder, image = sys.argv[1], sys.argv[2]
model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
detector = load_file(f"{folder}/ood_detector.safetensors")
record = json.load(open(f"{folder}/ood_detector.json"))
x = processor(images=Image.open(image).convert("RGB"), return_tensors="pt")["pixel_values"]
with torch.no_grad():
    f = model.pool(model.forward_features(x)).double()                       # pooled features, (1, D)
distance = min(((f - mu.double()) @ detector["whitening"].double()).norm() for mu in detector["class_means"])
print(json.dumps({"score": float(distance), "ood": bool(distance > record["threshold"])}))
"""


def test_the_stored_detector_scores_without_leuk(trained, tmp_path):
    import os
    import subprocess
    import sys

    from leuk.hub import clear_model_cache, load_model
    from leuk.inference import Predictor

    folder, _ = trained
    clear_model_cache()
    loaded = load_model(str(folder), device="cpu")
    (expected,) = Predictor(loaded.model, loaded.processor, device="cpu",
                            detector=loaded.ood_detector).predict_images([str(SMEARS[0])])
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, str(folder), str(SMEARS[0])], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["score"] == pytest.approx(expected.ood_score, rel=1e-4)
    assert result["ood"] == (expected.ood_score > expected.ood_threshold)


def test_benchmark_script_reports_auroc_and_flag_rates(trained, tmp_path, capsys):
    import importlib.util

    from leuk.hub import clear_model_cache

    folder, data = trained
    clear_model_cache()
    spec = importlib.util.spec_from_file_location("bench_ood", REPO / "bench" / "bench_ood.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "ood.json"
    assert bench.main(["--model", str(folder), "--data", str(data), "--no-screenshots", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    split = json.loads((folder / "training_split.json").read_text())
    assert results["in_distribution"]["n"] == split["test"]["n_images"]
    assert set(results["foreign"]) == {"samples-aria", "blank", "noise", "photo", "figure"}
    for record in [*results["foreign"].values(), results["foreign_pooled"]]:
        assert 0.0 <= record["flagged"] <= 1.0 and 0.0 <= record["auroc"]["combined"] <= 1.0
    assert results["foreign"]["samples-aria"]["flagged"] == 1.0  # smears are never called cells
    assert "| all foreign |" in capsys.readouterr().out


def test_low_probability_reason_never_prints_the_value_as_the_threshold():
    from leuk.verdict import image_verdict, patient_verdict

    verdict = image_verdict(0.696, None, None)
    assert verdict.uncertain and "0.696 < 0.70" in verdict.reasons[0]
    assert "0.61 < 0.70" in image_verdict(0.61, None, None).reasons[0]
    assert "mean top 0.699 < 0.70" in "; ".join(patient_verdict([verdict], 0.699, label="all").reasons)


def test_split_images_reads_both_split_formats(tmp_path, cnmc_root, cnmc_dataset):
    """The OOD fit finds a part's images from a shared-schema split (images listed) and from the older
    HybridCN-NAS record (``<part>_patients`` only), and refuses images that are not in the data folder."""
    import json

    from leuk.data.splits import train_val_test_split
    from leuk.ood import OODError, split_images
    from leuk.records import training_split_record

    paths = list(cnmc_dataset["path"])
    labels = list(cnmc_dataset["label"])
    groups = list(cnmc_dataset["patient_id"])
    split = train_val_test_split(labels, groups, seed=0)
    record = training_split_record(split, paths, labels, groups, ["hem", "all"], cnmc_root, loader="cnmc",
                                   synthetic=True, protocol="patient", seed=0)
    shared, older = tmp_path / "shared", tmp_path / "older"
    for folder in (shared, older):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "efficientnet_se"}), encoding="utf-8")
    (shared / "training_split.json").write_text(json.dumps(record), encoding="utf-8")
    (older / "training_split.json").write_text(json.dumps(
        {"protocol": "patient", "dataset": {"loader": "cnmc"},
         **{f"{part}_patients": record[part]["patients"] for part in ("train", "val", "test")}}), encoding="utf-8")

    expected_rows = sorted(int(i) for i in split.train)
    for folder in (shared, older):
        got_paths, got_labels, got_groups = split_images(folder, cnmc_root, "train")
        by_path = dict(zip(got_paths, zip(got_labels, got_groups)))
        assert sorted(by_path) == sorted(paths[i] for i in expected_rows)
        assert all(by_path[paths[i]] == (labels[i], groups[i]) for i in expected_rows)

    record["train"]["images"] = record["train"]["images"][:2] + ["not/there.bmp"]
    (shared / "training_split.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(OODError, match="not in"):
        split_images(shared, cnmc_root, "train")
    with pytest.raises(OODError, match="has no training_split.json"):
        split_images(tmp_path, cnmc_root, "train")


@pytest.mark.parametrize("demo, samples", [("efficientnet-se", "cnmc"), ("hybridcn-nas-lite", "aria")])
def test_detector_features_are_the_family_pooled_vector_of_the_demo_models(demo, samples):
    """leuk.ood reads the family's pooled_features; on the bundled demos that is the vector the bundled
    detectors were fitted on: SE + global average pool of the backbone map (EfficientNet-SE), the fused vector
    z-scored with the training statistics (HybridCN-NAS), described as the stored detectors say."""
    import torch

    from leuk.hub import load_model
    from leuk.ood import feature_space, pooled_features

    loaded = load_model(f"demo:{demo}", device="cpu")
    model, processor = loaded.model, loaded.processor
    folder = REPO / "assets" / "samples" / samples
    images = [path for path in sorted(folder.iterdir()) if path.suffix in (".jpg", ".png")][:2]
    pixels = processor([Image.open(path).convert("RGB") for path in images], return_tensors="pt")["pixel_values"]
    pixels = pixels.to(next(model.parameters()).dtype)
    with torch.no_grad():
        if demo == "efficientnet-se":
            expected = model.pool(model.forward_features(pixels))
        else:
            expected = (model.extract_features(pixels) - model.feature_mean) / model.feature_scale
    features = pooled_features(model, pixels)
    assert features.dtype == torch.float32 and features.shape == (len(images), expected.shape[1])
    torch.testing.assert_close(features, expected.reshape(len(images), -1).float(), rtol=0, atol=0)
    record = json.loads((REPO / "assets" / "demo_models" / demo / "ood_detector.json").read_text())
    assert feature_space(model) == record["feature_space"] and features.shape[1] == record["dimension"]


def test_a_threshold_rule_never_calls_images_without_patient_ids_subjects():
    """Aria without a patient map: every image is its own pseudo-patient, so the stored rule of the bundled
    HybridCN-NAS detector (fitted when it still said "2069 training images of 2069 subjects") is read as images
    each left out alone; C-NMC subjects stay subjects. New fits write the right words themselves."""
    from leuk.hub.provenance import ood_threshold_rule
    from leuk.ood.detector import leave_one_out_source

    demos = Path(__file__).resolve().parents[1] / "assets" / "demo_models"
    aria = json.loads((demos / "hybridcn-nas-lite" / "ood_detector.json").read_text())
    rule = ood_threshold_rule(aria)
    assert "subject" not in rule and "each scored with itself left out of the fit" in rule
    assert "no patient ids" in rule and f"the {aria['fit']['n_train_images']} training images" in rule
    cnmc = json.loads((demos / "efficientnet-se" / "ood_detector.json").read_text())
    assert ood_threshold_rule(cnmc) == cnmc["threshold_rule"] and "subjects" in cnmc["threshold_rule"]
    assert "subject" not in leave_one_out_source(3, ["image:a.jpg", "image:b.jpg", "image:c.jpg"])
    assert leave_one_out_source(3, ["p1", "p2"]).startswith("the 3 training images of 2 subjects")
