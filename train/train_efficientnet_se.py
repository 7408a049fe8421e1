"""Train EfficientNet-SE (or a baseline preset) with the same engine as ``leuk train``; distributed-ready.

    python train/train_efficientnet_se.py --data data/C-NMC --out runs/effnet-se
    torchrun --nproc_per_node=2 train/train_efficientnet_se.py --data data/C-NMC --out runs/effnet-se
    accelerate launch train/train_efficientnet_se.py --model resnet50 --data data/C-NMC --out runs/resnet50

Every option of ``leuk train efficientnet-se --help`` is accepted, plus ``--model`` (a preset name).
"""

import argparse
import sys

from leuk.cli.train import ENGINE_TARGETS, add_engine_arguments, run_engine_target
from leuk.errors import LeukError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(ENGINE_TARGETS), default="efficientnet-se",
                        help="model preset to train")
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    args.preset = args.model
    try:
        return run_engine_target(args)
    except LeukError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
