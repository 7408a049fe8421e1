"""``leuk predict`` and the prediction engine (leuk.inference) on good and broken files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leuk.cli import main
from leuk.inference import Predictor


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny EfficientNet-SE (random weights, temperature 1.7) saved with its processor."""
    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor

    torch.manual_seed(0)
    model = create_model("efficientnet-se-test", temperature=1.7).eval()
    folder = tmp_path_factory.mktemp("predict_model")
    model.save_pretrained(folder)
    EfficientNetSEImageProcessor.from_model_config(model.config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def files(cnmc_dataset, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("predict_files")
    good_bmp = Path(cnmc_dataset[0]["path"])
    good_jpg = folder / "cell.jpg"
    Image.open(good_bmp).convert("RGB").save(good_jpg, quality=95)
    not_image = folder / "notes.png"
    not_image.write_text("this is a text file, not a PNG\n")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good_jpg.read_bytes()[: good_jpg.stat().st_size // 2])
    return {"bmp": good_bmp, "jpg": good_jpg, "text": not_image, "truncated": truncated}


def test_mixed_inputs_each_bad_file_gets_its_own_error(model_dir, files, tmp_path, capsys):
    json_out, csv_out = tmp_path / "p.json", tmp_path / "p.csv"
    order = [files["bmp"], files["text"], files["jpg"], files["truncated"]]
    code = main(["predict", "--model", str(model_dir), *map(str, order), "--json", str(json_out),
                 "--csv", str(csv_out), "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 0
    table = captured.out.splitlines()
    assert table[0].split() == ["file", "label", "probability", "ood_score", "verdict"]
    assert "note: no out-of-distribution detector" in captured.err  # this model folder has none
    assert [line.split()[0] for line in table[1:]] == [str(files["bmp"]), str(files["jpg"])]
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "notes.png" in errors[0] and "not a readable image" in errors[0]
    assert "truncated.jpg" in errors[1] and "truncated" in errors[1].split(":", 2)[2]

    records = json.loads(json_out.read_text())
    assert [r["source"] for r in records] == list(map(str, order))  # input order kept across batches
    assert [r["error"] is None for r in records] == [True, False, True, False]
    for record in records[::2]:
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert record["top_probability"] == pytest.approx(max(record["probabilities"].values()))
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
    rows = list(csv.DictReader(csv_out.open()))
    assert [row["file"] for row in rows] == list(map(str, order))
    assert rows[1]["error"] and not rows[0]["error"]


def test_all_bad_files_exit_non_zero(model_dir, files, capsys):
    code = main(["predict", "--model", str(model_dir), str(files["text"]), str(files["truncated"]),
                 str(files["text"].with_name("missing.png"))])
    captured = capsys.readouterr()
    assert code == 1
    assert len([line for line in captured.err.splitlines() if line.startswith("error:")]) == 3
    assert f"{files['text'].with_name('missing.png')}: no such file" in captured.err  # the path as typed


def test_an_output_flag_before_the_images_overwrites_none_of_them(model_dir, files, tmp_path, capsys):
    """``--json`` (or ``--csv``) typed before the images takes the first image as its file: refused in one
    line, before any model is loaded, and the image is left as it was."""
    image = tmp_path / "smear.jpg"
    image.write_bytes(files["jpg"].read_bytes())
    before = image.read_bytes()
    for flag in ("--json", "--csv"):
        code = main(["predict", "--model", str(model_dir), flag, str(image), str(files["bmp"])])
        error = capsys.readouterr().err.strip()
        assert code == 1 and error.startswith(f"error: {flag} {image} names an image") and "\n" not in error
        assert image.read_bytes() == before


def test_unknown_model_is_one_line_error(files, tmp_path, capsys):
    code = main(["predict", "--model", str(tmp_path / "nowhere"), str(files["bmp"])])
    assert code == 1
    assert capsys.readouterr().err.strip().startswith(f"error: no model folder at {tmp_path / 'nowhere'}")


def test_predictor_matches_model_forward_and_accepts_arrays(model_dir, files):
    from leuk.hub import load_model
    from leuk.io import read_image

    loaded = load_model(str(model_dir))
    predictor = Predictor(loaded.model, loaded.processor, device="cpu", batch_size=3)
    image = read_image(files["bmp"])
    results = predictor.predict_images([files["bmp"], image, np.asarray(image), files["text"]])
    assert [r.ok for r in results] == [True, True, True, False]
    assert results[1].source == "image 1"
    # oracle: the processor, the model's forward and a softmax, done by hand
    pixels = loaded.processor(images=image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = torch.softmax(loaded.model.float()(pixel_values=pixels).logits, dim=1)[0].numpy()
    for result in results[:3]:
        got = np.array([result.probabilities[name] for name in predictor.label_names])
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # the model's temperature divides the logits before the softmax
    assert loaded.model.config.temperature == pytest.approx(1.7)
