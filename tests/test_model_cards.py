"""What leuk says about a model: the model cards of the bundled demos (and of a real-data model's cross-subject
record), the banners derived from each model's records, and the apps' Models views showing the cards.

The real-format ``eval_results.json`` here is built in the test (the format ``train/train_real_efficientnet_se.py
--ship`` writes), so nothing depends on a training run or on the real dataset.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app" / "app.py"

FOLDS = [
    {"fold": 0, "test_subjects": ["23", "32", "33", "38", "51", "H10"], "f1": 0.7227},
    {"fold": 1, "test_subjects": ["16", "2", "30", "4", "44", "H14"], "f1": 0.6109},
    {"fold": 2, "test_subjects": ["11", "34", "46", "5", "H22"], "f1": 0.6025},
]
TRAINING_SUBJECTS = ["11", "16", "2", "30", "34", "4", "44", "46", "5", "H14", "H22"]


def real_eval_results() -> dict:
    """A small ``eval_results.json`` in the format of a shipped real-data fold (numbers made up, rounded)."""
    per_subject = {}
    for fold in FOLDS:
        for subject in fold["test_subjects"]:
            per_subject[subject] = {"label": "hem" if subject.startswith("H") else "all",
                                    "n_images": 150 if subject.startswith("H") else 127, "accuracy": 0.5}
    per_subject["23"]["n_images"] = 97  # the pool: 3 x 150 + 13 x 127 + 97 = 2,198 cells
    test = {"accuracy": 0.6876, "f1_weighted": 0.7227, "roc_auc": 0.7706, "mcc": 0.3104, "sensitivity": 0.6821,
            "specificity": 0.7133, "n": 842, "label_names": ["hem", "all"]}
    return {
        "model": "efficientnet-se", "protocol": "leave-one-rare-subject-out", "split": "test", "fold": 0,
        "synthetic": False, "dataset": "C-NMC 2019 (real cells; the pool of 14 ALL and 3 HEM subjects)",
        "split_sizes": {"train": {"n_patients": 11, "n_images": 1161}, "val": {"n_patients": 11, "n_images": 158},
                        "test": {"n_patients": 6, "n_images": 842}},
        "test": test,
        "shipped_fold": 0,
        "training_subjects": TRAINING_SUBJECTS,
        "held_out_subjects": FOLDS[0]["test_subjects"],
        "cross_subject": {
            "protocol": "leave-one-rare-subject-out",
            "summary": {
                "over_folds": {
                    "f1_weighted": {"mean": 0.6454, "std": 0.0671, "min": 0.6025, "max": 0.7227, "n_folds": 3},
                    "roc_auc": {"mean": 0.8194, "std": 0.0431, "min": 0.7706, "max": 0.8522, "n_folds": 3},
                },
                "pooled": {"f1_weighted": 0.6564, "roc_auc": 0.8015},
            },
            "per_subject": per_subject,
            "folds": [{"fold": f["fold"], "test_subjects": f["test_subjects"], "test": {"f1_weighted": f["f1"]}}
                      for f in FOLDS],
        },
        "recipe": {"image_size": 128, "epochs": 16.0, "batch_size": 32, "lr": 0.001, "pretrained": False,
                   "augment_preset": "strong", "seed": 0},
        "command": "python train/train_real_efficientnet_se.py --data C-NMC_Leukemia --ship out",
    }


def synthetic_eval_results() -> dict:
    return {"model": "hybridcn-nas-lite", "protocol": "patient", "synthetic": True,
            "dataset": "synthetic Aria look-alike", "test": {"accuracy": 0.56, "n": 48}}


def write_records(folder: Path, config: dict, eval_results: dict | None) -> Path:
    """A model folder holding only its JSON records (enough for banners; no weights)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if eval_results is not None:
        (folder / "eval_results.json").write_text(json.dumps(eval_results), encoding="utf-8")
    return folder


EFFSE_CONFIG = {"model_type": "efficientnet_se", "backbone": "tf_efficientnetv2_b3", "id2label": {"0": "hem", "1": "all"},
                "pretrained_backbone_source": None, "training_protocol": {"data": "real"}}
HYBRID_CONFIG = {"model_type": "hybridcn_nas", "id2label": {"0": "Benign", "1": "Early", "2": "Pre", "3": "Pro"},
                 "training_protocol": {"preset": "lite", "synthetic": True}}


# ------------------------------------------------------------------------------------------ banners


def test_banners_say_what_each_models_records_say(tmp_path, monkeypatch):
    from leuk import serving

    write_records(tmp_path / "effse-real", EFFSE_CONFIG, real_eval_results())
    write_records(tmp_path / "hybrid-synthetic", HYBRID_CONFIG, synthetic_eval_results())
    write_records(tmp_path / "unrecorded", {"model_type": "efficientnet_se"}, None)
    monkeypatch.setenv("LEUK_DEMO_MODELS_DIR", str(tmp_path))
    registry = serving.ModelRegistry(["demo:effse-real", "demo:hybrid-synthetic", "demo:unrecorded", "org/model@v1"])

    real = serving.banner_for("demo:effse-real", registry=registry, load=False)
    assert ("EfficientNet-SE: trained on real C-NMC cells (2 HEM + 9 ALL subjects, 1,319 cells); "
            "cross-subject weighted F1 0.645 ± 0.067 over 3 folds") in real
    assert "synthetic" not in real.lower() and "Demo weights" not in real and "not a diagnosis" in real

    synthetic = serving.banner_for("demo:hybrid-synthetic", registry=registry, load=False)
    assert "Demo weights" in synthetic and "HybridCN-NAS lite: trained on synthetic smears" in synthetic
    assert "real C-NMC" not in synthetic

    unrecorded = serving.banner_for("demo:unrecorded", registry=registry, load=False)
    assert "Demo weights" in unrecorded and "no record" in unrecorded
    assert serving.banner_for("org/model@v1", registry=registry, load=False) == ""

    summary = serving.training_summary_for("demo:effse-real", registry=registry, load=False)
    assert summary.real and summary.subjects == {"HEM": 2, "ALL": 9} and summary.headline.n_folds == 3


def test_banner_of_every_bundled_demo_matches_its_records():
    from leuk import serving
    from leuk.hub import list_demo_models
    from leuk.hub.loader import demo_models_dir
    from leuk.hub.provenance import folder_training_summary

    names = [f"demo:{name}" for name in list_demo_models()]
    assert names, "assets/demo_models holds no model"
    registry = serving.ModelRegistry(names)
    for name in names:
        summary = folder_training_summary(demo_models_dir() / name.split(":", 1)[1])
        banner = serving.banner_for(name, registry=registry, load=False)
        assert summary.text in banner
        assert ("Demo weights" in banner) == (not summary.real)


# ------------------------------------------------------------------------------------------ cards


@pytest.fixture(scope="module")
def tiny_real_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny EfficientNet-SE saved with a real-format ``eval_results.json``."""
    import torch

    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("real") / "effse-real"
    model = create_model("efficientnet-se-test")
    model.config.pretrained_backbone_source = None
    model.save_pretrained(folder)
    EfficientNetSEImageProcessor.from_model_config(model.config).save_pretrained(folder)
    (folder / "eval_results.json").write_text(json.dumps(real_eval_results()), encoding="utf-8")
    return folder


def test_card_renders_the_cross_subject_record(tiny_real_model):
    from huggingface_hub import ModelCard

    from leuk.hub.cards import write_model_card

    path = write_model_card(tiny_real_model)
    assert path == tiny_real_model / "README.md"
    text = path.read_text(encoding="utf-8")
    card = ModelCard.load(path)
    assert card.data.eval_results and card.data.eval_results[0].dataset_split == "test"
    assert "| F1 (weighted) | 0.6454 ± 0.0671 | 0.6025 – 0.7227 | 0.6564 |" in text
    assert "| ROC AUC | 0.8194 ± 0.0431 | 0.7706 – 0.8522 | 0.8015 |" in text
    assert re.search(r"^\| H10 \| HEM \| 150 \| 0\.500 \| 0 \|$", text, re.MULTILINE)
    assert re.search(r"^\| 30 \| ALL \| 127 \| 0\.500 \| 1 \|$", text, re.MULTILINE)
    assert "14 ALL / 3 HEM subjects, 2,198 cells" in text
    assert "These weights are fold 0 of 3" in text
    assert "2, 4, 5, 11, 16, 30, 34, 44, 46, H14, H22" in text  # the shipped fold's training subjects
    assert "9 ALL / 2 HEM subjects" in text
    for limit in ("Only 14 ALL / 3 HEM subjects", "instead of the paper's 384 px", "Trained from scratch",
                  "No external validation", "Not for clinical use", "CC BY 3.0", "SBILab"):
        assert limit in text, limit
    assert "python train/train_real_efficientnet_se.py" in text
    assert "SYNTHETIC" not in text and "synthetic-data" not in text
    assert f'load_model("{tiny_real_model}")' in text and "huggingface.co/" not in text  # local: no invented repo


def _training_section(card_text: str) -> str:
    match = re.search(r"^## Training data\n(.*?)^## ", card_text, re.MULTILINE | re.DOTALL)
    assert match, "the card has no Training data section"
    return match.group(1)


def test_every_demo_folder_has_a_card_that_names_its_training_data():
    from huggingface_hub import ModelCard

    from leuk.hub import list_demo_models
    from leuk.hub.loader import demo_models_dir
    from leuk.hub.provenance import folder_training_summary

    names = list_demo_models()
    assert names
    for name in names:
        folder = demo_models_dir() / name
        path = folder / "README.md"
        assert path.is_file(), f"{folder} has no model card: run python train/render_model_cards.py"
        text = path.read_text(encoding="utf-8")
        ModelCard.load(path)  # valid front matter
        assert f"`demo:{name}`" in text
        if (folder / "ood_detector.json").is_file():  # the card says what the stored detector is
            assert "## Out-of-distribution check" in text and "training images only" in text
        training = _training_section(text)
        summary = folder_training_summary(folder)
        assert summary.synthetic is not None, f"{name}: its records do not say what it was trained on"
        if summary.synthetic:
            assert "synthetic" in training.lower() and "These weights were trained on SYNTHETIC images" in text
        else:
            dataset = "C-NMC 2019" if "efficientnet" in name else "Aria"
            assert dataset in training and "synthetic images" not in training.lower()
            assert "look-alike" not in training.lower() and "SYNTHETIC" not in text
            assert "Not for clinical use" in text and "no external validation" in text.lower()
            if summary.headline is not None:  # the card was rendered from the cross-subject record it ships
                assert "mean ± sd over folds" in text and f"{summary.headline.mean:.4f}" in text
        assert "## Known limitations" in text and "Not for clinical diagnosis" in text


# ------------------------------------------------------------------------------------------ Models views


def _card_title(name: str) -> str:
    from leuk.hub.loader import demo_models_dir

    text = (demo_models_dir() / name / "README.md").read_text(encoding="utf-8")
    return next(line for line in text.splitlines() if line.startswith("# "))[2:].strip()


@pytest.mark.slow
def test_models_tab_and_models_page_show_the_demo_cards(monkeypatch):
    from leuk import serving
    from leuk.hub import list_demo_models

    names = list_demo_models()
    monkeypatch.delenv("LEUK_MODELS", raising=False)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    serving.set_registry(serving.ModelRegistry([f"demo:{name}" for name in names], device="cpu"))
    try:
        import app

        for name in names:  # the handler behind the Models tab (and its /model_info endpoint)
            summary, card, metrics, snippet, headline, breakdown = app.model_info(f"demo:{name}")
            assert not headline.empty and not breakdown.empty, f"the Models tab shows no held-out figures of {name}"
            assert card.startswith(f"# {_card_title(name)}") and "## Training data" in card
            assert "no model card" not in card
            assert "trained on" in summary
    finally:
        serving.set_registry(None)

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(APP), default_timeout=120).run()
        at.switch_page("views/models.py").run()
        assert not at.exception, [e.value for e in at.exception]
        shown = "\n".join(m.value for m in at.markdown)
        for name in names:
            assert _card_title(name) in shown, f"the Models page does not show the card of {name}"
        assert "no model card" not in shown
    finally:
        serving.set_registry(None)
        st.cache_data.clear()
        st.cache_resource.clear()


# ------------------------------------------------------------------------------------- loading snippets

#: Runs before a snippet in the fresh interpreter: leuk cannot be imported (the editable install's finder
#: included), nor anything from the repository, so only transformers, torch and the folder's remote code run.
_NO_LEUK = """
import sys
sys.modules["leuk"] = None
assert not any(p and __import__("os").path.abspath(p) == {repo!r} for p in sys.path), sys.path
"""


def _python_block(card_text: str) -> str:
    section = card_text.split("## How to load", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the card's How to load section has no Python block"
    return match.group(1)


def _run_snippet(snippet: str, tmp_path: Path) -> list[float]:
    """Run ``snippet`` as printed in ``python -I`` (no PYTHONPATH, no user site, not the repo on sys.path) from
    the repository's root, on a CPU; return the logits it prints."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "HUGGING", "LEUK_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-I", "-c", _NO_LEUK.format(repo=str(REPO)) + snippet], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the snippet failed:\n{snippet}\n{done.stderr[-3000:]}"
    line = next(line for line in done.stdout.splitlines() if line.startswith("logits:"))
    return json.loads(line.split(":", 1)[1])[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "assets" / "demo_models").iterdir()
                                        if (p / "config.json").is_file()))
def test_loading_snippets_run_as_printed_without_leuk(name, tmp_path):
    """The snippet of the Models views and the one in the model card run, as printed, in a fresh Python without
    leuk, on a CPU, and print the logits leuk itself computes for the same image."""
    import numpy as np
    import torch

    from leuk.hub import load_model
    from leuk.io import read_image
    from leuk.serving import from_pretrained_snippet

    loaded = load_model(f"demo:{name}", device="cpu")
    app_snippet = from_pretrained_snippet(loaded)
    card_snippet = _python_block((REPO / "assets" / "demo_models" / name / "README.md").read_text(encoding="utf-8"))
    image = re.search(r'Image\.open\("([^"]+)"\)', card_snippet).group(1)
    assert (REPO / image).is_file() and not Path(image).is_absolute()
    inputs = loaded.processor(images=read_image(REPO / image), return_tensors="pt")
    with torch.no_grad():
        expected = loaded.model(**inputs).logits.float()[0].numpy()
    for snippet in (app_snippet, card_snippet):
        assert "trust_remote_code=True" in snippet and f'"assets/demo_models/{name}"' in snippet
        np.testing.assert_allclose(_run_snippet(snippet, tmp_path), expected, rtol=1e-4, atol=1e-4)
