"""leuk.hub: the one loader, model cards, upload folders and pushes (network-free)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from leuk.errors import LeukError, ModelNotFoundError  # noqa: E402
from leuk.hub import (  # noqa: E402
    clear_model_cache,
    load_model,
    load_results,
    parse_model_spec,
    push_model,
    push_results,
    resolve_models_from_env,
)
from leuk.hub.push import FORBIDDEN_SUFFIXES  # noqa: E402

REPO_ID = "leuk-test/efficientnet-se-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FIXED_INPUT_SHAPE = (1, 3, 64, 64)


class RecordingHfApi:
    """Stand-in for ``huggingface_hub.HfApi``: records every call, touches no network."""

    def __init__(self, token: str | None = "hf_test_token"):
        self.token = token
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, int] = {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])
        self.uploaded = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
        return SimpleNamespace(oid="f" * 40, commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{'f' * 40}")

    def create_tag(self, repo_id, **kwargs):
        self.calls.append(("create_tag", {"repo_id": repo_id, **kwargs}))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def _fixed_input() -> "torch.Tensor":
    return torch.linspace(-1.0, 1.0, int(np.prod(FIXED_INPUT_SHAPE))).reshape(FIXED_INPUT_SHAPE)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny EfficientNet-SE saved with save_pretrained, as trained on synthetic data, with eval JSON."""
    from leuk.metrics import classification_metrics
    from leuk.models import count_parameters, create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor

    torch.manual_seed(0)
    model = create_model("efficientnet-se-test", training_protocol={"data": "synthetic", "protocol": "patient"}).eval()
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    EfficientNetSEImageProcessor.from_model_config(model.config).save_pretrained(folder)
    rng = np.random.default_rng(0)
    y_true = np.array([0, 1] * 10)
    probs = rng.dirichlet([1.0, 1.0], size=len(y_true))
    metrics = classification_metrics(y_true, probs, ["hem", "all"])
    eval_json = {"data": "synthetic", "protocol": "patient", "metrics": metrics}
    (folder / "eval_results.json").write_text(json.dumps(eval_json))
    with torch.no_grad():
        logits = model(pixel_values=_fixed_input()).logits
    return SimpleNamespace(path=folder, metrics=metrics, num_parameters=count_parameters(model), logits=logits)


@pytest.fixture(scope="module")
def mc_summary():
    from leuk.experiments.stats import describe

    rng = np.random.default_rng(1)
    return {"n_iter": 5, "protocol": "patient", "metrics": {"f1_weighted": describe(rng.uniform(0.8, 0.9, 5))}}


@pytest.fixture(scope="module")
def upload_folder(saved_model, mc_summary, tmp_path_factory):
    out = tmp_path_factory.mktemp("upload") / "folder"
    result = push_model(saved_model.path, REPO_ID, dry_run=True, out_dir=out, mc_summary=mc_summary)
    assert result.dry_run and result.folder == out
    return out


@pytest.fixture(scope="module")
def hf_home(upload_folder, tmp_path_factory):
    """An HF_HOME whose hub cache holds the upload folder as ``REPO_ID`` at commit ``COMMIT``."""
    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / ("models--" + REPO_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(upload_folder, repo / "snapshots" / COMMIT)
    return home


def test_upload_folder_has_card_weights_and_remote_code_only(upload_folder, saved_model, mc_summary):
    from huggingface_hub import ModelCard

    card = ModelCard.load(upload_folder / "README.md")
    results = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert len(results) >= 5
    assert results[("accuracy", None)] == pytest.approx(saved_model.metrics["accuracy"], abs=1e-6)
    assert results[("f1", "weighted")] == pytest.approx(saved_model.metrics["f1_weighted"], abs=1e-6)
    assert results[("matthews_correlation", None)] == pytest.approx(saved_model.metrics["mcc"], abs=1e-6)
    assert card.data.license == "apache-2.0"
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-classification"
    assert "synthetic-data" in card.data.tags
    text = card.text
    assert "SYNTHETIC" in text and "Not for clinical diagnosis" in text
    assert f"**{saved_model.num_parameters:,}**" in text
    assert "trust_remote_code=True" in text and "revision=REVISION" in text
    assert f"{mc_summary['metrics']['f1_weighted']['mean']:.4f}" in text

    config = json.loads((upload_folder / "config.json").read_text())
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModelForImageClassification"}
    names = {p.name for p in upload_folder.iterdir()}
    for reference in config["auto_map"].values():
        assert reference.split(".")[0] + ".py" in names
    assert {"model.safetensors", "preprocessor_config.json", "eval_results.json", "README.md"} <= names
    assert not [name for name in names if name.endswith(FORBIDDEN_SUFFIXES)]


def test_pickle_files_are_refused(saved_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(saved_model.path, model_dir)
    torch.save({"w": torch.zeros(1)}, model_dir / "pytorch_model.bin")
    with pytest.raises(LeukError, match="pytorch_model.bin"):
        push_model(model_dir, REPO_ID, dry_run=True, out_dir=tmp_path / "out")


def test_hub_cache_loads_offline_without_leuk(hf_home, saved_model, tmp_path):
    from PIL import Image

    image_path = tmp_path / "cell.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (80, 72, 3), dtype=np.uint8)).save(image_path)
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["leuk"] = None  # leuk must not be importable: only the repo's remote code may run
        import torch
        from transformers import AutoModelForImageClassification, pipeline
        model = AutoModelForImageClassification.from_pretrained({REPO_ID!r}, trust_remote_code=True).eval()
        x = torch.linspace(-1.0, 1.0, {int(np.prod(FIXED_INPUT_SHAPE))}).reshape{FIXED_INPUT_SHAPE}
        with torch.no_grad():
            logits = model(pixel_values=x).logits
        classifier = pipeline("image-classification", model={REPO_ID!r}, trust_remote_code=True)
        scores = {{p["label"]: p["score"] for p in classifier({str(image_path)!r})}}
        print(json.dumps({{"module": type(model).__module__, "logits": logits.tolist(), "scores": scores}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_HUB_DISABLE_TELEMETRY="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["module"].startswith("leuk")
    assert np.allclose(result["logits"], saved_model.logits.numpy(), atol=1e-5)

    clear_model_cache()
    loaded = load_model(str(saved_model.path), device="cpu")
    inputs = loaded.processor(images=[Image.open(image_path).convert("RGB")], return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(loaded.model(**inputs).logits, dim=-1)[0]
    expected = {loaded.labels[i]: float(p) for i, p in enumerate(probs)}
    assert result["scores"].keys() == expected.keys()
    assert all(result["scores"][k] == pytest.approx(v, abs=1e-5) for k, v in expected.items())


def test_load_model_by_repo_id_from_offline_cache(hf_home, saved_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_model_cache()
    loaded = load_model(REPO_ID, device="cpu", cache_dir=hf_home / "hub")
    assert loaded.source == "hub" and loaded.revision == COMMIT
    assert loaded.is_demo  # trained on synthetic data, says its config
    assert loaded.num_parameters == saved_model.num_parameters
    assert loaded.eval_results["metrics"]["accuracy"] == saved_model.metrics["accuracy"]
    assert loaded.card_text and "model-index" in loaded.card_text
    assert not loaded.model.training
    with torch.no_grad():
        assert torch.allclose(loaded.model(pixel_values=_fixed_input()).logits, saved_model.logits, atol=1e-5)
    assert load_model(REPO_ID, device="cpu", cache_dir=hf_home / "hub") is loaded
    pinned = load_model(f"{REPO_ID}@{COMMIT}", device="cpu", cache_dir=hf_home / "hub")
    assert pinned.revision == COMMIT


def test_missing_models_raise_one_line_errors(hf_home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LEUK_DEMO_MODELS_DIR", str(tmp_path / "demos"))
    cases = {
        str(tmp_path / "no-such-folder"): "does not exist",
        "demo:no-such-demo": "available demos",
        "leuk-test/not-cached": "HF_HUB_OFFLINE=0",
        "not a spec": "neither",
    }
    for spec, hint in cases.items():
        with pytest.raises(ModelNotFoundError) as caught:
            load_model(spec, device="cpu", cache_dir=hf_home / "hub")
        message = str(caught.value)
        assert hint in message and "\n" not in message


def test_not_cached_advice_names_only_what_applies(hf_home, monkeypatch):
    from leuk.hub.loader import not_cached_message

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    # the variable is not set: advising to set it to 0 would be noise
    with pytest.raises(ModelNotFoundError) as caught:
        load_model("leuk-test/not-cached", device="cpu", cache_dir=hf_home / "hub")
    assert "HF_HUB_OFFLINE" not in str(caught.value) and "hf download" in str(caught.value)
    assert "HF_HUB_OFFLINE" not in not_cached_message("dataset 'x/y'")
    assert "network" in not_cached_message("dataset 'x/y'")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert "TRANSFORMERS_OFFLINE=0" in not_cached_message("dataset 'x/y'")


def test_model_specs_and_env(monkeypatch, tmp_path):
    assert parse_model_spec("org/name@v1.0") == parse_model_spec("org/name", revision="v1.0")
    assert parse_model_spec("org/name@refs/pr/1").revision == "refs/pr/1"
    assert parse_model_spec("demo:efficientnet-se").kind == "demo"
    assert parse_model_spec(str(tmp_path)).kind == "folder"
    with pytest.raises(ModelNotFoundError, match="pins revision"):
        parse_model_spec("org/name@v1", revision="v2")
    monkeypatch.setenv("LEUK_MODELS", " org/a , demo:b ,")
    assert resolve_models_from_env() == ["org/a", "demo:b"]
    monkeypatch.delenv("LEUK_MODELS")
    demos = tmp_path / "demos"
    for name in ("zeta", "alpha"):
        (demos / name).mkdir(parents=True)
        (demos / name / "config.json").write_text("{}")
    (demos / "not-a-model").mkdir()
    monkeypatch.setenv("LEUK_DEMO_MODELS_DIR", str(demos))
    assert resolve_models_from_env() == ["demo:alpha", "demo:zeta"]


def test_push_makes_one_commit_through_the_api(saved_model, mc_summary):
    api = RecordingHfApi()
    result = push_model(saved_model.path, REPO_ID, api=api, private=True, commit_message="Release v1", tag="v1",
                        mc_summary=mc_summary)
    assert api.names() == ["create_repo", "upload_folder", "create_tag"]
    create, upload, tag = (kwargs for _, kwargs in api.calls)
    assert create == {"repo_id": REPO_ID, "repo_type": "model", "private": True, "exist_ok": True,
                      "token": "hf_test_token"}
    assert upload["repo_id"] == REPO_ID and upload["repo_type"] == "model"
    assert upload["commit_message"] == "Release v1" and upload["revision"] is None
    assert set(api.uploaded) == {"README.md", "config.json", "preprocessor_config.json", "model.safetensors",
                                 "eval_results.json", "configuration_efficientnet_se.py",
                                 "modeling_efficientnet_se.py", "image_processing_efficientnet_se.py"}
    assert tag == {"repo_id": REPO_ID, "tag": "v1", "revision": "f" * 40, "repo_type": "model",
                   "token": "hf_test_token"}
    assert result.commit_oid == "f" * 40 and dict(result.files) == api.uploaded
    assert not result.folder.exists()  # the staging folder of a real push is temporary


def test_push_without_token_is_a_clear_error(saved_model, tmp_path, monkeypatch):
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    api = RecordingHfApi(token=None)
    with pytest.raises(LeukError, match="no Hugging Face token"):
        push_model(saved_model.path, REPO_ID, api=api)
    with pytest.raises(LeukError, match="no Hugging Face token"):
        push_results(tmp_path / "missing.parquet", "leuk-test/results", api=api)
    assert api.calls == []


def test_results_push_writes_parquet_that_datasets_reads(tmp_path, mc_summary):
    import pandas as pd
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    rng = np.random.default_rng(3)
    table = pd.DataFrame({
        "model": ["efficientnet-se"] * 4 + ["vgg16"] * 4,
        "iteration": list(range(4)) * 2,
        "protocol": ["patient"] * 8,
        "f1_weighted": rng.uniform(0.7, 0.9, 8),
    })
    source = tmp_path / "results.parquet"
    table.to_parquet(source)
    api = RecordingHfApi()
    result = push_results(source, "leuk-test/mc-results", api=api, summary=mc_summary)
    assert api.names() == ["create_repo", "upload_folder"]
    assert api.calls[1][1]["repo_type"] == "dataset" and api.calls[1][1]["repo_id"] == "leuk-test/mc-results"
    assert set(api.uploaded) == {"README.md", "data/train-00000-of-00001.parquet"} == {n for n, _ in result.files}

    dry = push_results(source, "leuk-test/mc-results", summary=mc_summary, dry_run=True, out_dir=tmp_path / "dry")
    parquet = dry.folder / "data" / "train-00000-of-00001.parquet"
    read_back = load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "cache"))
    pd.testing.assert_frame_equal(read_back.to_pandas(), table)
    pd.testing.assert_frame_equal(load_results(dry.folder), table)
    card = DatasetCard.load(dry.folder / "README.md")
    assert card.data.license == "apache-2.0" and "vgg16" in card.text


def test_cli_push_dry_run_lists_files(saved_model, tmp_path, capsys):
    from leuk.cli import main

    out = tmp_path / "out"
    assert main(["push", "--model", str(saved_model.path), "--repo", REPO_ID, "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "would upload 8 files" in printed and "model.safetensors" in printed
    assert (out / "README.md").is_file()
    assert main(["push", "--model", str(saved_model.path)]) == 1
    assert "--model needs --repo" in capsys.readouterr().err


@pytest.mark.parametrize("error_name, hint", [("RepositoryNotFoundError", "not found"),
                                              ("RevisionNotFoundError", "has no revision 'v9'")])
def test_hub_errors_become_one_line(monkeypatch, error_name, hint):
    import httpx2
    import huggingface_hub
    import huggingface_hub.errors

    response = httpx2.Response(404, request=httpx2.Request("GET", "https://huggingface.co/api/models/org/name"))
    error = getattr(huggingface_hub.errors, error_name)("404 Client Error\nsecond line", response=response)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(ModelNotFoundError) as caught:
        load_model("org/name@v9", device="cpu")
    assert hint in str(caught.value) and "\n" not in str(caught.value)


def test_weights_that_do_not_fit_the_config_are_refused(saved_model, tmp_path):
    from leuk.hub import ModelLoadError

    folder = tmp_path / "model"
    shutil.copytree(saved_model.path, folder)
    config = json.loads((folder / "config.json").read_text())
    config["head_hidden_sizes"] = [48, 32]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="do not fit its config"):
        load_model(str(folder), device="cpu")
