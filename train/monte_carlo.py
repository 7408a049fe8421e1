"""Monte Carlo validation as a script, alone or under ``torchrun`` (same options as ``leuk montecarlo``).

    python train/monte_carlo.py --data DIR --models efficientnet-se,resnet50 --protocol both --out runs/mc
    torchrun --nproc-per-node 4 train/monte_carlo.py --data DIR --models ... --mode finetune --out runs/mc

Under torchrun, rank ``r`` runs the iterations ``i`` with ``i % WORLD_SIZE == r`` and writes its own part
files; rank 0 waits for the others and merges them. Start one process per GPU: each rank sees only the GPU
of its ``LOCAL_RANK`` (ranks beyond the GPU count run on the CPU). A killed run resumes when the same
command is run again.
"""

from __future__ import annotations

import os
import sys


def pin_gpu_of_local_rank() -> None:
    """Narrow ``CUDA_VISIBLE_DEVICES`` to this rank's GPU (before torch starts CUDA), so that a per-rank
    training run uses one GPU and never wraps itself in DataParallel over the others."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[int(local_rank) % len(visible)] if visible else str(local_rank)


def main(argv: list[str] | None = None) -> int:
    pin_gpu_of_local_rank()
    from leuk.cli import main as leuk_main

    return leuk_main(["montecarlo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
