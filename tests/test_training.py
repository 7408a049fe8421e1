"""The EfficientNet-SE training engine end to end on a tiny synthetic C-NMC set (tiny preset, 64 px)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from leuk.errors import LeukError
from leuk.experiments.runs import train_efficientnet_se
from leuk.training import SPLIT_FILE, TrainOptions
from leuk.training.data import ClassBalancedSampler, processed_uint8

REPO = Path(__file__).resolve().parents[1]
PRESET = "efficientnet-se-test"


@pytest.fixture(scope="module")
def trained(cnmc_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "model"
    result = train_efficientnet_se(data=cnmc_root, out=out, model=PRESET, epochs=4, batch_size=16, seed=0,
                                   patience=10, progress=False, logging_steps=50)
    return result


def _predict_probs(model_dir: Path, paths: list[str]) -> tuple[np.ndarray, list[str]]:
    from leuk.hub import load_model
    from leuk.inference import Predictor

    loaded = load_model(str(model_dir))
    predictor = Predictor(loaded.model, loaded.processor, device="cpu", batch_size=16)
    predictions = predictor.predict_images(paths)
    assert all(p.ok for p in predictions)
    return np.array([[p.probabilities[n] for n in predictor.label_names] for p in predictions]), predictor.label_names


def _split_rows(model_dir: Path, data_root: Path, part: str) -> tuple[list[str], np.ndarray]:
    split = json.loads((model_dir / SPLIT_FILE).read_text())
    names = split["dataset"]["label_names"]
    images = split[part]["images"]
    labels = np.array([names.index(Path(rel).parent.name) for rel in images])  # C-NMC: class = folder
    return [str(data_root / rel) for rel in images], labels


@pytest.mark.slow
def test_run_saves_loadable_model_results_and_split(trained, cnmc_root, cnmc_dataset):
    from leuk.hub import load_model

    out = trained.output_dir
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "eval_results.json", SPLIT_FILE):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")), "weights must be safetensors only"
    loaded = load_model(str(out))
    assert loaded.model.config.temperature == pytest.approx(trained.temperature)
    assert loaded.is_demo  # synthetic data is marked as such

    results = json.loads((out / "eval_results.json").read_text())
    split = json.loads((out / SPLIT_FILE).read_text())
    assert results["protocol"] == "patient" and results["split"] == "test"
    assert results["test"]["n"] == split["test"]["n_images"] == results["split_sizes"]["test"]["n_images"]
    assert results["test"] == trained.test_metrics

    parts = {name: set(split[name]["patients"]) for name in ("train", "val", "test")}
    assert parts["train"] and parts["val"] and parts["test"]
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"] or parts["val"] & parts["test"])
    assert parts["train"] | parts["val"] | parts["test"] == set(cnmc_dataset["patient_id"])
    assert sum(split[name]["n_images"] for name in parts) == len(cnmc_dataset)
    protocol = loaded.model.config.training_protocol
    assert sorted(protocol["test_patients"]) == sorted(parts["test"])
    assert protocol["test_patients_hash"] == results["test_patients_hash"]


@pytest.mark.slow
def test_best_checkpoint_is_the_best_on_validation(trained, cnmc_root):
    out = trained.output_dir
    state = json.loads((out / "checkpoints" / "trainer_state.json").read_text())
    evaluations = [entry["eval_f1_weighted"] for entry in state["log_history"] if "eval_f1_weighted" in entry]
    assert len(evaluations) == 4  # one validation pass per epoch
    assert state["best_metric"] == pytest.approx(max(evaluations))
    # the saved model, re-evaluated from its files on the recorded validation patients, scores exactly that
    val_paths, val_labels = _split_rows(out, cnmc_root, "val")
    probs, names = _predict_probs(out, val_paths)
    from sklearn.metrics import f1_score

    assert f1_score(val_labels, probs.argmax(1), average="weighted") == pytest.approx(state["best_metric"], abs=1e-12)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["best_checkpoint"]["validation_f1_weighted"] == pytest.approx(state["best_metric"])


@pytest.mark.slow
def test_temperature_is_the_validation_fit(trained, cnmc_root):
    from leuk.metrics import fit_temperature

    out = trained.output_dir
    val_paths, val_labels = _split_rows(out, cnmc_root, "val")
    probs, _ = _predict_probs(out, val_paths)
    # saved logits are z / T; T * log-softmax recovers z up to a per-row shift, which softmax ignores
    raw_logits = trained.temperature * np.log(np.clip(probs, 1e-300, None))
    assert fit_temperature(raw_logits, val_labels) == pytest.approx(trained.temperature, rel=1e-3)


@pytest.mark.slow
def test_two_process_torchrun_trains_and_saves(cnmc_root, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2",
               str(REPO / "train" / "train_efficientnet_se.py"), "--model", PRESET, "--data", str(cnmc_root),
               "--out", str(out), "--max-steps", "1", "--batch-size", "8", "--no-augment", "--no-progress"]
    completed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["training"]["world_size"] == 2
    assert results["training"]["global_step"] == 1
    from leuk.hub import load_model

    loaded = load_model(str(out))
    assert loaded.model.config.training_protocol["world_size"] == 2


def test_balanced_sampler_oversamples_minority_only():
    labels = np.array([0] * 3 + [1] * 7)
    sampler = ClassBalancedSampler(labels, seed=1)
    first = sampler.epoch_indices(0)
    assert len(first) == len(sampler) == 14
    assert np.bincount(labels[first]).tolist() == [7, 7]
    assert set(first.tolist()) == set(range(10))  # every image each epoch
    majority = first[labels[first] == 1]
    assert sorted(majority.tolist()) == list(range(3, 10))  # majority class is not resampled
    sampler.set_epoch(0)
    assert list(sampler) == first.tolist()
    assert not np.array_equal(sampler.epoch_indices(1), first)


def test_cache_matches_the_image_processor(cnmc_dataset):
    import torch

    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor

    processor = EfficientNetSEImageProcessor.from_model_config(create_model(PRESET).config)
    path = cnmc_dataset[0]["path"]
    cached = processed_uint8(processor, path)
    assert cached.dtype == torch.uint8 and cached.shape == (3, 64, 64)
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    from leuk.io import read_image

    reference = processor(images=read_image(path), return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close((cached.float() / 255 - mean) / std, reference, atol=1e-5, rtol=0)


def test_bad_options_give_one_line_errors(cnmc_root, tmp_path):
    with pytest.raises(LeukError, match="--dtype"):
        TrainOptions(data=cnmc_root, out=tmp_path, dtype="int8").validate()
    with pytest.raises(LeukError, match="--test-size"):
        TrainOptions(data=cnmc_root, out=tmp_path, test_size=0.6, val_size=0.5).validate()
    with pytest.raises(LeukError, match="does not exist"):
        train_efficientnet_se(data=tmp_path / "missing", out=tmp_path / "o", model=PRESET)


def test_pretrained_offline_is_a_clear_error(tmp_path):
    from leuk.training.efficientnet_se import _build_model

    options = TrainOptions(data=tmp_path, out=tmp_path, model=PRESET, pretrained=True)
    with pytest.raises(LeukError, match="ImageNet weights"):
        _build_model(options, ["hem", "all"])


def test_half_precision_weights_load_and_predict_on_cpu(tmp_path, cnmc_dataset):
    import torch

    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor
    from leuk.training.efficientnet_se import save_model

    model = create_model(PRESET).eval()
    processor = EfficientNetSEImageProcessor.from_model_config(model.config)
    save_model(model, processor, tmp_path, "float16")
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(tmp_path / "model.safetensors").values() if t.is_floating_point()} == {
        torch.float16}
    probs, _ = _predict_probs(tmp_path, [cnmc_dataset[0]["path"]])
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    # transformers alone, as a researcher copies it: the config names float32, so the half-precision
    # weights are upcast on load and a float32 processor output runs through the model
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float32"
    plain = AutoModelForImageClassification.from_pretrained(tmp_path, trust_remote_code=True)
    plain_processor = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert next(plain.parameters()).dtype == torch.float32
    logits = plain(**plain_processor(Image.open(cnmc_dataset[0]["path"]), return_tensors="pt")).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()


def test_cli_lists_targets_and_hook():
    from leuk.cli import build_parser
    from leuk.cli.train import ENGINE_TARGETS, train_targets

    parser = build_parser("train")
    args = parser.parse_args(["train", PRESET, "--data", "d", "--out", "o", "--no-balanced", "--epochs", "2",
                              "--dtype", "float16", "--resume"])
    assert args.preset == PRESET and args.balanced is False and args.epochs == 2.0 and args.resume == "latest"
    assert set(ENGINE_TARGETS) == {"efficientnet-se", "efficientnetv2-b3", "resnet50", "vgg16", PRESET,
                                   "efficientnet-se-lite0", "efficientnet-se-lite1", "efficientnet-se-lite2"}
    # every family brings its own targets (ModelFamily.train_command / train_targets)
    assert train_targets()["hybridcn-nas"] == "leuk.cli.train_hybrid"
    assert all(train_targets()[name] == "leuk.cli.train_efficientnet_se" for name in ENGINE_TARGETS)
    from leuk.training.options import options_from_args

    options = options_from_args(args, model=args.preset)
    assert options.dtype == "float16" and options.model == PRESET


def test_cross_subject_folds_score_unseen_subjects_from_the_saved_models(cnmc_root, tmp_path):
    from leuk.experiments.cross_subject import CV_RESULTS_FILE, cross_subject_evaluation
    from leuk.metrics import classification_metrics

    options = TrainOptions(data=str(cnmc_root), out=str(tmp_path), model=PRESET, max_steps=2, batch_size=16,
                           seed=0, progress=False, quiet=True, synthetic=True)
    result = cross_subject_evaluation(options, tmp_path, folds=[0, 1])
    assert json.loads((tmp_path / CV_RESULTS_FILE).read_text())["summary"] == result["summary"]
    f1s = []
    for record in result["folds"]:
        fold_dir = tmp_path / f"fold_{record['fold']}"
        split = json.loads((fold_dir / SPLIT_FILE).read_text())
        assert set(split["test"]["patients"]).isdisjoint(split["train"]["patients"])
        assert set(split["val"]["patients"]) <= set(split["train"]["patients"])
        assert not (fold_dir / "checkpoints").exists()
        # the recorded test figures are those of the saved folder's predictions
        paths, labels = _split_rows(fold_dir, cnmc_root, "test")
        probs, names = _predict_probs(fold_dir, paths)
        assert classification_metrics(labels, probs, names)["f1_weighted"] == pytest.approx(
            record["test"]["f1_weighted"], abs=1e-6)
        f1s.append(record["test"]["f1_weighted"])
    spread = result["summary"]["over_folds"]["f1_weighted"]
    assert spread["mean"] == pytest.approx(np.mean(f1s)) and spread["std"] == pytest.approx(np.std(f1s, ddof=1))
    assert set(result["per_subject"]) == {s for r in result["folds"] for s in r["test_subjects"]}
    # folds trained apart are assembled into the same summary from their saved folders
    from leuk.experiments.cross_subject import collect_cross_subject

    collected = collect_cross_subject(options, [tmp_path / "fold_1", tmp_path / "fold_0"], tmp_path / "collected")
    for key, spread in result["summary"]["over_folds"].items():
        assert collected["summary"]["over_folds"][key] == pytest.approx(spread)
    assert collected["pooled_test"]["f1_weighted"] == pytest.approx(result["pooled_test"]["f1_weighted"])


@pytest.mark.slow
def test_a_seeded_run_repeats_exactly_and_another_seed_does_not(cnmc_root, tmp_path):
    """The model's random initial weights are drawn from the run's seed (the Trainer seeds only after the model
    is built): the same seed gives the same saved weights, bit for bit; another seed gives other weights."""
    from safetensors.numpy import load_file

    def weights(name: str, seed: int) -> dict[str, np.ndarray]:
        out = tmp_path / name
        train_efficientnet_se(data=cnmc_root, out=out, model=PRESET, max_steps=2, batch_size=8, seed=seed,
                              augment=False, progress=False, fit_ood=False)
        return load_file(str(out / "model.safetensors"))

    first, again, other = weights("a", 0), weights("b", 0), weights("c", 1)
    assert first.keys() == again.keys() == other.keys()
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert any(not np.array_equal(first[key], other[key]) for key in first)
