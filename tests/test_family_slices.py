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
