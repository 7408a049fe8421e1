"""Print how much of the synthetic EfficientNet-SE's attribution lands on the nucleus of synthetic cells.

    python train/check_demo_attribution.py     # assets/synthetic_models/efficientnet-se, 20 nucleus-evidence cells
    python train/check_demo_attribution.py --model ./my_run --cells 40 --class-evidence morphology

For each check of :data:`leuk.explain.EVIDENCE_CHECKS` it prints the positive attribution per pixel inside
the nucleus over outside, for the model and for the same architecture with random weights (the figures
behind ``tests/test_explain.py::test_demo_model_attributes_the_nucleus``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

#: The EfficientNet-SE trained on synthetic nucleus-evidence cells (train/make_efficientnet_se_demo.py): the
#: generator's nucleus masks say where the class evidence is; real cells have no such masks.
SYNTHETIC_MODEL = Path(__file__).resolve().parents[1] / "assets" / "synthetic_models" / "efficientnet-se"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SYNTHETIC_MODEL), help="model id, folder or demo:<name>")
    parser.add_argument("--cells", type=int, default=20, help="synthetic cells, half of each class (default 20)")
    parser.add_argument("--seed", type=int, default=11, help="seed of the cells (default 11, as the test)")
    parser.add_argument("--class-evidence", choices=("nucleus", "morphology"), default="nucleus",
                        help="where the cells' class shows (default: nucleus only)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from leuk.explain import find_gradcam_layer, synthetic_evidence_ratios
    from leuk.hub import load_model
    from leuk.models.fusion import module_name

    loaded = load_model(args.model, device="cpu")
    results = synthetic_evidence_ratios(loaded.model, loaded.processor, n_cells=args.cells, seed=args.seed,
                                        class_evidence=args.class_evidence)
    print(f"{args.model}: {args.cells} cells, seed {args.seed}, class evidence {args.class_evidence}; "
          f"Grad-CAM layer {module_name(loaded.model, find_gradcam_layer(loaded.model))}")
    print("| method | trained | random weights |\n|---|---|---|")
    for result in results:
        print(f"| {result.check.label} | {result.trained:.2f} | {result.random:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
