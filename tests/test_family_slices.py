"""A model family is one vertical slice: outside ``leuk/models/`` nothing branches on a family's name.

What the house says or does per family (card template, dataset names, image unit, default protocol, card
sections, ``leuk train`` targets) is asked of the :class:`leuk.models.family.ModelFamily` contract; a family's
``model_type`` string written as a literal anywhere else is a decision made outside its slice.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sources() -> list[Path]:
    """Every Python file of the house outside ``leuk/models/``: the package, ``app.py`` and the Streamlit app."""
    models = ROOT / "leuk" / "models"
    files = [path for path in sorted((ROOT / "leuk").rglob("*.py")) if models not in path.parents]
    files += [ROOT / "app.py", *sorted((ROOT / "streamlit_app").rglob("*.py"))]
    return [path for path in files if path.is_file() and "__pycache__" not in path.parts]


def test_no_family_name_string_outside_the_models_floor():
    from leuk.models import list_families

    names = [family.model_type for family in list_families()]
    assert {"efficientnet_se", "hybridcn_nas"} <= set(names)
    needles = [quote + name + quote for name in names for quote in ('"', "'")]
    hits = []
    for path in _sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            hits += [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for needle in needles if needle in line]
    assert not hits, ("a family's name string outside leuk/models/ (ask the ModelFamily contract instead):\n"
                      + "\n".join(hits))


def test_the_sources_walked_include_the_card_and_train_modules():
    walked = {path.relative_to(ROOT).as_posix() for path in _sources()}
    assert {"leuk/hub/cards.py", "leuk/hub/provenance.py", "leuk/cli/train.py", "app.py"} <= walked
    assert not any(name.startswith("leuk/models/") for name in walked)


def test_every_family_states_its_card_facts():
    from leuk.hub.cards import template_path
    from leuk.models import list_families
    from leuk.models.family import CARD_SECTIONS

    for family in list_families():
        assert family.title and family.real_data and family.synthetic_data and family.image_unit
        assert template_path(family.card_template).is_file()
        assert family.card_sections <= CARD_SECTIONS, family
        assert family.train_targets(), f"{family} has no leuk train target"


def test_train_targets_come_from_the_families():
    from leuk.cli.train import train_targets
    from leuk.models import get_family

    targets = train_targets()
    assert targets["hybridcn-nas"] == get_family("hybridcn_nas").train_command
    effse = get_family("efficientnet_se")
    assert set(effse.presets()) <= set(targets) and effse.train_target_defaults("resnet50") == {"preset": "resnet50"}


def test_the_headline_model_of_a_cross_validation_summary_is_the_familys_answer():
    """``leuk.hub.provenance`` asks the family which model of a ``cross_validation`` summary is its own (issue #29)
    instead of matching a name prefix of its own."""
    from leuk.hub.provenance import headline_of
    from leuk.models import get_family

    hybrid, single = get_family("hybridcn_nas"), get_family("efficientnet_se")
    names = ["plain CNN", "HybridCN-NAS lite", "HybridCN-NAS"]
    assert hybrid.headline_model(names) == "HybridCN-NAS lite"
    assert single.headline_model(names) is None
    record = {"cross_validation": {"summary": {"block": {
        "plain CNN": {"accuracy": {"mean": 0.5, "sd": 0.1}, "n_folds": 5},
        "HybridCN-NAS lite": {"accuracy": {"mean": 0.8, "sd": 0.05, "min": 0.7, "max": 0.9}, "n_folds": 5}}}}}
    headline = headline_of(record, hybrid)
    assert (headline.mean, headline.n_folds, headline.protocol) == (0.8, 5, "file-number-block")
    assert headline_of(record, single) is None and headline_of(record) is None


def test_the_streamlit_results_page_says_the_verdict_rule_of_leuk_verdict():
    from leuk import serving
    from leuk.verdict import rule_text

    assert "0.83" in rule_text(0.83) and serving.uncertainty_rule is rule_text
    page = (ROOT / "streamlit_app" / "views" / "predict.py").read_text(encoding="utf-8")
    assert "uncertainty_rule(" in page and "top probability below" not in page
