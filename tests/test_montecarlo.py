"""The Monte Carlo runner: statistics recomputed with scipy, split integrity, resuming, ranks, leakage, CLI.

One module-scoped run (features mode, 2 tiny models, both protocols, 16 iterations, synthetic C-NMC with
strong per-patient stain confounding) serves most tests. Iteration seeds do not depend on the number of
iterations, so shorter runs in the same configuration must reproduce its first rows exactly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from leuk.data.splits import train_val_test_split
from leuk.experiments.montecarlo import (
    ID_COLUMNS,
    TEST_SIZE,
    VAL_SIZE,
    MonteCarloError,
    run_monte_carlo,
    split_hashes,
)
from leuk.experiments.stats import WILCOXON_OPTIONS, holm

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "efficientnet-se-test"
N_ITER = 16
# Strong per-patient stain signature: an image-level split can recognise the patient.
DATA = dict(patients=24, images_per_patient=10, size=64, seed=0, confounding=2.0)


@pytest.fixture(scope="module")
def mc_data(tmp_path_factory) -> Path:
    from leuk.data.synthetic import write_cnmc

    return write_cnmc(tmp_path_factory.mktemp("mc_data"), **DATA)


@pytest.fixture(scope="module")
def second_model(tmp_path_factory) -> str:
    """A model spec (save_pretrained folder): the tiny preset without SE, initialised with another seed."""
    import torch

    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor

    folder = tmp_path_factory.mktemp("models") / "tiny-no-se"
    torch.manual_seed(1)
    model = create_model(REFERENCE, use_se=False)
    model.save_pretrained(folder)
    EfficientNetSEImageProcessor.from_model_config(model.config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def mc(mc_data, second_model, tmp_path_factory):
    """The uninterrupted reference run (with plots) and what the other tests need to repeat it."""
    work = tmp_path_factory.mktemp("mc")
    common = dict(models=[REFERENCE, second_model], protocol="both", seed=0, feature_cache=work / "cache",
                  progress=False)
    run = run_monte_carlo(mc_data, out=work / "full", n_iter=N_ITER, plots=True, **common)
    assert run.complete
    return {"run": run, "out": work / "full", "data": mc_data, "common": common, "work": work}


def _read(out: Path) -> tuple[pd.DataFrame, dict]:
    return pd.read_parquet(out / "results.parquet"), json.loads((out / "summary.json").read_text())


def _series(results: pd.DataFrame, protocol: str, model: str, metric: str) -> np.ndarray:
    rows = results[(results["protocol"] == protocol) & (results["model"] == model)].sort_values("iteration")
    return rows[metric].to_numpy(np.float64)


def test_results_table_layout_and_paired_design(mc):
    results, summary = _read(mc["out"])
    models = mc["common"]["models"]
    assert list(results.columns[: len(ID_COLUMNS)]) == ID_COLUMNS
    assert results.columns[-1] == "confusion_matrix"
    for metric in ("accuracy", "f1_weighted", "f1_macro", "roc_auc", "mcc", "sensitivity", "specificity", "ece"):
        assert results[metric].dtype == np.float64
    assert len(results) == N_ITER * 2 * len(models)
    expected_order = [(i, p, m) for i in range(N_ITER) for p in ("patient", "image") for m in models]
    assert list(zip(results["iteration"], results["protocol"], results["model"])) == expected_order
    for row in results.itertuples():
        matrix = np.asarray(json.loads(row.confusion_matrix))
        assert matrix.sum() == row.n_test
        assert math.isclose(np.trace(matrix) / matrix.sum(), row.accuracy)
    # paired design: every model saw the same split in the same iteration and protocol
    per_split = results.groupby(["iteration", "protocol"])[["seed", "train_hash", "val_hash", "test_hash"]].nunique()
    assert (per_split == 1).all().all()
    assert results.groupby("iteration")["seed"].nunique().eq(1).all()


def test_every_pvalue_equals_scipy_recomputed_from_the_parquet(mc):
    results, summary = _read(mc["out"])
    checked = 0
    for protocol, block in summary["protocols"].items():
        for metric, per_model in block["comparisons"].items():
            reference = _series(results, protocol, REFERENCE, metric)
            raw_t, raw_w = [], []
            for model, test in per_model.items():
                other = _series(results, protocol, model, metric)
                keep = ~(np.isnan(reference) | np.isnan(other))
                diff = other[keep] - reference[keep]
                if np.all(diff == 0):
                    expected_t = expected_w = 1.0
                else:
                    expected_t = scipy_stats.ttest_rel(other[keep], reference[keep]).pvalue
                    expected_w = scipy_stats.wilcoxon(diff, **WILCOXON_OPTIONS).pvalue
                assert abs(test["t_pvalue"] - expected_t) <= 1e-12, (protocol, metric, model)
                assert abs(test["wilcoxon_pvalue"] - expected_w) <= 1e-12, (protocol, metric, model)
                if np.std(diff, ddof=1) > 0:
                    assert test["cohens_d"] == pytest.approx(diff.mean() / np.std(diff, ddof=1), rel=1e-12)
                raw_t.append(expected_t)
                raw_w.append(expected_w)
                checked += 1
            assert [t["t_pvalue_holm"] for t in per_model.values()] == pytest.approx(holm(raw_t), abs=1e-12)
            assert [t["wilcoxon_pvalue_holm"] for t in per_model.values()] == pytest.approx(holm(raw_w), abs=1e-12)
        for model, per_metric in block["models"].items():
            values = _series(results, protocol, model, "f1_weighted")
            assert per_metric["f1_weighted"]["mean"] == pytest.approx(values.mean(), abs=1e-12)
            assert per_metric["f1_weighted"]["p2_5"] == pytest.approx(np.percentile(values, 2.5), abs=1e-12)
    for metric, per_model in summary["leakage_gap"]["metrics"].items():
        for model, test in per_model.items():
            patient, image = _series(results, "patient", model, metric), _series(results, "image", model, metric)
            keep = ~(np.isnan(patient) | np.isnan(image))
            if np.all(image[keep] == patient[keep]):
                continue
            assert abs(test["t_pvalue"] - scipy_stats.ttest_rel(image[keep], patient[keep]).pvalue) <= 1e-12
            checked += 1
    assert checked >= 2 * len(summary["metrics"])


def test_patient_splits_regenerate_from_their_seed_and_never_share_a_patient(mc):
    from leuk.data import load_cnmc

    results, _ = _read(mc["out"])
    dataset = load_cnmc(mc["data"])
    labels = np.asarray(dataset["label"])
    patients = np.asarray([str(p) for p in dataset["patient_id"]])
    image_keys = [f"{p}/{os.path.basename(path)}" for p, path in zip(patients, dataset["path"])]
    rows = results.drop_duplicates(["iteration", "protocol"])
    assert set(rows["protocol"]) == {"patient", "image"}
    for row in rows.itertuples():
        split = train_val_test_split(labels, patients, test_size=TEST_SIZE, val_size=VAL_SIZE, seed=int(row.seed),
                                     protocol=row.protocol)
        hashes = split_hashes(split, row.protocol, patients, image_keys)
        assert (hashes["train_hash"], hashes["val_hash"], hashes["test_hash"]) == (
            row.train_hash, row.val_hash, row.test_hash)
        assert (len(split.train), len(split.val), len(split.test)) == (row.n_train, row.n_val, row.n_test)
        if row.protocol == "patient":
            train, val, test = (set(patients[getattr(split, part)]) for part in ("train", "val", "test"))
            assert not (train & val or train & test or val & test), f"iteration {row.iteration} leaks a patient"
            assert train | val | test == set(patients)


def test_confounding_makes_the_image_protocol_look_better(mc):
    """The leaky protocol flatters the score: mean F1 higher and the 95% interval of the mean gap above 0.

    (The 2.5-97.5 percentile band of single-iteration gaps is reported too, but with ~5 test patients per
    patient-level split it is too wide to exclude 0 at test sizes; the bundled results show it.)"""
    results, summary = _read(mc["out"])
    for model in mc["common"]["models"]:
        patient_f1 = _series(results, "patient", model, "f1_weighted")
        image_f1 = _series(results, "image", model, "f1_weighted")
        assert image_f1.mean() > patient_f1.mean()
    gap = summary["leakage_gap"]["metrics"]["f1_weighted"][REFERENCE]
    difference = _series(results, "image", REFERENCE, "f1_weighted") - _series(results, "patient", REFERENCE,
                                                                                 "f1_weighted")
    assert gap["mean_difference"] == pytest.approx(difference.mean(), abs=1e-12)
    assert gap["difference_p2_5"] == pytest.approx(np.percentile(difference, 2.5), abs=1e-12)
    assert gap["mean_ci_low"] > 0, gap


def test_interrupted_run_resumes_to_the_same_table(mc, tmp_path):
    out = tmp_path / "resumed"
    written = []

    def stop_after_five(iteration, protocol, model):
        written.append((iteration, protocol, model))
        if len(written) == 5:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run_monte_carlo(mc["data"], out=out, n_iter=3, plots=False, on_part_written=stop_after_five, **mc["common"])
    assert len(list((out / "parts").glob("*.parquet"))) == 5
    assert not (out / "results.parquet").exists()
    # a process killed in the middle of writing a part leaves only a hidden temporary file
    (out / "parts" / ".00002-image-x.parquet.abc.tmp").write_bytes(b"PAR1 half written")
    resumed = run_monte_carlo(mc["data"], out=out, n_iter=3, plots=False, **mc["common"])
    assert (resumed.parts_skipped, resumed.parts_written) == (5, 3 * 2 * 2 - 5)
    expected, _ = _read(mc["out"])
    expected = expected[expected["iteration"] < 3].reset_index(drop=True)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), expected)


def test_sigkilled_process_resumes_to_the_same_table(mc, tmp_path):
    """A real process killed with SIGKILL once 3 part files exist; the rerun completes the same table."""
    out = tmp_path / "killed"
    common = {**mc["common"], "feature_cache": str(mc["common"]["feature_cache"])}
    script = textwrap.dedent(f"""
        import time
        from leuk.experiments.montecarlo import run_monte_carlo
        written = []
        def slow_after_three(*task):
            written.append(task)
            if len(written) >= 3:
                time.sleep(600)
        run_monte_carlo({str(mc["data"])!r}, out={str(out)!r}, n_iter=2, plots=False,
                        on_part_written=slow_after_three, **{common!r})
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while len(list((out / "parts").glob("*.parquet"))) < 3:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run did not write 3 parts in time"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert len(list((out / "parts").glob("*.parquet"))) == 3
    resumed = run_monte_carlo(mc["data"], out=out, n_iter=2, plots=False, **mc["common"])
    assert resumed.parts_skipped == 3
    expected, _ = _read(mc["out"])
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"),
                                  expected[expected["iteration"] < 2].reset_index(drop=True))


def test_ranks_split_the_iterations_and_rank_zero_merges(mc, tmp_path):
    out = tmp_path / "ranks"
    second = run_monte_carlo(mc["data"], out=out, n_iter=3, plots=False, rank=1, world_size=2, **mc["common"])
    assert not second.complete and second.results is None
    assert {p.name[:5] for p in (out / "parts").glob("*.parquet")} == {"00001"}
    first = run_monte_carlo(mc["data"], out=out, n_iter=3, plots=False, rank=0, world_size=2, **mc["common"])
    assert first.complete
    expected, _ = _read(mc["out"])
    pd.testing.assert_frame_equal(first.results, expected[expected["iteration"] < 3].reset_index(drop=True))


def test_a_folder_holding_another_run_is_refused(mc):
    with pytest.raises(MonteCarloError, match="different Monte Carlo run.*seed"):
        run_monte_carlo(mc["data"], out=mc["out"], n_iter=2, plots=False,
                        **{**mc["common"], "seed": 1})
    with pytest.raises(MonteCarloError, match="reference"):
        run_monte_carlo(mc["data"], out=mc["work"] / "x", reference="vgg16", **mc["common"])


def test_plots_and_chart_data(mc):
    from leuk.experiments.plots import difference_frame, leakage_frame, metric_frame, pvalue_frame

    out = mc["out"]
    for name in ("distributions.png", "differences.png", "pvalues.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    chart = json.loads((out / "plot_data.json").read_text())
    assert chart["reference"] == REFERENCE and "f1_weighted" in chart["metrics"]
    results, summary = _read(out)
    values = metric_frame(results, ["f1_weighted"])
    assert len(values) == len(results) and list(values.columns) == ["iteration", "protocol", "model", "metric",
                                                                    "value"]
    assert len(chart["values"]["data"]) == len(metric_frame(results, chart["metrics"]))
    differences = difference_frame(results, REFERENCE, ["f1_weighted"])
    assert len(differences) == N_ITER * 2
    assert len(leakage_frame(results, ["f1_weighted"])) == N_ITER * 2
    table = pvalue_frame(summary)
    assert {"vs " + REFERENCE, "leakage gap"} <= set(table["comparison"])
    markdown = (out / "summary.md").read_text()
    assert "Leakage gap" in markdown and "Holm" in markdown
    # the apps build their charts from these frames without matplotlib
    probe = "import sys, leuk.experiments.plots; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)


def test_cli_runs_resumes_and_merges(mc, tmp_path, capsys):
    from leuk.cli import main

    out = tmp_path / "cli"
    argv = ["montecarlo", "--data", str(mc["data"]), "--models", REFERENCE, "--iterations", "2",
            "--protocol", "patient", "--out", str(out), "--feature-cache", str(mc["common"]["feature_cache"]),
            "--no-plots", "--quiet"]
    assert main(argv) == 0
    assert "f1_weighted" in capsys.readouterr().out
    assert main(argv) == 0 and "4 resumed" not in capsys.readouterr().out
    assert main(["montecarlo", "--merge", "--out", str(out), "--no-plots"]) == 0
    assert pd.read_parquet(out / "results.parquet").shape[0] == 2
    assert main(["montecarlo", "--data", str(mc["data"]), "--models", REFERENCE]) == 1
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_finetune_mode_trains_through_the_training_engine(mc, tmp_path):
    run = run_monte_carlo(mc["data"], [REFERENCE], tmp_path / "finetune", mode="finetune", n_iter=1,
                          protocol="patient", batch_size=32, progress=False, plots=False,
                          finetune_options={"epochs": 1, "augment": False})
    assert run.complete and len(run.results) == 1
    row = run.results.iloc[0]
    assert 0.0 <= row["f1_weighted"] <= 1.0 and row["n_test"] > 0
    assert row["seed"] == mc["run"].results["seed"].iloc[0]  # the same split as features mode


# ------------------------------------------------------------------ the bundled result sets (assets/results/)

BUNDLED = REPO / "assets" / "results"
REAL_BUNDLE = BUNDLED / "real-cnmc"
REAL_POOL = REPO.parent / "shared" / "datasets" / "cnmc-real" / "C-NMC_Leukemia"


def _recompute_from_parquet(results: pd.DataFrame, summary: dict) -> int:
    """Check every paired test, Holm adjustment, score summary and leakage-gap interval of ``summary`` against
    scipy/numpy recomputed from ``results``; return how many comparisons were checked."""
    reference, checked = summary["reference"], 0

    def expected_tests(base: np.ndarray, other: np.ndarray) -> dict:
        keep = ~(np.isnan(base) | np.isnan(other))
        base, other = base[keep], other[keep]
        diff = other - base
        if np.all(diff == 0):
            return {"t_pvalue": 1.0, "wilcoxon_pvalue": 1.0, "mean_difference": 0.0}
        n, sd = len(diff), np.std(diff, ddof=1)
        half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        return {"t_pvalue": scipy_stats.ttest_rel(other, base).pvalue,
                "wilcoxon_pvalue": scipy_stats.wilcoxon(diff, **WILCOXON_OPTIONS).pvalue,
                "mean_difference": diff.mean(), "mean_ci_low": diff.mean() - half,
                "mean_ci_high": diff.mean() + half, "difference_p2_5": np.percentile(diff, 2.5),
                "difference_p97_5": np.percentile(diff, 97.5), "n": n}

    def compare(shown: dict, expected: dict, where: tuple) -> None:
        for key, value in expected.items():
            assert shown[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (where, key)

    blocks = [(protocol, block["comparisons"], lambda p, m, metric: (_series(results, p, reference, metric),
                                                                     _series(results, p, m, metric)))
              for protocol, block in summary["protocols"].items()]
    if summary.get("leakage_gap"):
        blocks.append(("leakage", summary["leakage_gap"]["metrics"],
                       lambda _, m, metric: (_series(results, "patient", m, metric),
                                             _series(results, "image", m, metric))))
    for protocol, per_metric, pair in blocks:
        for metric, per_model in per_metric.items():
            raw_t, raw_w = [], []
            for model, shown in per_model.items():
                expected = expected_tests(*pair(protocol, model, metric))
                compare(shown, expected, (protocol, metric, model))
                raw_t.append(expected["t_pvalue"])
                raw_w.append(expected["wilcoxon_pvalue"])
                checked += 1
            assert [t["t_pvalue_holm"] for t in per_model.values()] == pytest.approx(holm(raw_t), abs=1e-12)
            assert [t["wilcoxon_pvalue_holm"] for t in per_model.values()] == pytest.approx(holm(raw_w), abs=1e-12)
    for protocol, block in summary["protocols"].items():
        for model, per_metric in block["models"].items():
            for metric in ("f1_weighted", "roc_auc"):
                values = _series(results, protocol, model, metric)
                assert per_metric[metric]["mean"] == pytest.approx(values.mean(), abs=1e-12)
                assert per_metric[metric]["sd"] == pytest.approx(values.std(ddof=1), abs=1e-12)
                assert per_metric[metric]["p2_5"] == pytest.approx(np.percentile(values, 2.5), abs=1e-12)
                assert per_metric[metric]["p97_5"] == pytest.approx(np.percentile(values, 97.5), abs=1e-12)
    return checked


def test_bundled_real_set_is_what_its_label_says():
    """The default bundle: the real C-NMC pool, subject-grouped, >= 100 iterations, EfficientNet-SE against at
    least two baselines in features mode on frozen random-init backbones, both protocols; small; no caches."""
    config = json.loads((REAL_BUNDLE / "run.json").read_text())
    results = pd.read_parquet(REAL_BUNDLE / "results.parquet")
    assert config["synthetic"] is False and config["dataset_kind"] == "cnmc"
    assert (config["n_images"], config["n_patients"]) == (2161, 17)
    assert config["mode"] == "features" and config["pretrained"] is False and config["protocol"] == "both"
    assert config["models"][0] == config["reference"] == "efficientnet-se" and len(config["models"]) >= 3
    assert config["split"]["grouped_by"] == "patient_id" and config["split"]["val_size"] == 0.2
    assert results["iteration"].nunique() == config["n_iter"] >= 100
    assert len(results) == config["n_iter"] * 2 * len(config["models"])
    assert set(results["protocol"]) == {"patient", "image"}
    patient = results[results["protocol"] == "patient"]
    # 3 of 17 subjects in each test set (1 HEM + 3 ALL): per split, both classes are tested
    assert (patient["n_test"] > 0).all() and patient["roc_auc"].notna().all()
    files = {p.name for p in REAL_BUNDLE.iterdir()}
    assert "feature_cache" not in files and "parts" not in files
    assert sum(p.stat().st_size for p in REAL_BUNDLE.iterdir()) < 2 * 2**20
    summary = json.loads((REAL_BUNDLE / "summary.json").read_text())
    from leuk.experiments.montecarlo import FROZEN_RANDOM_NOTE

    assert FROZEN_RANDOM_NOTE in (REAL_BUNDLE / "summary.md").read_text()
    assert summary["splits"].count("val_size=0.2") == 1


@pytest.mark.parametrize("name", ["real-cnmc", "synthetic"])
def test_bundled_statistics_recompute_from_the_parquet_with_scipy(name):
    results = pd.read_parquet(BUNDLED / name / "results.parquet")
    summary = json.loads((BUNDLED / name / "summary.json").read_text())
    checked = _recompute_from_parquet(results, summary)
    n_models = len(summary["models"])
    assert checked >= len(summary["metrics"]) * ((n_models - 1) * 2 + n_models)
    gap = summary["leakage_gap"]["metrics"]["f1_weighted"][summary["reference"]]
    assert gap["mean_ci_low"] <= gap["mean_difference"] <= gap["mean_ci_high"]


@pytest.mark.skipif(not REAL_POOL.is_dir(), reason="needs the real C-NMC pool (../shared/datasets/cnmc-real)")
def test_bundled_real_splits_regenerate_and_hold_one_hem_subject_in_each_part():
    """With 3 HEM subjects and val_size 0.2, train, validation and test get one HEM subject each (the default
    0.12 would leave validation without one); every recorded hash regenerates from the row's seed."""
    from leuk.data import load_cnmc

    config = json.loads((REAL_BUNDLE / "run.json").read_text())
    results = pd.read_parquet(REAL_BUNDLE / "results.parquet")
    dataset = load_cnmc(REAL_POOL)
    labels = np.asarray(dataset["label"])
    patients = np.asarray([str(p) for p in dataset["patient_id"]])
    image_keys = [f"{p}/{os.path.basename(path)}" for p, path in zip(patients, dataset["path"])]
    hem = set(patients[labels == 0])
    assert len(hem) == 3
    for row in results.drop_duplicates(["iteration", "protocol"]).itertuples():
        split = train_val_test_split(labels, patients, test_size=config["split"]["test_size"],
                                     val_size=config["split"]["val_size"], seed=int(row.seed), protocol=row.protocol)
        hashes = split_hashes(split, row.protocol, patients, image_keys)
        assert (hashes["train_hash"], hashes["val_hash"], hashes["test_hash"]) == (
            row.train_hash, row.val_hash, row.test_hash)
        if row.protocol == "patient":
            parts = [set(patients[getattr(split, part)]) for part in ("train", "val", "test")]
            assert [len(part & hem) for part in parts] == [1, 1, 1], row.iteration
            assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


# ------------------------------------------------------------------ HybridCN-NAS through the family contract

@pytest.mark.slow
def test_features_mode_runs_on_hybridcn_nas_as_on_efficientnet_se(aria_root, tmp_path):
    """A random-init lite preset and the bundled trained demo, next to an EfficientNet-SE preset, on Aria smears."""
    models = ["hybridcn-nas-lite", "demo:hybridcn-nas-lite", "efficientnet-se-test"]
    run = run_monte_carlo(aria_root, models, tmp_path / "hybrid", dataset_kind="aria", n_iter=2,
                          protocol="patient", val_size=0.25, device="cpu", progress=False, plots=False)
    assert run.complete and len(run.results) == 2 * len(models)
    assert set(run.results["model"]) == set(models)
    assert run.results["f1_weighted"].between(0, 1).all()
    cached = {path.name.split("-")[0] for path in (tmp_path / "hybrid" / "feature_cache").glob("*.safetensors")}
    assert {"hybridcn", "demo_hybridcn", "efficientnet"} <= cached


def test_finetune_mode_refuses_hybridcn_nas_with_its_reason(aria_root, tmp_path):
    from leuk.experiments.montecarlo import MonteCarloError

    with pytest.raises(MonteCarloError, match="trains in stages"):
        run_monte_carlo(aria_root, ["efficientnet-se-test", "hybridcn-nas-lite"], tmp_path / "ft",
                        dataset_kind="aria", mode="finetune", n_iter=1, progress=False, plots=False)
    assert not (tmp_path / "ft").exists()  # refused before any work
    with pytest.raises(MonteCarloError, match="trains presets"):
        run_monte_carlo(aria_root, ["demo:hybridcn-nas-lite"], tmp_path / "ft2", dataset_kind="aria",
                        mode="finetune", n_iter=1, progress=False, plots=False)
