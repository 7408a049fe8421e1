"""``leuk evaluate`` reproduces the test figures a training run recorded, on the same test patients."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from leuk.cli import main


@pytest.fixture(scope="module")
def run_dir(cnmc_root, tmp_path_factory) -> Path:
    from leuk.experiments.runs import train_efficientnet_se

    out = tmp_path_factory.mktemp("evaluate") / "model"
    train_efficientnet_se(data=cnmc_root, out=out, model="efficientnet-se-test", max_steps=3, batch_size=16,
                          eval_steps=3, seed=3, progress=False)
    return out


@pytest.mark.slow
def test_evaluate_reproduces_the_recorded_test_figures(run_dir, cnmc_root, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run_dir), "--data", str(cnmc_root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    recorded = json.loads((run_dir / "eval_results.json").read_text())
    report = json.loads((out / "metrics.json").read_text())
    assert report["split"] == "test"  # the default when the model records its split
    assert report["patients_hash"] == recorded["test_patients_hash"] == report["recorded_test_patients_hash"]
    assert report["metrics"]["n"] == recorded["test"]["n"]
    for key in ("accuracy", "f1_weighted", "f1_macro", "roc_auc", "mcc", "sensitivity", "specificity", "ece"):
        assert report["metrics"][key] == pytest.approx(recorded["test"][key], abs=1e-9), key
    assert report["metrics"]["confusion_matrix"] == recorded["test"]["confusion_matrix"]
    for name in ("confusion_matrix.png", "roc.png", "reliability.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == recorded["test"]["n"]
    split = json.loads((run_dir / "training_split.json").read_text())
    assert {row["patient_id"] for row in rows} == set(split["test"]["patients"])
    assert f"{recorded['test']['f1_weighted']:.4f}" in printed


@pytest.mark.slow
def test_evaluate_all_and_foreign_data(run_dir, cnmc_root, cnmc_dataset, tmp_path, capsys):
    out = tmp_path / "all"
    assert main(["evaluate", "--model", str(run_dir), "--data", str(cnmc_root), "--out", str(out),
                 "--split", "all"]) == 0
    assert json.loads((out / "metrics.json").read_text())["metrics"]["n"] == len(cnmc_dataset)
    capsys.readouterr()

    # a copy of the data without the test patients: nothing to evaluate on, said in one line
    import shutil

    split = json.loads((run_dir / "training_split.json").read_text())
    other = tmp_path / "other"
    for relative in split["train"]["images"]:
        (other / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cnmc_root / relative, other / relative)
    code = main(["evaluate", "--model", str(run_dir), "--data", str(other), "--out", str(tmp_path / "x")])
    assert code == 1
    assert "test patients is in" in capsys.readouterr().err


def test_split_records_of_both_formats_read_alike():
    """Older HybridCN-NAS folders hold the ``<part>_patients`` format; the reader gives the same parts."""
    from leuk.data.splits import patient_set_hash
    from leuk.records import parse_training_split

    old = parse_training_split({"protocol": "patient", "sizes": {"train": {"n_images": 150}},
                                "train_patients": ["p1", "p2"], "val_patients": ["p3"], "test_patients": ["p5", "p4"]})
    assert old.protocol == "patient" and old.part("test").patients and old.part("test").images is None
    assert set(old.part("test").patients) == {"p4", "p5"} and set(old.part("train").patients) == {"p1", "p2"}
    assert old.test_patients_hash == patient_set_hash(["p4", "p5"])
    shared = parse_training_split({"protocol": "patient", "test": {"patients": ["b", "a"], "n_images": 2,
                                                                   "images": ["x.png", "y.png"]}})
    assert shared.part("test").patients == ("b", "a") and shared.part("test").images == ("x.png", "y.png")
    assert shared.test_patients_hash is not None and shared.part("val").patients == ()


@pytest.mark.slow
def test_evaluate_runs_on_the_bundled_hybridcn_nas_demo(aria_root, tmp_path, capsys):
    """The bundled demo is trained on real Aria smears: a synthetic Aria set holds none of its recorded test
    images, so the default (its test split) refuses in one line, and ``--split all`` scores every image."""
    out = tmp_path / "hybrid"
    command = ["evaluate", "--model", "demo:hybridcn-nas-lite", "--data", str(aria_root), "--out", str(out),
               "--device", "cpu"]
    assert main(command) == 1
    assert "none of the model's 609 recorded test images is in" in capsys.readouterr().err
    assert main(command + ["--split", "all"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["split"] == "all" and report["dataset"] == "aria" and report["metrics"]["n"] > 0
    assert report["selection"] == "every image"
    n = report["metrics"]["n"]
    assert f"patients, {n} images)" in capsys.readouterr().out and report["patient_ids"] is True


@pytest.mark.slow
def test_evaluate_on_aria_without_patient_ids_counts_images_not_patients(aria_root, tmp_path, capsys):
    """Without a patient map every Aria image is its own pseudo-patient: ``leuk evaluate`` says "N images (no
    patient ids; blocks of file numbers)" (the demo's split protocol), never "N patients", and metrics.json has
    no patient count."""
    import shutil

    data = tmp_path / "aria"
    shutil.copytree(aria_root, data)
    (data / "patients.csv").unlink()
    out = tmp_path / "hybrid"
    with pytest.warns(UserWarning, match="IMAGE-LEVEL"):
        assert main(["evaluate", "--model", "demo:hybridcn-nas-lite", "--data", str(data), "--out", str(out),
                     "--device", "cpu", "--split", "all"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    n = report["metrics"]["n"]
    printed = capsys.readouterr().out
    assert f"every image; {n} images (no patient ids; blocks of file numbers))" in printed
    assert "patients" not in printed.splitlines()[0]
    assert report["patient_ids"] is False and report["n_patients"] is None


def test_evaluate_a_missing_model_folder_is_not_a_hub_error(tmp_path, monkeypatch, capsys):
    """``--model runs/effse`` where ``runs/`` exists but ``runs/effse`` does not: one line saying there is no such
    folder, never "could not reach the Hub"; an org/name whose org is no local folder still goes to the Hub."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "runs").mkdir()
    command = ["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main([*command, "--model", "runs/effse"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: no model folder at runs/effse") and "\n" not in error
    assert "could not reach the Hub" not in error and "network" not in error

    from leuk.hub.loader import parse_model_spec

    assert parse_model_spec("runs/effse").kind == "folder"
    assert parse_model_spec("leuk-test/not-cached").kind == "hub"
    assert main([*command, "--model", "leuk-test/not-cached"]) == 1
    error = capsys.readouterr().err.strip()
    assert "Hub" in error and "no model folder at leuk-test/not-cached" in error
