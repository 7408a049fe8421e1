"""A model trained on every subject: calibrated on out-of-fold rows only, and `leuk evaluate` refuses to score
it on its own training images (synthetic data: the mechanics, not the figures)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leuk.cli import main
from leuk.training.efficientnet_se import TrainOptions

PRESET = "efficientnet-se-test"


@pytest.fixture(scope="module")
def shipped(cnmc_root, tmp_path_factory):
    from leuk.experiments.cross_subject import cross_subject_evaluation, train_all_subjects
    from leuk.experiments.shipping import ship_all_subject_model

    work = tmp_path_factory.mktemp("all-subjects")
    options = TrainOptions(data=str(cnmc_root), out=str(work), model=PRESET, max_steps=2, batch_size=16, seed=0,
                           progress=False, quiet=True, synthetic=True)
    cv = cross_subject_evaluation(options, work, folds=[0, 1])
    train_all_subjects(options, work / "final")
    ship_all_subject_model(work / "final", cv, work / "ship", command="pytest", target_accuracy=0.6)
    return work, cv


@pytest.mark.slow
def test_out_of_fold_rows_come_from_models_that_never_saw_the_subject(shipped):
    from leuk.experiments.shipping import read_out_of_fold

    work, cv = shipped
    trained_by_fold = {f["fold"]: set(f["train_subjects"]) for f in cv["folds"]}
    rows = read_out_of_fold(work / "ship")
    assert len(rows) == sum(f["split_sizes"]["test"]["n_images"] for f in cv["folds"])
    for row in rows:
        assert row["subject"] not in trained_by_fold[row["fold"]]
    # the shipped temperature and threshold are exactly what these rows give
    from leuk.experiments.shipping import calibrate_out_of_fold

    again = calibrate_out_of_fold(rows, ["hem", "all"], target_accuracy=0.6)
    calibration = json.loads((work / "ship" / "calibration.json").read_text())
    config = json.loads((work / "ship" / "config.json").read_text())
    assert again["temperature"] == pytest.approx(calibration["temperature"], rel=1e-4)
    assert again["uncertain_below"] == pytest.approx(calibration["uncertain_below"], abs=1e-5)
    assert config["temperature"] == calibration["temperature"]
    # the out-of-fold logits are each fold model's own: softmax at its temperature gives its recorded figure
    from leuk.metrics import classification_metrics, softmax

    for fold in cv["folds"]:
        mine = [r for r in rows if r["fold"] == fold["fold"]]
        probs = softmax(np.asarray([r["logits"] for r in mine]) / fold["temperature"])
        labels = np.asarray([["hem", "all"].index(r["label"]) for r in mine])
        assert classification_metrics(labels, probs, ["hem", "all"])["f1_weighted"] == pytest.approx(
            fold["test"]["f1_weighted"], abs=1e-4)


@pytest.mark.slow
def test_all_subject_model_trains_on_every_subject_and_loads_its_threshold(shipped, cnmc_root):
    from leuk.hub import load_model

    work, cv = shipped
    split = json.loads((work / "ship" / "training_split.json").read_text())
    assert split["test"]["n_images"] == 0 and split["protocol"] == "all-subjects"
    assert set(split["val"]["patients"]) <= set(split["train"]["patients"])
    assert len(split["train"]["patients"]) == cv["dataset"]["n_subjects"]
    loaded = load_model(str(work / "ship"))
    assert loaded.uncertain_below == json.loads((work / "ship" / "calibration.json").read_text())["uncertain_below"]
    assert json.loads((work / "ship" / "ood_detector.json").read_text())["fit"]["n_train_images"] == \
        split["train"]["n_images"]
    card = (work / "ship" / "README.md").read_text()
    assert "Calibration and the verdict, fitted on out-of-fold predictions" in card


@pytest.mark.slow
def test_evaluate_on_the_training_pool_points_to_the_cross_validation(shipped, cnmc_root, tmp_path, capsys):
    work, _ = shipped
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(work / "ship"), "--data", str(cnmc_root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "training-set score, so none is printed" in printed and "cross-subject validation" in printed
    assert not (out / "metrics.json").exists()
    # asked for explicitly, the training-set score is computed
    assert main(["evaluate", "--model", str(work / "ship"), "--data", str(cnmc_root), "--out", str(out),
                 "--split", "all"]) == 0
    assert json.loads((out / "metrics.json").read_text())["split"] == "all"
