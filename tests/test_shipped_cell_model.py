"""The bundled default cell model (assets/demo_models/efficientnet-se): trained on every pool subject, its
temperature and verdict threshold fitted on out-of-fold predictions only. Reads the committed folder; no
../shared needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "assets" / "demo_models" / "efficientnet-se"


def _json(name: str) -> dict:
    return json.loads((FOLDER / name).read_text(encoding="utf-8"))


def test_default_cell_model_is_trained_on_every_pool_subject():
    split = _json("training_split.json")
    evaluation = _json("eval_results.json")
    assert evaluation["protocol"] == split["protocol"] == "all-subjects"
    assert split["test"]["n_images"] == 0
    pool = set(evaluation["cross_subject"]["per_subject"])  # every subject the cross-validation scored
    assert len(pool) == 17 and set(split["train"]["patients"]) == pool
    assert sum(1 for s in pool if s.startswith("H")) == 3  # all three HEM subjects
    config = _json("config.json")
    assert config["pretrained_backbone_source"] and "Lite0" in config["pretrained_backbone_source"]


def test_calibration_comes_from_out_of_fold_predictions_only():
    from leuk.experiments.shipping import calibrate_out_of_fold, read_out_of_fold

    evaluation = _json("eval_results.json")
    calibration = _json("calibration.json")
    rows = read_out_of_fold(FOLDER)
    trained_by_fold = {f["fold"]: set(f["train_subjects"]) for f in evaluation["cross_subject"]["folds"]}
    assert len(trained_by_fold) == 3
    # every row was scored by the fold model that never saw its subject; every pool cell is there once
    assert all(row["subject"] not in trained_by_fold[row["fold"]] for row in rows)
    assert len({row["image"] for row in rows}) == len(rows) == _json("training_split.json")["dataset"]["n_images"]
    # and these rows, nothing else, give the shipped temperature and threshold
    again = calibrate_out_of_fold(rows, ["hem", "all"], target_accuracy=calibration["target_accuracy"])
    assert again["temperature"] == pytest.approx(calibration["temperature"], rel=1e-3)
    assert again["uncertain_below"] == pytest.approx(calibration["uncertain_below"], abs=1e-4)
    assert _json("config.json")["temperature"] == pytest.approx(calibration["temperature"])


def test_the_loader_and_the_apps_use_the_fitted_threshold():
    from leuk.hub import load_model

    loaded = load_model("demo:efficientnet-se", device="cpu")
    assert loaded.uncertain_below == pytest.approx(_json("calibration.json")["uncertain_below"])
