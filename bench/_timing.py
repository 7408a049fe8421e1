"""What every benchmark script times with: wall-clock runs of a call, and the machine's load."""

from __future__ import annotations

import os
import time
from typing import Any, Callable


def timed_runs(fn: Callable[[], Any], repeats: int, sync: Callable[[], None], *, warmup: int = 0) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones; ``sync`` waits for the
    device (``torch.cuda.synchronize``) so that asynchronous work is inside each timing."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none): CPU timings mean little above the
    number of threads used."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
