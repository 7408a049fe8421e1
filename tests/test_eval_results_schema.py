"""``eval_results.json`` has one versioned schema (:mod:`leuk.records`): written stamped and validated, read
through one upgrade function (older folders, the bundled demos among them, are never rewritten) and validated
again in the loader and the cards; the version is a record marker that no figure or card shows."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from leuk.records import (
    EVAL_RESULTS_FILE,
    EVAL_RESULTS_SCHEMA_VERSION,
    EVAL_RESULTS_VERSION_KEY,
    EvalResultsError,
    eval_results_problems,
    read_eval_results,
    upgrade_eval_results,
    validate_eval_results,
    write_eval_results,
)

DEMOS = Path(__file__).resolve().parents[1] / "assets" / "demo_models"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(p.name for p in DEMOS.iterdir() if (p / EVAL_RESULTS_FILE).is_file()))
def test_bundled_records_read_through_the_upgrade_and_stay_untouched(name):
    path = DEMOS / name / EVAL_RESULTS_FILE
    before = _digest(path)
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    record = read_eval_results(DEMOS / name)
    assert record[EVAL_RESULTS_VERSION_KEY] == EVAL_RESULTS_SCHEMA_VERSION
    if EVAL_RESULTS_VERSION_KEY in on_disk:  # rewritten since the schema has a version
        assert record == on_disk
    else:  # written before: read through the upgrade, nothing else changes
        assert {k: v for k, v in record.items() if k != EVAL_RESULTS_VERSION_KEY} == on_disk
    assert _digest(path) == before


def test_some_bundled_record_predates_the_schema_version():
    """The upgrade path is exercised on a real folder, not only on made-up records."""
    assert any(EVAL_RESULTS_VERSION_KEY not in json.loads((p / EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
               for p in DEMOS.iterdir() if (p / EVAL_RESULTS_FILE).is_file())


def test_upgrade_copies_and_refuses_a_newer_version():
    old = {"accuracy": 0.9, "n": 10}
    new = upgrade_eval_results(old)
    assert new == {"accuracy": 0.9, "n": 10, EVAL_RESULTS_VERSION_KEY: 1} and old == {"accuracy": 0.9, "n": 10}
    assert upgrade_eval_results(new) == new
    with pytest.raises(EvalResultsError, match="newer"):
        upgrade_eval_results({EVAL_RESULTS_VERSION_KEY: EVAL_RESULTS_SCHEMA_VERSION + 1})
    with pytest.raises(EvalResultsError, match="non-negative integer"):
        upgrade_eval_results({EVAL_RESULTS_VERSION_KEY: "1"})
    with pytest.raises(EvalResultsError):
        upgrade_eval_results([1, 2])


def test_validator_names_every_problem():
    record = {EVAL_RESULTS_VERSION_KEY: 1, "synthetic": "yes", "test": {"accuracy": "high", "n": 3.5},
              "split_sizes": {"train": {"n_images": 1.5}, "val": 3}, "training_subjects": "A, B",
              "own_block": {"anything": ["goes"]}}
    problems = eval_results_problems(record)
    assert len(problems) == 6, problems
    with pytest.raises(EvalResultsError) as err:
        validate_eval_results(record)
    for fragment in ("synthetic", "test.accuracy", "test.n", "split_sizes.train.n_images", "split_sizes.val",
                     "training_subjects"):
        assert fragment in str(err.value)
    assert eval_results_problems({"accuracy": 0.5}) == [  # an old record must go through the upgrade first
        f"{EVAL_RESULTS_VERSION_KEY} must be 1 (upgrade_eval_results brings older records to it), not None"]
    ok = {EVAL_RESULTS_VERSION_KEY: 1, "test": {"accuracy": None, "roc_auc": float("nan"), "n": 4}, "seed": None}
    assert validate_eval_results(ok) is ok


def test_write_stamps_the_version_first_and_refuses_an_invalid_record(tmp_path):
    path = write_eval_results(tmp_path, {"model": "m", "seed": np.int64(3), "test": {"accuracy": np.float32(0.5)},
                                         EVAL_RESULTS_VERSION_KEY: 0},
                              default=lambda o: o.item())
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "schema_version": 1,\n  "model": "m"') and text.endswith("}\n")
    assert read_eval_results(tmp_path)["seed"] == 3
    with pytest.raises(EvalResultsError, match="synthetic"):
        write_eval_results(tmp_path / "x", {"synthetic": "no"})
    assert not (tmp_path / "x").exists()


def test_loader_card_and_tables_read_the_schema_and_hide_the_version(tmp_path):
    from leuk.hub import build_model_card, load_model
    from leuk.serving.model_info import metrics_table

    folder = tmp_path / "hybridcn-nas-lite"
    shutil.copytree(DEMOS / "hybridcn-nas-lite", folder)
    card_old = str(build_model_card(folder))
    record = json.loads((folder / EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
    write_eval_results(folder, record)  # the same record, now stamped
    assert str(build_model_card(folder)) == card_old  # the version is no figure and no metadata
    loaded = load_model(str(folder), device="cpu")
    assert loaded.eval_results[EVAL_RESULTS_VERSION_KEY] == 1
    assert EVAL_RESULTS_VERSION_KEY not in set(metrics_table(loaded.eval_results)["metric"])
    record["synthetic"] = "perhaps"
    (folder / EVAL_RESULTS_FILE).write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(EvalResultsError, match="synthetic"):
        build_model_card(folder)
