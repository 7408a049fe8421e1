"""The remote code committed in the demo model folders is a copy of leuk/models, byte for byte."""

from __future__ import annotations

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
        "(make demo-assets) or re-save it, so the Hub's remote code matches leuk")
