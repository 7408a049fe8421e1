"""The remote code of a model folder is a copy of leuk/models, byte for byte: written by one function
(leuk.hub.save.copy_remote_code, called by save_model_folder), and true in every committed folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMOS = REPO / "assets" / "demo_models"
#: every committed model folder: the bundled demos and the synthetic model of the attribution check
COPIES = sorted([*DEMOS.glob("*/*.py"), *(REPO / "assets" / "synthetic_models").glob("*/*.py")])


def test_every_demo_folder_carries_its_family_code():
    assert {path.parent.name for path in COPIES} >= {path.name for path in DEMOS.iterdir() if path.is_dir()}


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_remote_code_equals_its_source(copy: Path):
    sources = list((REPO / "leuk" / "models").glob(f"*/{copy.name}"))
    assert len(sources) == 1, f"{copy.name} has no single source under leuk/models"
    assert copy.read_bytes() == sources[0].read_bytes(), (
        f"{copy.relative_to(REPO)} differs from {sources[0].relative_to(REPO)}: regenerate the demo folder "
        "(make demo-assets) or re-copy it with leuk.hub.save.copy_remote_code(folder) when the model's "
        "behaviour is unchanged, so the Hub's remote code matches leuk")


@pytest.mark.parametrize("folder", sorted({path.parent for path in COPIES}), ids=lambda p: p.name)
def test_committed_folder_carries_exactly_its_family_files(folder: Path):
    """No standalone file missing (the Hub load would fail) and none left over from an older layout."""
    from leuk.hub.save import remote_code_sources

    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"]
    assert sorted(p.name for p in folder.glob("*.py")) == [p.name for p in remote_code_sources(model_type)]


def test_copy_remote_code_writes_the_sources_byte_for_byte(tmp_path):
    from leuk.hub.save import copy_remote_code, remote_code_sources

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hybridcn_nas"}), encoding="utf-8")
    (tmp_path / "modeling_hybridcn_nas.py").write_text("# an outdated copy\n", encoding="utf-8")
    written = copy_remote_code(tmp_path)
    sources = remote_code_sources("hybridcn_nas")
    assert [p.name for p in written] == [p.name for p in sources]
    assert {"modeling_hybridcn_nas.py", "stain_hybridcn_nas.py", "segmentation_hybridcn_nas.py"} <= {
        p.name for p in written}
    assert all((tmp_path / src.name).read_bytes() == src.read_bytes() for src in sources)
    assert "family.py" not in {p.name for p in written}  # leuk's own view of a family is not remote code


def test_save_model_folder_writes_the_family_code(tmp_path):
    from leuk.hub.save import remote_code_sources, save_model_folder
    from leuk.models import create_model
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor

    model = create_model("efficientnet-se-test")
    save_model_folder(model, EfficientNetSEImageProcessor.from_model_config(model.config), tmp_path)
    sources = remote_code_sources("efficientnet_se")
    assert sorted(p.name for p in tmp_path.glob("*.py")) == [p.name for p in sources]
    assert all((tmp_path / src.name).read_bytes() == src.read_bytes() for src in sources)
