"""One definition per option: the run defaults of leuk.defaults and the preset names of the registry reach every
engine, experiment and command (no torch work; the parsers and dataclasses only)."""

from __future__ import annotations

import inspect
import json

import pytest

from leuk.defaults import SEED, TEST_SIZE, VAL_SIZE


def _parse(argv: list[str]):
    from leuk.cli import build_parser

    return build_parser(argv[0]).parse_args(argv)


def test_every_engine_and_experiment_takes_the_shared_defaults():
    from leuk.data.splits import leave_one_rare_subject_out, monte_carlo_splits, train_val_test_split
    from leuk.experiments.ablation import run_ablation
    from leuk.experiments.cross_subject import collect_cross_subject, cross_subject_evaluation
    from leuk.experiments.montecarlo import run_monte_carlo
    from leuk.training.efficientnet_se import TrainOptions
    from leuk.training.hybridcn_nas import HybridTrainOptions

    for options in (TrainOptions(data="", out=""), HybridTrainOptions()):
        assert (options.seed, options.test_size, options.val_size) == (SEED, TEST_SIZE, VAL_SIZE)
    for function in (train_val_test_split, monte_carlo_splits, run_monte_carlo):
        parameters = inspect.signature(function).parameters
        assert (parameters["test_size"].default, parameters["val_size"].default) == (TEST_SIZE, VAL_SIZE)
    for function in (leave_one_rare_subject_out, cross_subject_evaluation, collect_cross_subject):
        assert inspect.signature(function).parameters["val_size"].default == VAL_SIZE
    for function in (run_monte_carlo, run_ablation):
        assert inspect.signature(function).parameters["seed"].default == SEED


@pytest.mark.parametrize("argv", [
    ["train", "efficientnet-se", "--data", "d", "--out", "o"],
    ["train", "hybridcn-nas", "--data", "d", "--out", "o"],
    ["montecarlo"],
])
def test_every_command_takes_the_shared_defaults(argv):
    args = _parse(argv)
    assert (args.seed, args.test_size, args.val_size) == (SEED, TEST_SIZE, VAL_SIZE)


def test_ablate_seeds_its_draws_with_the_shared_seed():
    assert _parse(["ablate", "--run", "r"]).seed == SEED


def test_hybrid_presets_are_the_registry_names_and_the_short_names_still_work():
    from leuk.models import get_family
    from leuk.training.hybridcn_nas import PRESET_ALIASES, PRESET_DEFAULTS, PRESETS, HybridTrainOptions

    assert set(PRESETS) == set(PRESET_DEFAULTS) == set(get_family("hybridcn_nas").presets())
    assert HybridTrainOptions().preset == "hybridcn-nas-lite"
    for short, name in PRESET_ALIASES.items():
        assert HybridTrainOptions(preset=short).resolved() == HybridTrainOptions(preset=name).resolved()
        assert _parse(["train", "hybridcn-nas", "--data", "d", "--out", "o", "--preset", short]).preset == name
    assert _parse(["train", "hybridcn-nas", "--data", "d", "--out", "o", "--preset", "hybridcn-nas"]).preset == (
        "hybridcn-nas")
    with pytest.raises(SystemExit):
        _parse(["train", "hybridcn-nas", "--data", "d", "--out", "o", "--preset", "hybridcn-nas-huge"])


def test_a_stage_cache_recorded_with_a_short_preset_name_stays_valid(tmp_path):
    from leuk.errors import LeukError
    from leuk.training.hybridcn_nas import HybridTrainOptions, StageCache
    from leuk.training.hybridcn_nas.options import upgraded_fingerprint

    options = HybridTrainOptions(preset="lite").resolved()
    record = {"data": "abc", "n_images": 3, "options": options.fingerprint()}
    older = json.loads(json.dumps(record))
    older["options"]["preset"] = "lite"
    cache = StageCache(tmp_path)
    cache.save_json("run.json", older)

    def upgrade(stored):
        return {**stored, "options": upgraded_fingerprint(stored["options"])}

    with pytest.raises(LeukError, match="preset"):
        cache.check_run(record)
    cache.check_run(record, upgrade=upgrade)
    assert cache.load_json("run.json")["options"]["preset"] == "hybridcn-nas-lite"
    other = {**record, "options": {**record["options"], "seed": SEED + 1}}
    with pytest.raises(LeukError, match="seed"):
        cache.check_run(other, upgrade=upgrade)


def test_a_stage_cache_recorded_before_branch_loss_weight_stays_valid(tmp_path):
    from leuk.training.hybridcn_nas import HybridTrainOptions, StageCache
    from leuk.training.hybridcn_nas.options import upgraded_fingerprint

    record = {"data": "abc", "n_images": 3, "options": HybridTrainOptions().resolved().fingerprint()}
    older = json.loads(json.dumps(record))
    del older["options"]["branch_loss_weight"]
    cache = StageCache(tmp_path)
    cache.save_json("run.json", older)
    cache.check_run(record, upgrade=lambda stored: {**stored, "options": upgraded_fingerprint(stored["options"])})
    assert cache.load_json("run.json")["options"]["branch_loss_weight"] == 0.0


def test_efficientnet_se_options_have_one_source_of_defaults():
    """``leuk train``, ``train/train_efficientnet_se.py`` and ``train/train_real_efficientnet_se.py`` parse one
    option set, :class:`TrainOptions`: its field defaults, or a recipe's values where a script fixes them."""
    import argparse
    import importlib.util
    from pathlib import Path

    from leuk.training.efficientnet_se import TrainOptions
    from leuk.training.options import TRAIN_DEFAULTS, add_train_options, options_from_args

    parser = argparse.ArgumentParser()
    add_train_options(parser)
    args = parser.parse_args(["--data", "d", "--out", "o"])
    assert options_from_args(args, model="efficientnet-se") == TrainOptions(data="d", out="o")
    parsed = {name: getattr(args, name) for name in TRAIN_DEFAULTS if hasattr(args, name)}
    assert parsed == {name: TRAIN_DEFAULTS[name] for name in parsed} and len(parsed) > 30

    path = Path(__file__).resolve().parents[1] / "train" / "train_real_efficientnet_se.py"
    spec = importlib.util.spec_from_file_location("train_real_efficientnet_se", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    options = script.recipe_options(script.build_parser().parse_args(["--data", "d", "--work", "w", "--lr", "3e-4"]))
    recipe = {**script.RECIPE, "lr": 3e-4}
    assert options == TrainOptions(data="d", out="w", dataset="cnmc", synthetic=False, **recipe)
