"""Loaders of the C-NMC and Aria layouts, and the acceptance checks of ``leuk synth`` (issue 2)."""

from __future__ import annotations

import csv
import hashlib
import shutil
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from leuk.cli import main
from leuk.data import dataset_summary, load_aria, load_cnmc
from leuk.errors import DatasetLayoutError


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _write_bmp(path: Path, value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, format="BMP")


def _run_cli(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), [line for line in captured.err.splitlines() if line.startswith("error")]


def test_synth_cnmc_acceptance_rows_patients_and_byte_identical_rerun(tmp_path: Path, capsys):
    argv = ["synth", "cnmc", "--patients", "12", "--images-per-patient", "10", "--size", "96", "--seed", "0"]
    code, out, _ = _run_cli([*argv, "--out", str(tmp_path / "a")], capsys)
    assert code == 0 and any("C-NMC_Leukemia" in line for line in out) and "120 images of 12 patients" in out[-1]
    ds = load_cnmc(tmp_path / "a")
    assert len(ds) == 120 and len(set(ds["patient_id"])) == 12 and set(ds["label"]) == {0, 1}
    assert ds.features["label"].names == ["hem", "all"]

    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    first, second = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert len(first) == 241 and first == second  # 120 BMPs, 120 nucleus masks, SYNTHETIC.md: byte for byte


def test_synth_aria_acceptance_classes_masks_patients_and_rerun(tmp_path: Path, capsys):
    argv = ["synth", "aria", "--patients", "4", "--images-per-patient", "2", "--size", "96", "--seed", "3"]
    code, out, _ = _run_cli([*argv, "--out", str(tmp_path / "a")], capsys)
    assert code == 0 and "8 images of 4 patients" in out[-1]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")

    ds = load_aria(tmp_path / "a")
    assert ds.features["label"].names == ["Benign", "Early", "Pre", "Pro"] and set(ds["label"]) == {0, 1, 2, 3}
    with open(tmp_path / "a" / "patients.csv", newline="") as handle:
        expected = {row["image"]: row["patient_id"] for row in csv.DictReader(handle)}
    loaded = {Path(p).relative_to(tmp_path / "a").as_posix(): pid for p, pid in zip(ds["path"], ds["patient_id"])}
    assert loaded == expected
    row = ds[0]
    assert row["mask"] is not None and row["mask"].size == row["image"].size
    assert "image-level" not in ds.info.description.lower()


def test_fixtures_are_small_and_loaded(cnmc_dataset, aria_dataset, cnmc_root, aria_root):
    assert dataset_summary(cnmc_dataset)["rows"] == 72 and dataset_summary(cnmc_dataset)["patients"] == 12
    summary = dataset_summary(aria_dataset)
    assert summary["rows"] == 32 and summary["patients"] == 8 and all(summary["patients_per_class"].values())
    assert sum(summary["per_class"].values()) == summary["rows"]
    assert (cnmc_root / "masks").is_dir() and (aria_root / "Masks").is_dir()


def test_images_are_stored_as_paths_and_decoded_lazily(cnmc_dataset):
    assert isinstance(cnmc_dataset.features["image"], datasets.Image)
    raw = cnmc_dataset.cast_column("image", datasets.Image(decode=False))[0]
    assert raw["image"]["bytes"] is None and raw["image"]["path"] == raw["path"]
    assert cnmc_dataset[0]["image"].size == (64, 64)


@pytest.mark.parametrize("loader", [load_cnmc, load_aria])
def test_wrong_folder_raises_one_line_naming_the_layout(tmp_path: Path, loader):
    (tmp_path / "photos").mkdir()
    _write_bmp(tmp_path / "photos" / "cat.bmp")
    for root in (tmp_path, tmp_path / "missing"):
        with pytest.raises(DatasetLayoutError) as info:
            loader(root)
        message = str(info.value)
        assert "\n" not in message and "expected" in message
        assert ("C-NMC_Leukemia/training_data" in message) if loader is load_cnmc else ("Original/" in message)


def test_cli_prints_exactly_one_error_line(tmp_path: Path, capsys):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    code, out, errors = _run_cli(["synth", "cnmc", "--out", str(not_a_folder), "--size", "32"], capsys)
    assert code == 1 and len(errors) == 1 and "is a file" in errors[0]

    assert main(["synth", "cnmc", "--out", str(tmp_path / "d"), "--patients", "2", "--images-per-patient", "1",
                 "--size", "32"]) == 0
    capsys.readouterr()
    code, _, errors = _run_cli(["synth", "cnmc", "--out", str(tmp_path / "d"), "--size", "32"], capsys)
    assert code == 1 and len(errors) == 1 and "--overwrite" in errors[0]


def test_kaggle_prelim_phase_loads_with_namespaced_subjects(tmp_path: Path):
    base = tmp_path / "C-NMC_Leukemia"
    _write_bmp(base / "training_data" / "fold_0" / "all" / "UID_3_1_1_all.bmp")
    _write_bmp(base / "training_data" / "fold_1" / "hem" / "UID_h10_2_1_hem.bmp")  # lower-case h occurs
    prelim = base / "validation_data" / "C-NMC_test_prelim_phase_data"
    for name in ("1.bmp", "2.bmp", "3.bmp"):
        _write_bmp(prelim / name)
    _write_bmp(base / "testing_data" / "C-NMC_test_final_phase_data" / "1.bmp")  # unlabelled: skipped
    with open(base / "validation_data" / "C-NMC_test_prelim_phase_data_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Patient_ID", "new_names", "labels"])
        writer.writerows([["UID_57_29_1_all.bmp", "1.bmp", 1], ["UID_H10_1_1_hem.bmp", "2.bmp", 0],
                          ["UID_h10_4_2_hem.bmp", "3.bmp", 0]])

    for root in (tmp_path, base):
        ds = load_cnmc(root)
        rows = {Path(p).relative_to(base).as_posix(): (pid, label, source)
                for p, pid, label, source in zip(ds["path"], ds["patient_id"], ds["label"], ds["source"])}
        assert rows == {
            "training_data/fold_0/all/UID_3_1_1_all.bmp": ("3", 1, "fold_0"),
            "training_data/fold_1/hem/UID_h10_2_1_hem.bmp": ("H10", 0, "fold_1"),
            "validation_data/C-NMC_test_prelim_phase_data/1.bmp": ("prelim:57", 1, "prelim"),
            "validation_data/C-NMC_test_prelim_phase_data/2.bmp": ("prelim:H10", 0, "prelim"),
            "validation_data/C-NMC_test_prelim_phase_data/3.bmp": ("prelim:H10", 0, "prelim"),
        }


def test_tcia_layout_and_prelim_without_labels_warns(tmp_path: Path):
    _write_bmp(tmp_path / "C-NMC_training_data" / "fold_2" / "all" / "UID_5_1_1_all.bmp")
    _write_bmp(tmp_path / "C-NMC_training_data" / "fold_2" / "hem" / "UID_H1_1_1_hem.bmp")
    _write_bmp(tmp_path / "C-NMC_test_prelim_phase_data" / "1.bmp")
    with pytest.warns(UserWarning, match="no labels CSV"):
        ds = load_cnmc(tmp_path)
    assert sorted(ds["patient_id"]) == ["5", "H1"]


def test_bad_cnmc_file_name_is_reported(tmp_path: Path):
    _write_bmp(tmp_path / "C-NMC_Leukemia" / "training_data" / "fold_0" / "all" / "cell.bmp")
    with pytest.raises(DatasetLayoutError, match="UID_<subject>"):
        load_cnmc(tmp_path)


def test_aria_without_patient_map_is_loudly_image_level(aria_root: Path, tmp_path: Path):
    shutil.copytree(aria_root / "Original", tmp_path / "Original")
    with pytest.warns(UserWarning, match="image-level"):
        ds = load_aria(tmp_path)
    assert all(pid == f"image:{Path(path).name}" for pid, path in zip(ds["patient_id"], ds["path"]))
    assert "IMAGE-LEVEL" in ds.info.description and len(set(ds["patient_id"])) == len(ds)
    assert ds["mask"] == [None] * len(ds)


def test_aria_four_class_variant_folder_names(tmp_path: Path):
    variant = tmp_path / "Blood cell Cancer [ALL]"
    names = {"Benign": 0, "[Malignant] early Pre-B": 1, "[Malignant] Pre-B": 2, "[Malignant] Pro-B": 3}
    for folder in names:
        (variant / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(variant / folder / "Sap_013 (1).jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for root in (tmp_path, variant):
            ds = load_aria(root)
            assert {Path(p).parent.name: label for p, label in zip(ds["path"], ds["label"])} == names


def test_aria_patient_map_errors(aria_root: Path, tmp_path: Path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load_aria(aria_root, patients_csv=tmp_path / "nope.csv")
    partial = tmp_path / "partial.csv"
    with open(aria_root / "patients.csv") as source:
        partial.write_text("".join(source.readlines()[:5]))
    with pytest.raises(DatasetLayoutError, match="no patient for") as info:
        load_aria(aria_root, patients_csv=partial)
    assert "\n" not in str(info.value)
