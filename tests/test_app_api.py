"""The Gradio app through its real HTTP API (gradio_client), and the serving layer behind it.

One server per module: ``app.build_demo()`` launched with the app's own launch options on a free port,
serving two tiny untrained models saved here (EfficientNet-SE with ``test_efficientnet``, HybridCN-NAS lite)
and a small Monte Carlo run whose statistics are checked against scipy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from leuk.errors import LeukError

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "assets" / "samples"
CNMC_SAMPLES = sorted((SAMPLES / "cnmc").glob("*.png"))
ARIA_SAMPLES = sorted((SAMPLES / "aria").glob("*.jpg"))
MC_MODELS = ("efficientnet-se", "vgg16")
MC_ITERATIONS = 12

pytestmark = pytest.mark.slow


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def save_tiny_models(root: Path, fit_on: dict | None = None) -> dict[str, str]:
    """Untrained tiny models saved as ``save_pretrained`` folders: ``{"cnmc": folder, "aria": folder}``.

    ``fit_on`` (``{"cnmc": dataset, "aria": dataset}``): store an out-of-distribution detector fitted on half of
    that dataset's images (threshold from the other half) with each model, as training does."""
    import torch

    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor
    from leuk.models.hybridcn_nas import HybridCNNASImageProcessor

    torch.manual_seed(0)
    folders = {}
    for key, preset, processor_class in (("cnmc", "efficientnet-se-test", EfficientNetSEImageProcessor),
                                         ("aria", "hybridcn-nas-lite", HybridCNNASImageProcessor)):
        model = create_model(preset)
        folder = root / preset
        model.save_pretrained(folder)
        processor = processor_class.from_model_config(model.config)
        processor.save_pretrained(folder)
        if fit_on is not None:
            fit_tiny_detector(folder, model, processor, fit_on[key])
        folders[key] = str(folder)
    return folders


def fit_tiny_detector(folder: Path, model, processor, dataset) -> None:
    """Fit and store :mod:`leuk.ood`'s detector on the even rows of ``dataset`` (the odd rows set the threshold)."""
    from leuk.ood import fit_detector, weights_sha256

    paths, labels = list(dataset["path"]), list(dataset["label"])
    detector = fit_detector(model, processor, paths[::2], labels[::2], paths[1::2],
                            train_groups=list(dataset["patient_id"])[::2], device="cpu",
                            info={"model_sha256": weights_sha256(folder)})
    detector.save(folder)


def write_montecarlo_run(folder: Path) -> pd.DataFrame:
    """A seeded two-model, two-protocol results table with its summary (``results.parquet``, ``summary.json``)."""
    from leuk.experiments.montecarlo import summarize

    rng = np.random.default_rng(7)
    rows = []
    for iteration in range(MC_ITERATIONS):
        split_effect = rng.normal(0, 0.02)
        for protocol, leak in (("patient", 0.0), ("image", 0.06)):
            for model, skill in zip(MC_MODELS, (0.88, 0.84)):
                f1 = float(np.clip(skill + leak + split_effect + rng.normal(0, 0.01), 0, 1))
                rows.append({"iteration": iteration, "seed": 1000 + iteration, "model": model, "protocol": protocol,
                             "train_hash": "t", "val_hash": "v", "test_hash": "x", "n_train": 60, "n_val": 10,
                             "n_test": 20, "f1_weighted": f1, "accuracy": float(np.clip(f1 + 0.01, 0, 1))})
    results = pd.DataFrame(rows)
    folder.mkdir(parents=True)
    results.to_parquet(folder / "results.parquet")
    (folder / "summary.json").write_text(json.dumps(summarize(results, reference=MC_MODELS[0])), encoding="utf-8")
    return results


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, cnmc_dataset, aria_dataset) -> dict[str, str]:
    return save_tiny_models(tmp_path_factory.mktemp("models"), fit_on={"cnmc": cnmc_dataset, "aria": aria_dataset})


@pytest.fixture(scope="module")
def mc_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A folder holding one bundled-style run, and that run's results."""
    root = tmp_path_factory.mktemp("results")
    return root, write_montecarlo_run(root / "cnmc-demo")


@pytest.fixture(scope="module")
def served(tiny_models, mc_results, tmp_path_factory: pytest.TempPathFactory):
    """``(url, client)`` of the app on a free port, serving ``tiny_models``; closed after the module."""
    from gradio_client import Client

    from leuk import serving

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        patch.setenv("LEUK_RESULTS_DIR", str(mc_results[0]))
        serving.set_registry(serving.ModelRegistry([tiny_models["cnmc"], tiny_models["aria"]]))
        import app

        demo = app.build_demo()
        _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True, **app.LAUNCH_OPTIONS)
        try:
            assert not serving.warm_up()
            client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
            yield url, client
            client.close()
        finally:
            demo.close()
            serving.set_registry(None)


# ------------------------------------------------------------------------------------------ serving layer


def test_explain_methods_are_leuks_methods():
    from leuk import explain, serving

    assert set(serving.EXPLAIN_METHODS) == set(explain.METHODS)


def test_patient_aggregate_is_mean_and_majority():
    from leuk.serving import ImageResult, aggregate

    labels = ["hem", "all"]
    probs = np.array([[0.9, 0.1], [0.35, 0.65], [0.45, 0.55]])
    rows = [ImageResult(name=str(i), label=labels[int(p.argmax())], probabilities=dict(zip(labels, p)))
            for i, p in enumerate(probs)]
    rows.append(ImageResult(name="broken", error="broken: not a readable image"))
    result = aggregate(rows, labels, threshold=0.7)
    assert result.n_images == 3
    np.testing.assert_allclose([result.mean_probabilities[n] for n in labels], probs.mean(axis=0))
    assert result.label == "hem"  # mean 0.567 vs 0.433
    assert result.majority_label == "all" and result.votes == {"hem": 1, "all": 2}
    assert result.uncertain and any("majority" in reason for reason in result.reasons)


def test_demo_banner_only_for_demo_weights(tmp_path, monkeypatch):
    from leuk import serving

    # a bundled model without records of its training data (what the banner says of real ones: test_model_cards.py)
    (tmp_path / "efficientnet-se").mkdir()
    (tmp_path / "efficientnet-se" / "config.json").write_text('{"model_type": "efficientnet_se"}', encoding="utf-8")
    monkeypatch.setenv("LEUK_DEMO_MODELS_DIR", str(tmp_path))
    registry = serving.ModelRegistry(["demo:efficientnet-se", "org/model@v1"])
    assert "Demo weights" in serving.banner_for("demo:efficientnet-se", registry=registry, load=False)
    assert serving.banner_for("org/model@v1", registry=registry, load=False) == ""
    with pytest.raises(LeukError, match="unknown model"):
        registry.check_name("org/other")


def test_image_statistics_separate_samples_from_other_images():
    from leuk.io import read_image
    from leuk.ood import reference_from_images

    OOD_THRESHOLD = 5.0
    reference = reference_from_images([read_image(p) for p in CNMC_SAMPLES], source="samples")
    assert max(reference.score(read_image(p)) for p in CNMC_SAMPLES) < OOD_THRESHOLD
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    assert reference.score(noise) > OOD_THRESHOLD
    assert min(reference.score(read_image(p)) for p in ARIA_SAMPLES) > OOD_THRESHOLD


def test_samples_are_small_and_cover_every_class():
    from leuk.serving import list_samples

    samples = list_samples()
    assert {s.label for s in samples if s.task == "cnmc"} == {"hem", "all"}
    assert {s.label for s in samples if s.task == "aria"} == {"Benign", "Early", "Pre", "Pro"}
    assert sum(s.path.stat().st_size for s in samples) < 1_000_000


# ------------------------------------------------------------------------------------------------- HTTP API


def test_named_endpoints(served):
    _, client = served
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify", "/explain", "/pipeline", "/montecarlo", "/model_info"} <= set(endpoints)


def test_classify_one_patient(served, tiny_models, cnmc_dataset):
    from gradio_client import handle_file

    _, client = served
    # images like the tiny model's training images (its detector's): the real samples are out of distribution
    paths = [Path(p) for p in list(cnmc_dataset["path"])[:6:2]]
    label, flag, table, aggregate = client.predict(
        [handle_file(str(p)) for p in paths], tiny_models["cnmc"], api_name="/classify")
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(confidences) == {"hem", "all"} and sum(confidences.values()) == pytest.approx(1.0, abs=1e-6)
    per_image = pd.DataFrame(table["data"], columns=table["headers"])
    assert list(per_image["image"]) == [p.name for p in paths]
    # the label widget shows the patient-level mean of the per-image probabilities
    assert confidences["all"] == pytest.approx(per_image["p(all)"].mean(), abs=1e-3)
    assert per_image["OOD score"].notna().all() and set(per_image["verdict"]) <= {"confident", "uncertain"}
    rows = dict(aggregate["data"])
    assert rows["images assessed"] == "3"
    assert "ncertain" in flag or "onfident" in flag


def test_bad_uploads_get_clear_errors_and_the_server_keeps_serving(served, tiny_models, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, client = served
    fake_png = tmp_path / "notes.png"
    fake_png.write_text("this is text, not a picture")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is text, not a picture")
    with pytest.raises(AppError, match="not a readable image"):
        client.predict([handle_file(str(fake_png))], tiny_models["cnmc"], api_name="/classify")
    with pytest.raises(AppError, match="Invalid file type"):
        client.predict([handle_file(str(text_file))], tiny_models["cnmc"], api_name="/classify")
    huge = tmp_path / "huge.png"
    Image.new("RGB", (4200, 4200)).save(huge)  # compresses to a few KB, decodes to 53 MB
    with pytest.raises(AppError, match="more than the limit"):
        client.predict(handle_file(str(huge)), tiny_models["cnmc"], "gradcam", "predicted", api_name="/explain")
    with pytest.raises(AppError, match="not in the list of choices|unknown model"):
        client.predict([handle_file(str(CNMC_SAMPLES[0]))], "someone/else", api_name="/classify")
    # a mixed upload keeps the readable image and reports the other in its row
    _, _, table, _ = client.predict([handle_file(str(CNMC_SAMPLES[0])), handle_file(str(fake_png))],
                                    tiny_models["cnmc"], api_name="/classify")
    errors = [row[-1] for row in table["data"]]
    assert errors[0] == "" and "not a readable image" in errors[1]


def test_a_bad_montecarlo_source_is_one_message_and_the_explain_baseline_is_a_choice(served, tiny_models):
    """The Monte Carlo endpoint refuses a source or metric it cannot load with one message (the page's validator,
    which leaves the loaded results in place); /explain takes the IG baseline, as ``leuk explain --baseline``."""
    from gradio_client import handle_file

    _, client = served
    with pytest.raises(Exception, match=r"Cannot load Monte Carlo results: results '/no/such/folder' is neither"):
        client.predict("/no/such/folder", "f1_weighted", api_name="/montecarlo")
    with pytest.raises(Exception, match=r"Cannot load Monte Carlo results: unknown metric 'nope'"):
        client.predict("", "nope", api_name="/montecarlo")
    summary, *_ = client.predict("", "f1_weighted", api_name="/montecarlo")  # and the endpoint still serves
    assert f"{MC_ITERATIONS} iterations" in summary

    _, text = client.predict(handle_file(str(CNMC_SAMPLES[0])), tiny_models["cnmc"], "integrated_gradients",
                             "predicted", "blur", api_name="/explain")
    assert "**Integrated Gradients**" in text and "from the blur baseline" in text and "Faithfulness" in text
    _, text = client.predict(handle_file(str(CNMC_SAMPLES[0])), tiny_models["cnmc"], "gradcam", "predicted", "blur",
                             api_name="/explain")
    assert "baseline" not in text.split("\n\n")[1]  # Grad-CAM starts from no baseline


def test_upload_size_limit(served, tiny_models, tmp_path, cnmc_dataset):
    from gradio_client import handle_file

    _, client = served
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(21 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict([handle_file(str(big))], tiny_models["cnmc"], api_name="/classify")
    label, *_ = client.predict([handle_file(cnmc_dataset["path"][0])], tiny_models["cnmc"], api_name="/classify")
    assert label["label"] in {"hem", "all"}


def test_explain(served, tiny_models):
    from gradio_client import handle_file

    _, client = served
    overlay, text = client.predict(handle_file(str(CNMC_SAMPLES[0])), tiny_models["cnmc"], "integrated_gradients",
                                   "all", api_name="/explain")
    with Image.open(overlay) as picture:
        assert min(picture.size) >= 320 and picture.mode == "RGB"
    assert "Integrated Gradients" in text and "class **all**" in text and "Faithfulness" in text


def test_pipeline(served, tiny_models):
    from gradio_client import handle_file

    _, client = served
    gallery, summary, features = client.predict(handle_file(str(ARIA_SAMPLES[0])), "", api_name="/pipeline")
    captions = [item["caption"] for item in gallery]
    assert any("stain-normalised" in c for c in captions) and any("CLAHE" in c for c in captions)
    assert any("mask" in c for c in captions) and any("cells found" in c for c in captions)
    assert captions[-1].startswith("8. what the CNN branches see")
    assert "cell" in summary and tiny_models["aria"] in summary
    assert len(features["data"]) == 10
    with pytest.raises(Exception, match="no pipeline phases"):
        client.predict(handle_file(str(ARIA_SAMPLES[0])), tiny_models["cnmc"], api_name="/pipeline")


def test_montecarlo_matches_scipy(served, mc_results):
    _, client = served
    _, results = mc_results
    summary, metric, _distribution, _difference, pvalues, leakage = client.predict(
        "", "f1_weighted", api_name="/montecarlo")
    assert f"{MC_ITERATIONS} iterations" in summary and "synthetic" in summary
    tests = pd.DataFrame(pvalues["data"], columns=pvalues["headers"])
    row = tests[(tests["comparison"] == f"vs {MC_MODELS[0]}") & (tests["protocol"] == "patient")].iloc[0]

    def scores(model: str, protocol: str) -> np.ndarray:
        rows = results[(results["model"] == model) & (results["protocol"] == protocol)]
        return rows.sort_values("iteration")["f1_weighted"].to_numpy()

    reference, other = scores(MC_MODELS[0], "patient"), scores(MC_MODELS[1], "patient")
    # p-values are shown to 3 significant figures
    assert row["t-test p"] == pytest.approx(stats.ttest_rel(other, reference).pvalue, rel=5e-3)
    assert row["Wilcoxon p"] == pytest.approx(stats.wilcoxon(other - reference).pvalue, rel=5e-3)
    gaps = pd.DataFrame(leakage["data"], columns=leakage["headers"]).set_index("model")
    for model in MC_MODELS:
        expected = (scores(model, "image") - scores(model, "patient")).mean()
        assert gaps.loc[model, "mean gap"] == pytest.approx(expected, abs=1e-4)
    _, metric, *_ = client.predict("", "accuracy", api_name="/montecarlo")
    assert metric["value"] == "accuracy" if isinstance(metric, dict) else metric == "accuracy"


def test_model_info(served, tiny_models):
    from leuk.hub import load_model

    _, client = served
    summary, card, metrics, snippet, headline, breakdown = client.predict(tiny_models["cnmc"], api_name="/model_info")
    model = load_model(tiny_models["cnmc"], device="cpu").model
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in summary
    assert "from_pretrained" in snippet and tiny_models["cnmc"] in snippet
    assert "model card" in card
    assert metrics["headers"] == ["metric", "value"]
    assert "metric" in headline["headers"] and "headers" in breakdown


def test_python_app_py_answers_within_20_seconds(tiny_models, tmp_path):
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(tmp_path),
           "GRADIO_ANALYTICS_ENABLED": "False", "LEUK_MODELS": tiny_models["cnmc"], "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status, elapsed, cpu = None, None, None
    try:
        while time.monotonic() - start < 90 and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    status, elapsed, cpu = response.status, time.monotonic() - start, cpu_seconds(process.pid)
                    break
            except OSError:
                time.sleep(0.2)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    assert status == 200, f"app.py did not answer (exit code {process.returncode})"
    if os.getloadavg()[0] <= (os.cpu_count() or 1):
        assert elapsed < 20, f"app.py answered after {elapsed:.1f} s"
    else:  # other jobs hold the CPUs: wall time says little, the CPU time app.py needed still must fit
        assert cpu is None or cpu < 20, f"app.py needed {cpu:.1f} s of CPU before answering"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------- the bundled real Monte Carlo result set

REAL_BUNDLE = REPO / "assets" / "results" / "real-cnmc"


def _bundle_scores(results: pd.DataFrame, model: str, protocol: str, metric: str = "f1_weighted") -> np.ndarray:
    rows = results[(results["model"] == model) & (results["protocol"] == protocol)]
    return rows.sort_values("iteration")[metric].to_numpy()


def test_bundled_real_montecarlo_is_the_default_and_labelled(monkeypatch):
    """Without LEUK_RESULTS_DIR the apps offer the committed runs: the real C-NMC pool first (the Monte Carlo
    tab's default, loaded by the function the tab calls), the synthetic set second, each labelled."""
    import app
    from leuk import serving

    monkeypatch.delenv("LEUK_RESULTS_DIR", raising=False)
    choices = serving.montecarlo_choices()
    assert [source for _, source in choices][:2] == ["bundled:real-cnmc", "bundled:synthetic"]
    real_label, synthetic_label = choices[0][0], choices[1][0]
    assert "real C-NMC pool, subject-grouped, 100 iterations" in real_label
    assert "frozen random-init features" in real_label and synthetic_label.startswith("synthetic data")
    summary, metric, distribution, difference, pvalues, leakage = app.montecarlo("", "f1_weighted")
    assert "bundled:real-cnmc" in summary and "real C-NMC pool" in summary
    assert "frozen random-init features: no ImageNet weights; measures the protocol, not the paper's model" in summary
    assert "synthetic data" not in summary.lower() and "Leakage gap" in summary
    assert distribution is not None and difference is not None
    results = pd.read_parquet(REAL_BUNDLE / "results.parquet")
    gap = _bundle_scores(results, "efficientnet-se", "image") - _bundle_scores(results, "efficientnet-se", "patient")
    low, high = stats.ttest_rel(_bundle_scores(results, "efficientnet-se", "image"),
                                _bundle_scores(results, "efficientnet-se", "patient")).confidence_interval()
    assert f"**{gap.mean():+.4f}**" in summary and f"[{low:+.4f}, {high:+.4f}]" in summary
    synthetic_summary, *_ = app.montecarlo("bundled:synthetic", "f1_weighted")
    assert "synthetic data" in synthetic_summary


def test_bundled_real_montecarlo_through_the_http_api_matches_scipy(served):
    """The real bundle through ``/montecarlo`` (a results folder, as a local app accepts): every paired test
    and the leakage gap with its interval, recomputed with scipy from results.parquet."""
    _, client = served
    results = pd.read_parquet(REAL_BUNDLE / "results.parquet")
    models = list(dict.fromkeys(results["model"]))
    summary, _metric, _distribution, _difference, pvalues, leakage = client.predict(
        str(REAL_BUNDLE), "f1_weighted", api_name="/montecarlo")
    assert "Real C-NMC images: 2161 images of 17 subjects" in summary and "frozen random-init features" in summary
    tests = pd.DataFrame(pvalues["data"], columns=pvalues["headers"])
    for model in models[1:]:
        row = tests[(tests["comparison"] == f"vs {models[0]}") & (tests["protocol"] == "patient")
                    & (tests["model"] == model)].iloc[0]
        reference, other = _bundle_scores(results, models[0], "patient"), _bundle_scores(results, model, "patient")
        assert row["t-test p"] == pytest.approx(stats.ttest_rel(other, reference).pvalue, rel=5e-3, abs=1e-300)
        assert row["Wilcoxon p"] == pytest.approx(stats.wilcoxon(other - reference).pvalue, rel=5e-3,
                                                       abs=1e-300)
    gaps = pd.DataFrame(leakage["data"], columns=leakage["headers"]).set_index("model")
    assert list(gaps.index) == models
    for model in models:
        image, patient = _bundle_scores(results, model, "image"), _bundle_scores(results, model, "patient")
        interval = stats.ttest_rel(image, patient).confidence_interval()
        assert gaps.loc[model, "mean gap"] == pytest.approx((image - patient).mean(), abs=1e-4)
        assert gaps.loc[model, "95% CI low"] == pytest.approx(interval.low, abs=1e-4)
        assert gaps.loc[model, "95% CI high"] == pytest.approx(interval.high, abs=1e-4)
        assert gaps.loc[model, "2.5%"] == pytest.approx(np.percentile(image - patient, 2.5), abs=1e-4)


def test_a_smear_is_uncertain_on_every_tab(served, tiny_models, cnmc_dataset):
    """A smear shown to the cell model (and a single cell shown to the smear model) is out of distribution: the
    Classify, Explain and Pipeline tabs say so with that reason, alone and inside a batch. On Classify it is *not
    assessed*: no class and no percentage as the headline (label widget, verdict, per-image row), its
    probabilities only in a collapsed detail, and the patient label counts only the assessed images."""
    import re

    from gradio_client import handle_file

    _, client = served
    smear = handle_file(str(ARIA_SAMPLES[0]))
    label, flag, table, aggregate = client.predict([smear], tiny_models["cnmc"], api_name="/classify")
    assert label["label"] == "not assessed" and not label.get("confidences")
    assert flag.startswith("⚠ **Not assessed**: unlike the images this model was trained on (out of distribution: "
                           "unlike the training images")
    headline, details = flag.split("\n\n")[0], flag.split("<details>")[1]
    assert "%" not in headline and not re.search(r"\b(hem|all)\b", headline)
    assert re.search(r"hem 0?\.\d{4}, all 0?\.\d{4}|hem 1\.0000, all 0\.0000", details)  # collapsed, numbers kept
    rows = pd.DataFrame(table["data"], columns=table["headers"])
    assert list(rows["label"]) == ["not assessed"] and rows[["top probability", "p(hem)", "p(all)"]].isna().all(None)
    assert list(rows["verdict"]) == ["uncertain"] and rows["reasons"][0].startswith("out of distribution")
    patient = dict(aggregate["data"])
    assert patient["uncertain"].startswith("out of distribution: 1 of 1 image")
    assert patient["label (mean probabilities)"] == "not assessed" and patient["images assessed"] == "0"
    assert patient["images left out (not assessed)"] == "1" and "mean p(hem)" not in patient

    cells = [handle_file(p) for p in list(cnmc_dataset["path"])[:6:2]]  # training images of the detector
    label, flag, table, aggregate = client.predict([*cells, smear], tiny_models["cnmc"], api_name="/classify")
    assert flag.startswith("⚠ **Uncertain**: out of distribution: 1 of 4 images unlike the training images")
    assert "Label from 3 assessed images; 1 left out (not assessed: unlike the images this model was trained on)" \
        in flag and "<details>" in flag
    rows = pd.DataFrame(table["data"], columns=table["headers"])
    assert rows["reasons"].iloc[-1].startswith("out of distribution")
    assert not any(r.startswith("out of distribution") for r in rows["reasons"].iloc[:-1])
    assert list(rows["label"])[-1] == "not assessed" and "not assessed" not in list(rows["label"])[:-1]
    # the patient label is the mean of the three assessed cells only
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert confidences["all"] == pytest.approx(rows["p(all)"].iloc[:3].mean(), abs=1e-3)
    patient = dict(aggregate["data"])
    assert patient["uncertain"].startswith("out of distribution: 1 of 4 images")
    assert patient["images assessed"] == "3" and patient["images left out (not assessed)"] == "1"
    assert patient["label (mean probabilities)"] == label["label"]

    _, text = client.predict(smear, tiny_models["cnmc"], "gradcam", "predicted", api_name="/explain")
    # an explanation of an image that is not assessed leads with that, at the model's own threshold (#28)
    assert text.startswith("⚠ **Not assessed**: unlike the images this model was trained on (out of distribution")
    assert "Grad-CAM" in text
    _, summary, _ = client.predict(handle_file(str(CNMC_SAMPLES[0])), tiny_models["aria"], api_name="/pipeline")
    assert summary.startswith("⚠ **Not assessed**: unlike the images this model was trained on (out of distribution")
    assert "found" in summary


def test_smear_mode_boxes_every_white_cell_and_explains_one(served, tiny_models, tmp_path):
    """The Classify tab's Smear mode (``/smear``): a drawn smear with one violet white cell among pale red cells."""
    from gradio_client import handle_file

    from test_smear_cells import smear  # (pytest puts tests/ on sys.path)

    path = tmp_path / "smear.png"
    Image.fromarray(smear([(100, 120, 30)])).save(path)
    _, client = served
    boxes, summary, crops, cells, smears, overlay, note = client.predict(
        [handle_file(str(path))], tiny_models["cnmc"], "classical", api_name="/smear")
    assert len(boxes) == 1 and "smear.png" in boxes[0]["caption"]
    per_cell = pd.DataFrame(cells["data"], columns=cells["headers"])
    per_smear = pd.DataFrame(smears["data"], columns=smears["headers"])
    assert {"x0", "y0", "x1", "y1", "status", "label", "verdict"} <= set(per_cell.columns)
    assert list(per_smear["row"]) == ["smear"] and per_smear["cells_found"].iloc[0] == len(per_cell)
    assert "smear.png" in summary and "white cell" in summary
    assert len(crops) == int((per_cell["status"] == "classified").sum())
    assert len(per_cell) == len(crops) == 1 and per_cell["label"].iloc[0] in ("hem", "all", "not assessed")
    if per_cell["label"].iloc[0] == "not assessed":  # out of distribution: no call, no probability shown
        assert per_cell[["p_hem", "p_all"]].isna().all(None) and per_cell["verdict"].iloc[0] == "uncertain"
        assert crops[0]["caption"] == "smear.png cell 1: not assessed (uncertain)"
    assert abs(per_cell["x0"].iloc[0] - 70) <= 2 and abs(per_cell["y1"].iloc[0] - 151) <= 2
    assert overlay is None and "Click a cell" in note
    with pytest.raises(Exception, match="Upload one or more smear images"):
        client.predict([], tiny_models["cnmc"], "auto", api_name="/smear")
    # the U-Net of the (untrained) HybridCN-NAS model: whatever it finds is listed with the segmenter's name
    _, summary, _, cells, _, _, _ = client.predict([handle_file(str(path))], tiny_models["aria"], "unet",
                                                   api_name="/smear")
    assert "smear.png" in summary and "U-Net of" in summary
    # the default finder: the bundled white-cell detector finds the one drawn cell
    boxes, summary, _, cells, _, _, _ = client.predict([handle_file(str(path))], tiny_models["cnmc"], "auto",
                                                       api_name="/smear")
    assert "1 white cell found (white-cell detector" in summary and len(boxes) == 1

    # a click on a cell crop explains it (the gallery's select event, as the page sends it)
    import gradio as gr

    import app

    outputs = app.classify_smear([str(path)], tiny_models["cnmc"], "classical")
    state = outputs[5]
    assert state["model"] == tiny_models["cnmc"] and len(state["crops"]) == 1
    picture, text = app.explain_cell(state, "", gr.SelectData(None, {"index": 0, "value": None, "selected": True}))
    assert picture is not None and text.startswith("**Cell 1")
