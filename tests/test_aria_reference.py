"""The box-level reference of real Aria smears and its second, blind reading (``assets/aria_reference``): both files
pass ``train/make_aria_boxes.py check`` (columns, kinds, boxes inside the 224 px smear, the second reading covering
exactly the first one's smears), and the bench's agreement figures count what they say on hand-made readings."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "assets" / "aria_reference"


def _script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _script(REPO / "bench" / "bench_smear_cells.py", "bench_smear_cells")


@pytest.mark.parametrize("name", ["boxes.csv", "boxes_second.csv", "boxes_consensus.csv"])
def test_reference_files_pass_the_check(name):
    run = subprocess.run([sys.executable, str(REPO / "train" / "make_aria_boxes.py"), "check", "--boxes",
                          str(REFERENCE / name)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("104 smears,"), run.stdout


def test_a_second_reading_that_misses_a_smear_fails_the_check(tmp_path):
    lines = (REFERENCE / "boxes_second.csv").read_text(encoding="utf-8").splitlines()
    dropped = lines[1].split(",")[0]
    (tmp_path / "second.csv").write_text("\n".join(l for l in lines if not l.startswith(dropped + ",")) + "\n",
                                         encoding="utf-8")
    run = subprocess.run([sys.executable, str(REPO / "train" / "make_aria_boxes.py"), "check", "--boxes",
                          str(tmp_path / "second.csv")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and f"not read: {dropped}" in run.stdout


def _smear(name: str, first: list, second: list, *, first_doubtful: int = 0, consensus: list | None = None) -> dict:
    readings = {"second": {"white": second, "smudge": [], "doubtful": 0}}
    if consensus is not None:
        readings["consensus"] = {"white": consensus, "smudge": [], "doubtful": 0}
    return {"image": name, "class": name.split("/")[0], "set": "mask-review", "white": first, "smudge": [],
            "doubtful": first_doubtful, "readings": readings}


A, B, C = (0, 0, 20, 20), (40, 40, 60, 60), (100, 100, 120, 120)
SLIVER = (0, 80, 3, 95)


def test_reading_agreement_scores_the_second_reading_against_the_first(bench):
    smears = [_smear("Pre/a.jpg", [A, B, SLIVER], [A, B], first_doubtful=1, consensus=[A, B, SLIVER]),
              _smear("Pre/b.jpg", [A, B], [A, (42, 41, 61, 60)], consensus=[A, B]),  # a box drawn a little apart
              _smear("Pro/c.jpg", [C], [C, B], consensus=[C])]                     # the second saw one cell more
    agree = bench.reading_agreement(smears)
    second = agree["second_against_first"]["all"]
    assert second["true_cells"] == 6 and second["detections"] == 6
    assert second["recall"] == round(5 / 6, 3) and second["precision"] == round(5 / 6, 3)
    assert second["count_exact_share"] == round(1 / 3, 3)
    assert second["count_within_doubt_share"] == round(2 / 3, 3)  # a: 2 lies within the sure 2 .. all 3
    assert agree["first_against_consensus"]["all"]["count_exact_share"] == 1.0
    assert agree["second_against_consensus"]["all"]["count_exact_share"] == round(1 / 3, 3)
    assert set(agree["second_against_first"]["per_class"]) == {"Pre", "Pro"}


def test_a_finder_against_both_readings(bench):
    smears = [_smear("Pre/a.jpg", [A, B, SLIVER], [A, B]), _smear("Pre/b.jpg", [A, B], [A, B]),
              _smear("Pro/c.jpg", [C], [C])]
    found = {"Pre/a.jpg": [A, B], "Pre/b.jpg": [A], "Pro/c.jpg": [C]}
    readings = bench.against_readings(smears, found)
    assert readings["second"]["all"]["count_exact_share"] == round(2 / 3, 3)  # exact against the second on a and c
    assert "consensus" not in readings  # no consensus reading given
    assert readings["count_equals_a_reading_share"] == round(2 / 3, 3)
    assert readings["smears_readings_agree"] == 2  # b and c: the readers count alike
    assert readings["count_exact_share_where_readings_agree"] == 0.5  # right on c, one short on b
    unread = [{k: v for k, v in smear.items() if k != "readings"} for smear in smears]
    assert bench.reading_agreement(unread) == {} and bench.against_readings(unread, found) == {}


def test_the_count_as_shown_keeps_the_boxes_on_smudges(bench):
    # the scoring leaves a box on a smudge out of the count; the apps' count line shows every box
    smudge = (150, 150, 175, 172)
    smear = _smear("Pre/a.jpg", [A, B], [A, B])
    smear["smudge"] = [smudge]
    smear["readings"]["second"]["smudge"] = [smudge]
    found = {"Pre/a.jpg": [A, B, (151, 150, 175, 171)]}
    readings = bench.against_readings([smear], found)
    second = readings["second"]["all"]
    assert second["count_exact_share"] == 1.0 and second["detections"] == 2
    assert second["count_exact_share_as_shown"] == 0.0 and second["count_within_one_share_as_shown"] == 1.0
    figures = bench._figures([{"true": 2, "doubtful": 0, "counted": 2, "matched": 2, "shown": 5}])
    assert figures["count_exact_share"] == 1.0 and figures["count_within_one_share_as_shown"] == 0.0


@pytest.fixture(scope="module")
def boxes_tool():
    return _script(REPO / "train" / "make_aria_boxes.py", "make_aria_boxes")


def _cell(box, kind="white", note=""):
    return {"box": box, "kind": kind, "note": note}


def test_disputes_keep_what_both_drew_and_hide_who_drew_the_rest(boxes_tool):
    first = [_cell(A), _cell(B, note="unsure pale"), _cell(SLIVER, note="border sliver"), _cell(C, "smudge")]
    second = [_cell((1, 1, 21, 21)), _cell(B), _cell((100, 100, 121, 119), "white")]
    agreed, items = boxes_tool.disputes("Pre/x.jpg", first, second)
    assert sorted((c["box"], c["kind"]) for c in agreed) == [((0, 0, 20, 20), "white"), (B, "white")]
    assert [c["note"] for c in agreed if c["box"] == B] == ["unsure pale"]
    assert sorted((c["box"], c["kind"]) for c in items) == [(SLIVER, "white"), (C, "smudge"),
                                                            ((100, 100, 121, 119), "white")]
    again = boxes_tool.disputes("Pre/x.jpg", list(reversed(first)), second)[1]
    assert [c["box"] for c in again] == [c["box"] for c in items]  # the numbering depends on the smear, not the order


def test_consensus_applies_every_decision_and_refuses_a_missing_one(boxes_tool):
    first = {"Pre/x.jpg": [_cell(A), _cell(SLIVER, note="border sliver"), _cell(C, "smudge")], "Pro/y.jpg": [_cell(B)]}
    second = {"Pre/x.jpg": [_cell(A), _cell((100, 100, 121, 119))], "Pro/y.jpg": []}
    items = {name: boxes_tool.disputes(name, first[name], second[name])[1] for name in first}
    number = lambda name, box: str(1 + [c["box"] for c in items[name]].index(box))
    decisions = {"Pre/x.jpg": [
        {"item": number("Pre/x.jpg", SLIVER), "decision": "white", "x0": "", "y0": "", "x1": "", "y1": "", "note": ""},
        {"item": number("Pre/x.jpg", C), "decision": "none", "x0": "", "y0": "", "x1": "", "y1": "", "note": ""},
        {"item": number("Pre/x.jpg", (100, 100, 121, 119)), "decision": "white", "x0": "99", "y0": "100", "x1": "121",
         "y1": "120", "note": "redrawn"},
        {"item": "add", "decision": "white", "x0": "200", "y0": "200", "x1": "224", "y1": "224", "note": "both missed"}],
        "Pro/y.jpg": [{"item": "1", "decision": "none", "x0": "", "y0": "", "x1": "", "y1": "", "note": "red cell"}]}
    rows = boxes_tool.consensus_rows(first, second, decisions)
    x = [(int(r["x0"]), int(r["y0"]), int(r["x1"]), int(r["y1"])) for r in rows if r["image"] == "Pre/x.jpg"]
    assert sorted(x) == sorted([A, SLIVER, (99, 100, 121, 120), (200, 200, 224, 224)])
    assert [r["kind"] for r in rows if r["image"] == "Pro/y.jpg"] == ["none"]
    decisions["Pre/x.jpg"] = decisions["Pre/x.jpg"][1:]
    with pytest.raises(ValueError, match="no decision on disputed item"):
        boxes_tool.consensus_rows(first, second, decisions)


def test_the_committed_consensus_is_what_the_readings_and_decisions_give(boxes_tool, tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "train" / "make_aria_boxes.py"), "consensus", "--out",
                          str(tmp_path / "consensus.csv")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "consensus.csv").read_text(encoding="utf-8") == \
        (REFERENCE / "boxes_consensus.csv").read_text(encoding="utf-8")


def test_the_detector_training_caches_its_networks_under_the_smears_scales():
    """A changed ruler brings the smears to other scales: the training must not read networks cached at the old ones
    (nor under another reading or another recipe)."""
    trainer = _script(REPO / "train" / "train_cell_detector.py", "train_cell_detector")
    from leuk.training.cell_detector import DetectorRecipe

    recipe = DetectorRecipe(seed=0)
    first, consensus = REFERENCE / "boxes.csv", REFERENCE / "boxes_consensus.csv"
    keys = {trainer.cache_key(recipe, first, [1.0, 0.87]), trainer.cache_key(recipe, first, [1.0, 0.9]),
            trainer.cache_key(recipe, consensus, [1.0, 0.87]), trainer.cache_key(DetectorRecipe(seed=1), first, [1.0, 0.87]),
            trainer.cache_key(DetectorRecipe(seed=0, smudges="ignored"), first, [1.0, 0.87])}
    assert len(keys) == 5
    assert trainer.cache_key(recipe, first, [1.0, 0.87]) == trainer.cache_key(recipe, first, [1.0, 0.87000001])


def test_a_detector_of_two_networks_trains_them_from_successive_seeds_each_cached_on_its_own(tmp_path):
    """``--members 2``: the first network is the one-network run's (same seed, same cache file), the second is trained
    from the next seed; read as one they are their mean."""
    import torch

    from leuk.cell_detector import CellCentreEnsemble, CellCentreNet
    from leuk.training.cell_detector import DetectorRecipe

    trainer = _script(REPO / "train" / "train_cell_detector.py", "train_cell_detector")
    rng = np.random.default_rng(0)
    smears = []
    for _ in range(3):
        rgb = np.full((64, 64, 3), 200, np.uint8)
        rgb[20:40, 20:40] = (120, 60, 160)  # one violet cell
        rgb = (rgb + rng.integers(0, 10, rgb.shape)).astype(np.uint8)
        smears.append({"work": rgb, "factor": 1.0, "white": [(20, 20, 40, 40)], "smudge": []})
    recipe = DetectorRecipe(steps=2, batch=2, crop=48)
    boxes = REFERENCE / "boxes_consensus.csv"
    one = trainer.fit_members(smears, recipe, 1, "test", tmp_path, boxes, [1.0] * 3, "fold0")
    assert isinstance(one, CellCentreNet)
    two = trainer.fit_members(smears, recipe, 2, "test", tmp_path, boxes, [1.0] * 3, "fold0")
    assert isinstance(two, CellCentreEnsemble) and len(two.members) == 2
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert len(cached) == 2 and cached[0].startswith("seed0-") and cached[1].startswith("seed1-")
    for (name, a), b in zip(one.state_dict().items(), two.members[0].state_dict().values()):
        assert torch.equal(a, b), name  # the first member is the one-network run's, read from its cache
    assert any(not torch.equal(a, b) for a, b in zip(two.members[0].state_dict().values(),
                                                     two.members[1].state_dict().values()))
