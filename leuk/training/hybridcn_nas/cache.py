"""The stage cache of a HybridCN-NAS run: each stage's result as a file, written atomically."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from leuk.errors import LeukError

__all__ = ["StageCache", "json_default"]


class StageCache:
    """Files of the stages under one folder, written atomically; ``run.json`` guards against mixing runs."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.folder / name

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    @contextlib.contextmanager
    def writing(self, name: str):
        from leuk.io import atomic_output

        with atomic_output(self.path(name)) as temporary:
            yield temporary

    def save_array(self, name: str, array: np.ndarray) -> None:
        with self.writing(name) as temporary, open(temporary, "wb") as handle:
            np.save(handle, array)

    def load_array(self, name: str) -> np.ndarray:
        return np.load(self.path(name))

    def save_json(self, name: str, payload: Any) -> None:
        with self.writing(name) as temporary:
            Path(temporary).write_text(json.dumps(payload, indent=2, default=json_default) + "\n", encoding="utf-8")

    def load_json(self, name: str) -> Any:
        return json.loads(self.path(name).read_text(encoding="utf-8"))

    def save_state(self, name: str, state: dict) -> None:
        import torch

        with self.writing(name) as temporary, open(temporary, "wb") as handle:
            torch.save(state, handle)

    def load_state(self, name: str) -> dict:
        import torch

        return torch.load(self.path(name), map_location="cpu", weights_only=True)

    def restore_module(self, module: Any, stem: str) -> dict[str, Any] | None:
        """A finished module stage: ``<stem>.pt`` loaded into ``module`` (left in eval mode) and ``<stem>.json``,
        its report, returned; ``None`` when the stage has not run yet."""
        if not self.has(f"{stem}.pt"):
            return None
        module.load_state_dict(self.load_state(f"{stem}.pt"))
        module.eval()
        return self.load_json(f"{stem}.json")

    def check_run(self, record: dict[str, Any], *, upgrade: Callable[[dict], dict] | None = None) -> None:
        """Write ``run.json`` or check that the stored one matches ``record`` (same data and options).
        ``upgrade`` maps a stored record of an older format to the current one first (rewritten when it then
        matches)."""
        if self.has("run.json"):
            stored = self.load_json("run.json")
            if upgrade is not None and upgrade(stored) != stored:
                stored = upgrade(stored)
                if stored == json.loads(json.dumps(record, default=json_default)):
                    self.save_json("run.json", stored)
            if stored != json.loads(json.dumps(record, default=json_default)):
                current = json.loads(json.dumps(record, default=json_default))
                changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
                if changed == ["options"]:
                    old, new = stored["options"], current["options"]
                    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise LeukError(
                    f"{self.folder} holds stages of a run with other settings ({', '.join(changed)}); "
                    "use another output folder or --restart"
                )
        else:
            self.save_json("run.json", record)


def json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (Path, tuple)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
