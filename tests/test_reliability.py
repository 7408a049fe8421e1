"""Reliability under load and crashes: many clients at once, and training killed with SIGKILL then resumed.

The load test is bounded (200 requests, 8 clients, loopback only) and records what the closing note reports:
errors, p50/p95 latency and the server's resident memory before and after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from test_app_api import CNMC_SAMPLES, free_port, save_tiny_models

REPO = Path(__file__).resolve().parents[1]
REQUESTS, CLIENTS = 200, 8
MAX_STEPS = 16

pytestmark = pytest.mark.slow


def test_load_200_requests_from_8_clients(tmp_path, monkeypatch, record_property):
    import psutil
    from gradio_client import Client, handle_file

    from leuk import serving

    models = save_tiny_models(tmp_path / "models")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    serving.set_registry(serving.ModelRegistry([models["cnmc"]]))
    import app

    demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True, **app.LAUNCH_OPTIONS)
    process = psutil.Process()
    try:
        assert not serving.warm_up()
        clients = [Client(url, verbose=False, download_files=str(tmp_path / f"dl{i}")) for i in range(CLIENTS)]
        warm = clients[0].predict([handle_file(str(CNMC_SAMPLES[0]))], models["cnmc"], api_name="/classify")
        assert warm[0]["label"]
        rss_before = process.memory_info().rss

        def one(i: int) -> tuple[float, str | None]:
            start = time.perf_counter()
            try:
                label, *_ = clients[i % CLIENTS].predict(
                    [handle_file(str(CNMC_SAMPLES[i % len(CNMC_SAMPLES)]))], models["cnmc"], api_name="/classify")
                return time.perf_counter() - start, None if label.get("label") else "no label"
            except Exception as err:  # every failure is counted, none may happen
                return time.perf_counter() - start, f"{type(err).__name__}: {err}"

        start = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            outcomes = list(pool.map(one, range(REQUESTS)))
        wall = time.perf_counter() - start
        rss_after = process.memory_info().rss
        for client in clients:
            client.close()
    finally:
        demo.close()
        serving.set_registry(None)

    latencies = np.array([t for t, _ in outcomes])
    errors = [e for _, e in outcomes if e]
    figures = {"requests": REQUESTS, "clients": CLIENTS, "errors": len(errors), "wall_s": round(wall, 1),
               "p50_s": round(float(np.percentile(latencies, 50)), 3),
               "p95_s": round(float(np.percentile(latencies, 95)), 3),
               "rss_before_mb": round(rss_before / 2**20), "rss_after_mb": round(rss_after / 2**20)}
    print("load figures:", json.dumps(figures))
    record_property("load", figures)
    assert not errors, errors[:3]
    assert rss_after - rss_before < 300 * 2**20, figures


def _train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "leuk", "train", "efficientnet-se-test", "--data", str(data), "--out", str(out),
            "--max-steps", str(MAX_STEPS), "--eval-steps", "2", "--batch-size", "8", "--seed", "0", "--quiet", *extra]


def test_training_resumes_after_sigkill(cnmc_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen(_train_command(cnmc_root, out), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not any((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
            assert victim.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = max(int(p.parent.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    assert killed_at < MAX_STEPS and not (out / "eval_results.json").exists()

    resumed = subprocess.run(_train_command(cnmc_root, out, "--resume"), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = json.loads(next((out / "checkpoints").glob(f"checkpoint-{MAX_STEPS}/trainer_state.json")).read_text())
    assert state["global_step"] == MAX_STEPS
    assert json.loads((out / "eval_results.json").read_text())["test"]["f1_weighted"] is not None
    print(f"killed after checkpoint {killed_at}, resumed to step {state['global_step']}")
