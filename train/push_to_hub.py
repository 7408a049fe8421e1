"""Publish a trained model (and Monte Carlo results) to the Hugging Face Hub: a thin wrapper of ``leuk push``.

    python train/push_to_hub.py --model runs/effnet/best --repo org/leuk-efficientnet-se --tag v1.0 --dry-run
"""

import sys

from leuk.cli import main

if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
