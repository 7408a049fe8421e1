"""The Streamlit dashboard: every page through ``AppTest``, batch prediction to CSV (files and zip archives), the
Monte Carlo statistics against scipy, and ``streamlit run`` answering HTTP.

Models: the bundled demo models when ``assets/demo_models/`` holds some, else two tiny untrained models saved
here (EfficientNet-SE with ``test_efficientnet``, HybridCN-NAS lite) passed through ``LEUK_MODELS``. Monte Carlo
results: a seeded three-model, two-protocol run written here, served through ``LEUK_RESULTS_DIR``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app" / "app.py"
PAGES = ("views/predict.py", "views/explain.py", "views/pipeline.py", "views/montecarlo.py", "views/models.py",
         "views/about.py")
PAGE_TITLES = ("Predict", "Explain", "Pipeline", "Monte Carlo", "Models", "About leuk")
TIMEOUT = 60
MC_RUN = "streamlit-test-run"
MC_MODELS = ("efficientnet-se", "vgg16", "resnet50")
MC_ITERATIONS = 10
N_BATCH = 20

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def save_tiny_models(root: Path) -> list[str]:
    """Untrained tiny models (C-NMC EfficientNet-SE first, then HybridCN-NAS lite) as ``save_pretrained`` folders."""
    import torch

    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor
    from leuk.models.hybridcn_nas import HybridCNNASImageProcessor

    torch.manual_seed(0)
    folders = []
    for preset, processor_class in (("efficientnet-se-test", EfficientNetSEImageProcessor),
                                    ("hybridcn-nas-lite", HybridCNNASImageProcessor)):
        model = create_model(preset)
        folder = root / preset
        model.save_pretrained(folder)
        processor_class.from_model_config(model.config).save_pretrained(folder)
        folders.append(str(folder))
    return folders


def model_specs(root: Path) -> str:
    """``LEUK_MODELS`` for the tests: empty (every bundled demo) when demo models exist, else tiny models."""
    from leuk.hub import list_demo_models

    return "" if list_demo_models() else ",".join(save_tiny_models(root))


def write_montecarlo_run(folder: Path) -> pd.DataFrame:
    """A seeded run (three models, both protocols, three metrics) as ``results.parquet`` + ``summary.json``."""
    from leuk.experiments.montecarlo import summarize

    rng = np.random.default_rng(11)
    rows = []
    for iteration in range(MC_ITERATIONS):
        split_effect = rng.normal(0, 0.02)
        for protocol, leak in (("patient", 0.0), ("image", 0.05)):
            for model, skill in zip(MC_MODELS, (0.88, 0.84, 0.86)):
                f1 = float(np.clip(skill + leak + split_effect + rng.normal(0, 0.01), 0, 1))
                accuracy = float(np.clip(f1 + rng.normal(0, 0.005), 0, 1))
                auc = float(np.clip(f1 + 0.05 + rng.normal(0, 0.01), 0, 1))
                rows.append({"iteration": iteration, "seed": 500 + iteration, "model": model, "protocol": protocol,
                             "train_hash": "t", "val_hash": "v", "test_hash": "x", "n_train": 60, "n_val": 10,
                             "n_test": 20, "f1_weighted": f1, "accuracy": accuracy, "roc_auc": auc})
    results = pd.DataFrame(rows)
    folder.mkdir(parents=True)
    results.to_parquet(folder / "results.parquet")
    (folder / "summary.json").write_text(json.dumps(summarize(results, reference=MC_MODELS[0])), encoding="utf-8")
    return results


def dashboard_env(models: str, results_dir: Path) -> dict[str, str]:
    """Environment of a dashboard subprocess: these models and results, one thread, offline, no telemetry."""
    return dict(os.environ, LEUK_MODELS=models, LEUK_RESULTS_DIR=str(results_dir), OMP_NUM_THREADS="1",
                MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")


@pytest.fixture(scope="module")
def dashboard_server_factory():
    """``start(env, log_path) -> url``: ``streamlit run`` on a free port, stopped after the module."""
    processes: list[subprocess.Popen] = []

    def start(env: dict[str, str], log_path: Path) -> str:
        port = free_port()
        log = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                    if response.status == 200:
                        return url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"streamlit did not answer within 90 s: {log_path.read_text()[-2000:]}")

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> str:
    return model_specs(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def mc_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """``(results dir, results)`` of the seeded run."""
    root = tmp_path_factory.mktemp("results")
    return root, write_montecarlo_run(root / MC_RUN)


@pytest.fixture(scope="module")
def batch_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """20 synthetic C-NMC cells (4 subjects x 5, 64 px)."""
    from leuk.data.synthetic import write_cnmc

    root = write_cnmc(tmp_path_factory.mktemp("cnmc"), patients=4, images_per_patient=N_BATCH // 4, size=64, seed=3)
    images = sorted(root.rglob("*.bmp"))
    assert len(images) == N_BATCH
    return images


def _reset_caches() -> None:
    import streamlit as st

    from leuk import serving

    serving.set_registry(None)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="module")
def app_env(specs: str, mc_run) -> Iterator[None]:
    """LEUK_MODELS / LEUK_RESULTS_DIR for in-process AppTest runs; caches reset before and after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEUK_MODELS", specs)
        patch.setenv("LEUK_RESULTS_DIR", str(mc_run[0]))
        _reset_caches()
        try:
            yield
        finally:
            _reset_caches()


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def assert_clean(at) -> None:
    """No exception and no error message on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# -------------------------------------------------------------------------------------------------- pages


def test_every_page_runs(app_env):
    at = new_app().run()
    assert_clean(at)
    for page, title in zip(PAGES, PAGE_TITLES):
        at.switch_page(page).run()
        assert_clean(at)
        assert [t.value for t in at.title] == [title]
    assert at.sidebar.selectbox(key="model").options, "the sidebar offers the configured models"


def test_models_page_shows_headline_then_subjects_then_records(app_env):
    """The default model's tab: headline (weighted F1 as mean ± sd over folds, with its pooled value), then the
    17 held-out subjects, then every record of eval_results.json in a collapsed expander; the side by side holds
    figures, not a column of empty cells."""
    from leuk.hub import list_demo_models

    if "efficientnet-se" not in list_demo_models():
        pytest.skip("demo:efficientnet-se is not bundled")
    at = new_app().run()
    at.switch_page("views/models.py").run()
    assert_clean(at)
    tab = next(t for t in at.tabs if t.label == "demo:efficientnet-se")
    headline, subjects, records = (d.value for d in tab.dataframe)
    row = headline.set_index("metric").loc["F1 (weighted)"]
    assert headline.iloc[0]["metric"] == "F1 (weighted)"
    assert row["mean ± sd over folds"] == "0.781 ± 0.021" and row["pooled"] == pytest.approx(0.793, abs=1e-9)
    assert len(subjects) == 17 and {"H10", "H14", "H22"} <= set(subjects["subject"])
    assert list(records.columns) == ["metric", "value"] and len(records) > 100
    assert [e.label for e in tab.expander][0].startswith("All records") and not tab.expander[0].proto.expanded
    side = at.dataframe[1].value
    assert side.set_index("metric").loc["F1 (weighted)", "demo:efficientnet-se"] == "0.781 ± 0.021 (pooled 0.793)"
    if "hybridcn-nas-lite" in list_demo_models():
        # the hybrid's column holds its own rows; the baselines of its table are in its tab, not under its name
        hybrid = side.set_index("metric")["demo:hybridcn-nas-lite"]
        assert hybrid.loc["Accuracy · block"] == "0.964 ± 0.012"
        assert not any("plain CNN" in metric for metric in side["metric"])
        tab = next(t for t in at.tabs if t.label == "demo:hybridcn-nas-lite")
        assert "plain CNN" in set(tab.dataframe[0].value["model"])


def test_predict_batch_of_files_gives_csv(app_env, batch_images):
    from leuk.data.loaders import cnmc_subject

    at = new_app().run()
    at.file_uploader(key="predict_files").set_value([(p.name, p.read_bytes(), "image/bmp") for p in batch_images])
    at.button(key="predict_run").click().run()
    assert_clean(at)
    batch = at.session_state["predict_result"]
    table = pd.read_csv(io.BytesIO(batch.csv_bytes()), keep_default_na=False)
    labels = batch.labels
    assert list(table.columns) == ["file", "patient_id", "label", *(f"p_{n}" for n in labels), "top_probability",
                                   "assessed", "uncertain", "uncertain_reasons", "ood_score", "error"]
    assert len(table) == N_BATCH
    assert sorted(table["file"]) == sorted(p.name for p in batch_images)
    assert list(table["patient_id"].astype(str)) == [cnmc_subject(name) for name in table["file"]]
    probabilities = table[[f"p_{n}" for n in labels]].to_numpy(float)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(table["top_probability"], probabilities.max(axis=1))
    assert list(table["label"]) == [labels[i] for i in probabilities.argmax(axis=1)]
    assert (table["error"] == "").all()
    # the patient-level rows are the means of the per-image probabilities of the assessed images (synthetic cells
    # are out of distribution for a model trained on real ones: such a patient has no label and no mean)
    patients = batch.patient_table().set_index("patient_id")
    patient_of = table["patient_id"].astype(str)
    expected = table[table["assessed"]].groupby(patient_of)[[f"p_{n}" for n in labels]].mean()
    expected = expected.reindex(sorted(set(patient_of)))
    assert sorted(patients.index) == list(expected.index)
    np.testing.assert_allclose(patients.loc[expected.index, [f"mean_p_{n}" for n in labels]].to_numpy(float),
                               expected.to_numpy(float), atol=1e-9)
    left_out = (~table["assessed"]).groupby(patient_of).sum()
    assert (patients["left_out"] == left_out.reindex(patients.index)).all()
    assert (patients["label"] == "not assessed").tolist() == (patients["images"] == 0).tolist()
    assert at.download_button(key="predict_csv").label.startswith("Download CSV")
    assert len(at.dataframe) == 2


def test_predict_zip_archive_with_folders_and_a_broken_file(app_env, batch_images):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, path in enumerate(batch_images[:6]):
            archive.writestr(f"export/patient_{index % 2}/cell_{index}.bmp", path.read_bytes())
        archive.writestr("export/patient_1/broken.png", b"not an image")
        archive.writestr("__MACOSX/export/._cell_0.bmp", b"resource fork")
        archive.writestr("export/notes.txt", b"ignored")
    at = new_app().run()
    at.file_uploader(key="predict_zip").set_value(("cells.zip", buffer.getvalue(), "application/zip"))
    at.button(key="predict_run").click().run()
    assert_clean(at)
    table = at.session_state["predict_result"].table()
    assert len(table) == 7
    assert sorted(set(table["patient_id"])) == ["patient_0", "patient_1"]
    broken = table[table["file"].str.endswith("broken.png")]
    assert len(broken) == 1 and broken["error"].iloc[0] and not broken["label"].iloc[0]
    assert (table.drop(broken.index)["error"] == "").all()


def test_predict_one_sample_shows_its_probabilities(app_env):
    at = new_app().run()
    sample = at.multiselect(key="predict_samples").options[0]
    at.multiselect(key="predict_samples").set_value([sample])
    at.button(key="predict_run").click().run()
    assert_clean(at)
    batch = at.session_state["predict_result"]
    (row,) = batch.result.images
    assert row.name == sample and row.error is None
    assert len(at.get("vega_lite_chart")) == 1  # the probability bars
    import pyarrow as pa

    (dataset,) = at.get("vega_lite_chart")[0].proto.datasets  # the chart's data, as Streamlit sends it (Arrow)
    drawn = pa.ipc.open_stream(dataset.data.data).read_pandas()
    assert dict(zip(drawn["class"], drawn["probability"])) == pytest.approx(row.probabilities)
    assert any(m.value.startswith(("**Confident**", "⚠ **Uncertain**")) for m in at.markdown)


def test_unreadable_uploads_are_named_and_counted_honestly(app_env, batch_images):
    """An unreadable upload is reported under its file name (page and CSV), never as "upload"; a batch where
    nothing could be read says so instead of "1 image(s) classified ... 0 of 0 patients flagged"."""
    at = new_app().run()
    at.file_uploader(key="predict_files").set_value([("broken.png", b"not an image", "image/png")])
    at.button(key="predict_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    batch = at.session_state["predict_result"]
    table = pd.read_csv(io.BytesIO(batch.csv_bytes()), keep_default_na=False)
    assert table["error"].tolist() == ["broken.png: not a readable image (UnidentifiedImageError)"]
    assert [h.value for h in at.subheader] == ["No image classified: the file could not be read"]
    page_text = " ".join([m.value for m in at.markdown] + [w.value for w in at.warning])
    assert "broken.png: not a readable image" in page_text and "upload:" not in page_text
    assert "patients flagged" not in page_text and not at.get("vega_lite_chart")

    good = batch_images[0]
    at.file_uploader(key="predict_files").set_value([(good.name, good.read_bytes(), "image/bmp"),
                                                     ("broken.png", b"not an image", "image/png")])
    at.button(key="predict_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.session_state["predict_result"].table().set_index("file")
    assert table.loc["broken.png", "error"].startswith("broken.png: ") and table.loc[good.name, "error"] == ""
    (heading,) = [h.value for h in at.subheader]
    assert heading.startswith("1 image classified by `") and heading.endswith("(1 unreadable file left out)")


def test_streamlit_reads_the_projects_config():
    """``.streamlit/config.toml`` (read by ``streamlit run`` and AppTest started from the repository's root)
    hides the developer toolbar ("Deploy", rerun, clear cache) from visitors."""
    import tomllib

    from streamlit import config

    assert tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["client"]["toolbarMode"] == "viewer"
    assert str(REPO / ".streamlit" / "config.toml") in config.get_config_files("config.toml")
    assert config.get_option("client.toolbarMode") == "viewer"


def test_read_zip_images_refuses_what_is_not_a_batch():
    from leuk.errors import ImageReadError
    from leuk.serving.batch import read_zip_images

    with pytest.raises(ImageReadError, match="not a readable zip archive"):
        read_zip_images(b"plain bytes", archive_name="x.zip")
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.md", b"no images here")
    with pytest.raises(ImageReadError, match="holds no image"):
        read_zip_images(empty.getvalue())
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        for index in range(3):
            archive.writestr(f"{index}.png", b"x")
    with pytest.raises(ImageReadError, match="at most 2"):
        read_zip_images(many.getvalue(), max_images=2)
    with pytest.raises(ImageReadError, match="limit is"):
        read_zip_images(many.getvalue(), max_total_bytes=2)


def test_patient_ids_come_from_cnmc_names_then_folders():
    from leuk.serving.batch import patient_id_for

    assert patient_id_for("UID_h10_1_1_hem.bmp") == "H10"
    assert patient_id_for("x/UID_11_10_1_all.bmp", folder="x") == "11"
    assert patient_id_for("cell.png", folder="patient 7") == "patient 7"
    assert patient_id_for("cell.png", folder="All", labels=["hem", "all"]) is None
    assert patient_id_for("cell.png") is None


def test_montecarlo_page_shows_statistics_and_charts(app_env, mc_run):
    _, results = mc_run
    at = new_app().run().switch_page("views/montecarlo.py").run()
    assert_clean(at)
    metrics = at.multiselect(key=f"mc_metrics:bundled:{MC_RUN}").value
    assert metrics == ["f1_weighted", "accuracy", "roc_auc"]
    # distributions, paired differences and leakage gap: one chart per metric each
    assert len(at.get("vega_lite_chart")) == 3 * len(metrics)
    tables = {tuple(frame.value.columns): frame.value for frame in at.dataframe}
    pvalues = next(frame for columns, frame in tables.items() if "t_pvalue_holm" in columns)
    row = pvalues[(pvalues["comparison"] == f"vs {MC_MODELS[0]}") & (pvalues["protocol"] == "patient")
                  & (pvalues["metric"] == "f1_weighted") & (pvalues["model"] == "vgg16")]
    assert len(row) == 1

    def scores(model: str, protocol: str) -> np.ndarray:
        chosen = results[(results["model"] == model) & (results["protocol"] == protocol)]
        return chosen.sort_values("iteration")["f1_weighted"].to_numpy()

    expected = stats.ttest_rel(scores("vgg16", "patient"), scores(MC_MODELS[0], "patient"))
    assert row["t_pvalue"].iloc[0] == pytest.approx(expected.pvalue, rel=5e-3)  # shown to 3 significant figures
    gap = scores("vgg16", "image") - scores("vgg16", "patient")
    leakage = next(frame for columns, frame in tables.items() if "mean gap" in columns)
    shown = leakage[(leakage["metric"] == "f1_weighted") & (leakage["model"] == "vgg16")]["mean gap"].iloc[0]
    assert shown == pytest.approx(gap.mean(), abs=1e-4)
    assert at.download_button(key="mc_download").label.endswith("(parquet)")

    # filters: one metric, two models, one protocol
    at.multiselect(key=f"mc_metrics:bundled:{MC_RUN}").set_value(["accuracy"])
    at.multiselect(key=f"mc_models:bundled:{MC_RUN}").set_value(list(MC_MODELS[:2]))
    at.multiselect(key=f"mc_protocols:bundled:{MC_RUN}").set_value(["patient"])
    at.run()
    assert_clean(at)
    assert len(at.get("vega_lite_chart")) == 2  # no leakage gap with a single protocol
    pvalues = next(frame.value for frame in at.dataframe if "t_pvalue_holm" in frame.value.columns)
    assert set(pvalues["model"]) == {"vgg16"} and set(pvalues["metric"]) == {"accuracy"}


def test_explain_and_pipeline_pages_draw_images(app_env):
    from leuk import serving

    at = new_app().run().switch_page("views/explain.py").run()
    samples = at.selectbox(key="explain_sample").options
    at.selectbox(key="explain_sample").set_value(samples[1])
    at.button(key="explain_run").click().run()
    assert_clean(at)
    assert len(at.image) == 2
    assert any("Faithfulness" in m.value for m in at.markdown)
    # the IG baseline the CLI offers (`leuk explain --baseline blur`) is a choice here too
    assert at.selectbox(key="explain_baseline").disabled  # Grad-CAM has no baseline
    methods = at.selectbox(key="explain_method").options
    at.selectbox(key="explain_method").set_value(next(m for m in methods if m.startswith("Integrated"))).run()
    baseline = at.selectbox(key="explain_baseline")
    assert not baseline.disabled and baseline.options[0].startswith("black")
    baseline.set_value(next(b for b in baseline.options if b.startswith("blurred"))).run()
    at.button(key="explain_run").click().run()
    assert_clean(at)
    summary = " ".join(m.value for m in at.markdown)
    assert "from the blur baseline" in summary and "Faithfulness" in summary

    at.switch_page("views/pipeline.py").run()
    assert_clean(at)
    if not serving.pipeline_model_names():
        pytest.skip("no HybridCN-NAS model among the configured models")
    at.button(key="pipeline_run").click().run()
    assert_clean(at)
    assert len(at.image) >= 4
    assert any("found" in m.value for m in at.markdown)


def test_pages_explain_what_to_do_without_models(tmp_path):
    from leuk import serving

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEUK_MODELS", "")
        patch.setenv("LEUK_DEMO_MODELS_DIR", str(tmp_path))
        patch.setenv("LEUK_RESULTS_DIR", str(tmp_path / "no-results"))
        _reset_caches()
        try:
            at = new_app().run()
            for page in PAGES:
                at.switch_page(page).run()
                assert not at.exception, (page, [e.value for e in at.exception])
            at.switch_page("views/predict.py").run()
            assert any(serving.NO_MODEL_HELP in i.value for i in at.info)
        finally:
            _reset_caches()


def test_streamlit_run_serves_http(specs, mc_run, dashboard_server_factory, tmp_path):
    url = dashboard_server_factory(dashboard_env(specs, mc_run[0]), tmp_path / "streamlit.log")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        assert "text/html" in response.headers.get("Content-Type", "")
        assert b"<div id=\"root\">" in response.read()


REAL_BUNDLE = REPO / "assets" / "results" / "real-cnmc"


@pytest.fixture()
def committed_results(specs: str) -> Iterator[None]:
    """The committed result sets (no LEUK_RESULTS_DIR): what a fresh clone's dashboard shows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEUK_MODELS", specs)
        patch.delenv("LEUK_RESULTS_DIR", raising=False)
        _reset_caches()
        try:
            yield
        finally:
            _reset_caches()


def test_montecarlo_page_opens_on_the_bundled_real_set(committed_results):
    """The real C-NMC bundle is the default, labelled; the synthetic set is the second source; the tests and
    the leakage gap with its interval match scipy recomputed from results.parquet."""
    at = new_app().run().switch_page("views/montecarlo.py").run()
    assert_clean(at)
    picker = at.selectbox(key="mc_choice")
    assert picker.value == "bundled:real-cnmc" and list(picker.options)[1].startswith("synthetic data")
    assert list(picker.options)[0].startswith("real C-NMC pool, subject-grouped, 100 iterations")
    text = " ".join(m.value for m in at.markdown)
    assert "frozen random-init features: no ImageNet weights; measures the protocol, not the paper's model" in text
    assert "Leakage gap" in text
    results = pd.read_parquet(REAL_BUNDLE / "results.parquet")

    def scores(model: str, protocol: str) -> np.ndarray:
        chosen = results[(results["model"] == model) & (results["protocol"] == protocol)]
        return chosen.sort_values("iteration")["f1_weighted"].to_numpy()

    models = list(dict.fromkeys(results["model"]))
    tables = {tuple(frame.value.columns): frame.value for frame in at.dataframe}
    pvalues = next(frame for columns, frame in tables.items() if "t_pvalue_holm" in columns)
    for model in models[1:]:
        row = pvalues[(pvalues["comparison"] == f"vs {models[0]}") & (pvalues["protocol"] == "patient")
                      & (pvalues["metric"] == "f1_weighted") & (pvalues["model"] == model)]
        expected = stats.ttest_rel(scores(model, "patient"), scores(models[0], "patient")).pvalue
        assert row["t_pvalue"].iloc[0] == pytest.approx(expected, rel=5e-3, abs=1e-300)
    leakage = next(frame for columns, frame in tables.items() if "mean gap" in columns)
    for model in models:
        shown = leakage[(leakage["metric"] == "f1_weighted") & (leakage["model"] == model)].iloc[0]
        interval = stats.ttest_rel(scores(model, "image"), scores(model, "patient")).confidence_interval()
        assert shown["mean gap"] == pytest.approx((scores(model, "image") - scores(model, "patient")).mean(), abs=1e-4)
        assert (shown["95% CI low"], shown["95% CI high"]) == pytest.approx((interval.low, interval.high), abs=1e-4)
    at.selectbox(key="mc_choice").set_value("bundled:synthetic").run()
    assert_clean(at)
    assert "These results come from synthetic data" in " ".join(m.value for m in at.markdown)


def test_a_smear_is_uncertain_on_every_page(app_env, batch_images):
    """A smear shown to the C-NMC cell model is out of distribution on the Predict and Explain pages (alone and in a
    batch, where it makes the patient uncertain), and a single cell shown to the smear model on the Pipeline page."""
    from leuk import serving
    from leuk.hub import load_model

    specs = serving.get_registry().names
    cell_model = next(s for s in specs if "hybrid" not in load_model(s, device="cpu").model.config.model_type)
    if any(load_model(s, device="cpu").ood_detector is None for s in specs):
        pytest.skip("the configured models carry no out-of-distribution detector")
    smear = REPO / "assets" / "samples" / "aria" / "Benign_1.jpg"
    cell = sorted((REPO / "assets" / "samples" / "cnmc").glob("*.png"))[0]

    at = new_app().run()
    at.sidebar.selectbox(key="model").set_value(cell_model).run()
    at.file_uploader(key="predict_files").set_value([(smear.name, smear.read_bytes(), "image/jpeg")])
    at.button(key="predict_run").click().run()
    assert_clean(at)
    (row,) = at.session_state["predict_result"].result.images
    assert row.uncertain and row.reasons[0].startswith("out of distribution")
    # not assessed: no class and no percentage as the headline, no probability chart; the numbers only in a
    # collapsed expander, and the per-image table shows "not assessed" without them (the CSV keeps them)
    assert any(m.value.startswith("⚠ **Not assessed**: unlike the images this model was trained on (out of "
                                  "distribution") for m in at.markdown)
    assert not at.get("vega_lite_chart")
    (expander,) = [e for e in at.expander if e.label.startswith("Probabilities of the images not assessed")]
    assert any(f"`{smear.name}`: " in m.value and f"{row.label} {row.probabilities[row.label]:.4f}" in m.value
               for m in expander.markdown)
    shown = at.dataframe[0].value
    assert list(shown["label"]) == ["not assessed"] and shown["top_probability"].isna().all()
    csv_row = pd.read_csv(io.BytesIO(at.session_state["predict_result"].csv_bytes())).iloc[0]
    assert csv_row["label"] == row.label and not csv_row["assessed"] and csv_row["top_probability"] > 0

    # real C-NMC cells (the bundled samples: like the real model's training images; the synthetic cells are not)
    cells = sorted((REPO / "assets" / "samples" / "cnmc").glob("*.png"))[:6:2]
    files = [(p.name, p.read_bytes(), "image/png") for p in cells] + [(smear.name, smear.read_bytes(), "image/jpeg")]
    at.file_uploader(key="predict_files").set_value(files)
    at.button(key="predict_run").click().run()
    assert_clean(at)
    batch = at.session_state["predict_result"]
    table = batch.table().set_index("file")
    assert table.loc[smear.name, "uncertain"] and table.loc[smear.name, "uncertain_reasons"].startswith(
        "out of distribution")
    assert batch.result.aggregate.uncertain
    assert batch.result.aggregate.reasons[0].startswith("out of distribution")
    # the patient label counts only the assessed images, and says how many it left out
    assessed = table[table["assessed"]]
    (patient,) = [row for _, row in batch.patient_table().iterrows()]
    assert list(assessed.index) == [p.name for p in cells] and patient["left_out"] == 1
    assert patient["images"] == 3 and patient["label"] == batch.result.aggregate.label
    for name in batch.labels:
        assert patient[f"mean_p_{name}"] == pytest.approx(assessed[f"p_{name}"].mean())
    page_text = " ".join(m.value for m in at.markdown)
    assert f"Label from {len(assessed)} assessed images; 1 left out (not assessed" in page_text

    at.switch_page("views/explain.py").run()
    at.file_uploader(key="explain_file").set_value((smear.name, smear.read_bytes(), "image/jpeg"))
    at.button(key="explain_run").click().run()
    assert_clean(at)
    assert any(m.value.startswith(NOT_ASSESSED_HEAD) for m in at.markdown)

    at.switch_page("views/pipeline.py").run()
    if not serving.pipeline_model_names():
        pytest.skip("no HybridCN-NAS model among the configured models")
    at.file_uploader(key="pipeline_file").set_value((cell.name, cell.read_bytes(), "image/png"))
    at.button(key="pipeline_run").click().run()
    assert_clean(at)
    assert any(m.value.startswith(NOT_ASSESSED_HEAD) for m in at.markdown)


NOT_ASSESSED_HEAD = "⚠ **Not assessed**: unlike the images this model was trained on (out of distribution"


def test_about_describes_the_bundled_models_from_their_records(app_env):
    """The About page says what each bundled model was trained on from its own records, and speaks of synthetic
    look-alikes only when a bundled model's records say it was trained on them."""
    from leuk.hub import list_demo_models
    from leuk.hub.loader import demo_models_dir
    from leuk.hub.provenance import folder_training_summary

    at = new_app().run()
    at.switch_page("views/about.py").run()
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    summaries = {name: folder_training_summary(demo_models_dir() / name) for name in list_demo_models()}
    for name, summary in summaries.items():
        assert f"`demo:{name}`: {summary.text}" in text
    synthetic = [name for name, summary in summaries.items() if summary.synthetic]
    assert ("trained on synthetic look-alikes" in text) == bool(synthetic)
    assert "predictions on real images mean nothing" not in text or synthetic
    if summaries and all(summary.real for summary in summaries.values()):
        assert "trained on real images" in text


def test_predict_smear_mode_boxes_cells_and_explains_one(app_env, tmp_path):
    """Predict's Smear mode: a drawn smear with one white cell, found by the colour threshold, cut out, classified,
    boxed on the smear and explained on request; the CSV has the cell row (with its box) and the smear row."""
    from PIL import Image

    from test_smear_cells import smear  # (pytest puts tests/ on sys.path)

    buffer = io.BytesIO()
    Image.fromarray(smear([(100, 120, 30)])).save(buffer, format="PNG")
    at = new_app().run()
    at.radio(key="predict_mode").set_value("Smear").run()
    assert_clean(at)
    at.file_uploader(key="smear_files").set_value([("smear.png", buffer.getvalue(), "image/png")])
    at.selectbox(key="smear_segmenter").set_value("classical")
    at.button(key="smear_run").click().run()
    assert_clean(at)
    result = at.session_state["smear_result"]
    (found,) = result.smears
    assert found.name == "smear.png" and len(found.classified) == 1
    assert at.download_button(key="smear_csv").label.startswith("Download CSV")
    table = pd.read_csv(io.BytesIO(result.table().to_csv(index=False).encode()))
    assert list(table["row"]) == ["cell", "smear"] and abs(table["x0"].iloc[0] - 70) <= 2
    assert len(at.image) >= 2  # the boxed smear and the crop
    assert len(at.dataframe) == 2
    at.button(key="smear_explain").click().run()
    assert_clean(at)
    assert len(at.image) >= 3 and any("Faithfulness" in m.value for m in at.markdown)


def test_an_upload_sets_the_sample_aside_and_results_name_their_file(app_env):
    """Explain and Pipeline: an upload replaces the preselected sample, says so, and the result names the file;
    the IG steps setting reaches the explanation."""
    from leuk import serving

    cell = next(s.path for s in serving.list_samples("cnmc"))
    at = new_app().run().switch_page("views/explain.py").run()
    preselected = at.selectbox(key="explain_sample").value
    assert preselected.endswith(".png")  # the default model takes C-NMC cells: no Aria smear is offered
    assert all(not name.endswith(".jpg") for name in at.selectbox(key="explain_sample").options)
    at.file_uploader(key="explain_file").set_value(("my_cell.png", cell.read_bytes(), "image/png")).run()
    captions = " ".join(c.value for c in at.caption)
    assert "Using the upload `my_cell.png`" in captions and preselected in captions
    methods = at.selectbox(key="explain_method").options
    at.selectbox(key="explain_method").set_value(next(m for m in methods if m.startswith("Integrated"))).run()
    assert not at.selectbox(key="explain_ig_steps").disabled
    at.selectbox(key="explain_ig_steps").set_value("32").run()
    at.button(key="explain_run").click().run()
    assert_clean(at)
    summary = " ".join(m.value for m in at.markdown)
    assert "of `my_cell.png`" in summary and "32 steps" in summary and preselected not in summary

    at.switch_page("views/pipeline.py").run()
    smear = at.selectbox(key="pipeline_sample").value
    at.file_uploader(key="pipeline_file").set_value(("my_smear.jpg", cell.read_bytes(), "image/png")).run()
    assert "Using the upload `my_smear.jpg`" in " ".join(c.value for c in at.caption) and smear
    at.button(key="pipeline_run").click().run()
    assert_clean(at)
    assert any("in `my_smear.jpg`" in m.value for m in at.markdown)
