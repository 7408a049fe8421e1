"""Render the model card (``README.md``) of every bundled demo model, or of the folders given.

    python train/render_model_cards.py                       # every folder under assets/demo_models/
    python train/render_model_cards.py runs/real-effse/fold_0

Cards come from ``model_cards/*.md.j2`` through :func:`leuk.hub.cards.write_model_card`: training data (real
or synthetic, read from ``eval_results.json`` / ``config.json``), figures, the cross-subject tables when
``eval_results.json`` has a ``cross_subject`` block, and limits. The apps' Models views show this file. The
scripts that save demo folders call the same function; run this after editing a template or an eval record.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="model folders (default: every bundled demo)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from leuk.hub.cards import write_demo_cards, write_model_card
    from leuk.hub.provenance import folder_training_summary

    written = [write_model_card(folder) for folder in args.folders] if args.folders else write_demo_cards()
    for path in written:
        summary = folder_training_summary(path.parent)
        print(f"{path}: {summary.text if summary is not None else 'no config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
