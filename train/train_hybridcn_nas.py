"""Train HybridCN-NAS with the same staged engine as ``leuk train hybridcn-nas``.

    python train/train_hybridcn_nas.py --data data/ALL --out runs/hybridcn-nas --preset hybridcn-nas --pretrained
    python train/train_hybridcn_nas.py --data /tmp/aria --out runs/hybrid-lite          # CPU, minutes

Every option of ``leuk train hybridcn-nas --help`` is accepted. An interrupted run resumes from its last
finished stage (``OUT/stages``); ``--restart`` starts over.
"""

import argparse
import sys

from leuk.cli.train_hybrid import add_arguments, run
from leuk.errors import LeukError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except LeukError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
