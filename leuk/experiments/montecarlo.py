"""Monte Carlo validation: N random patient-grouped splits, every model on the same split (paired design).

Each iteration ``i`` draws one stratified, subject-grouped split (by default test 20%, validation 15% of each
label's subjects, :mod:`leuk.defaults`; ``test_size``/``val_size`` change it, as fractions of each label's
subjects) from
:func:`leuk.data.splits.monte_carlo_splits`; every model is trained and tested on that same split, so model
scores are paired by iteration. With ``protocol="both"`` each iteration also runs the image-level protocol
on the same seed and the summary reports the leakage gap (image − patient).

Modes:

- ``features``: each model's backbone features are extracted once and cached
  (:mod:`leuk.experiments.features`); per iteration a light head (logistic or small MLP on standardised
  pooled features, class-weighted loss, early stopping on the iteration's validation loss, temperature
  fitted on validation) is trained and tested. Seeded, deterministic, fast on a CPU.
- ``finetune``: the whole model (a preset) is trained per iteration on the same split by its family's
  training engine (``fit_for_monte_carlo`` of :attr:`leuk.models.family.ModelFamily.engine`; best
  checkpoint and temperature chosen on validation only; slow, for GPUs). A family that cannot be retrained
  per iteration says why (:meth:`~leuk.models.family.ModelFamily.finetune_refusal`: HybridCN-NAS trains in
  stages) and the run refuses to start.

Output folder:

- ``run.json``: the run's configuration (a later call with the same folder must match it except for
  ``n_iter``: iteration ``i`` has the same seed whatever ``n_iter`` is, so a run can be extended);
- ``parts/``: one parquet file per finished (iteration, protocol, model), written atomically; a killed run
  resumes by skipping them;
- ``results.parquet``: one row per (iteration, protocol, model), sorted in that order; columns
  :data:`ID_COLUMNS`, every scalar metric of :func:`leuk.metrics.classification_metrics` (float, NaN when
  undefined) and ``confusion_matrix`` (JSON);
- ``summary.json``/``summary.md``: :func:`summarize`; ``*.png`` and ``plot_data.json``: :mod:`leuk.experiments.plots`.

Split hashes: ``train_hash``/``val_hash``/``test_hash`` are :func:`leuk.data.splits.patient_set_hash` of the
split's patient ids (patient protocol) or of its image keys ``"<patient_id>/<file name>"`` (image protocol).
No patient list is stored: the row's ``seed`` regenerates the split with
``train_val_test_split(labels, groups, test_size=..., val_size=..., seed=seed, protocol=protocol)`` on the
same dataset, with the sizes ``run.json`` records under ``split`` (runs older than that record used 0.2 and
0.12: :data:`leuk.experiments.summary.UNRECORDED_SPLIT`), and :func:`split_hashes` of it reproduces the three
hashes.

Distributed: under ``torchrun`` (``RANK``/``WORLD_SIZE``) rank ``r`` runs the iterations ``i`` with
``i % world_size == r`` and writes its own parts. Rank 0 extracts the features for everyone and merges when
every part exists: after a barrier when a process group is initialised, else by watching the parts folder
for ``wait_for_ranks`` seconds (``train/monte_carlo.py`` and ``leuk montecarlo`` under torchrun wait a day);
:func:`merge_results` (``leuk montecarlo --merge``) merges later otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from leuk.data.splits import PROTOCOLS
from leuk.defaults import SEED
from leuk.io import atomic_output
from leuk.experiments.light_head import HeadConfig, fit_head
from leuk.experiments.summary import (
    FROZEN_RANDOM_NOTE,
    HEADLINE_METRICS,
    ID_COLUMNS,
    TEST_SIZE,
    VAL_SIZE,
    MonteCarloError,
    describe_run,
    json_ready,
    metric_columns,
    paired_values,
    summarize,
    summary_markdown,
)

__all__ = [
    "FROZEN_RANDOM_NOTE",
    "HEADLINE_METRICS",
    "ID_COLUMNS",
    "TEST_SIZE",
    "VAL_SIZE",
    "PROTOCOLS",
    "HeadConfig",
    "IncompleteRunError",
    "MonteCarloError",
    "MonteCarloRun",
    "describe_run",
    "finetune_engine",
    "fit_head",
    "json_ready",
    "load_parts",
    "merge_results",
    "metric_columns",
    "paired_values",
    "run_monte_carlo",
    "split_hashes",
    "summarize",
    "summary_markdown",
]

RUN_FILE, RESULTS_FILE, SUMMARY_JSON, SUMMARY_MD, PARTS_DIR = (
    "run.json", "results.parquet", "summary.json", "summary.md", "parts")
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                       "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
#: Seconds between two looks at the parts folder while rank 0 waits for the other ranks.
RANK_POLL_S = 5.0

Mode = Literal["features", "finetune"]
Protocol = Literal["patient", "image", "both"]


@dataclass
class MonteCarloRun:
    """What :func:`run_monte_carlo` returns. ``results``/``summary`` are ``None`` on ranks that do not merge
    or while parts are missing (``complete`` is then False)."""

    out: Path
    results: pd.DataFrame | None
    summary: dict[str, Any] | None
    complete: bool
    extraction_s: float = 0.0
    iterations_s: float = 0.0
    parts_written: int = 0
    parts_skipped: int = 0
    timings: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- helpers

def _protocols(protocol: str) -> tuple[str, ...]:
    if protocol == "both":
        return PROTOCOLS
    if protocol not in PROTOCOLS:
        raise MonteCarloError(f"unknown protocol {protocol!r}: use patient, image or both")
    return (protocol,)


def _derived_seed(iteration_seed: int, model: str) -> int:
    """A head/training seed that depends only on the iteration seed and the model name (stable across runs)."""
    sequence = np.random.SeedSequence([int(iteration_seed), zlib.crc32(model.encode())])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def _part_name(iteration: int, protocol: str, model: str) -> str:
    from leuk.experiments.features import slug

    return f"{iteration:05d}-{protocol}-{slug(model)}-{zlib.crc32(model.encode()):08x}.parquet"


def _distributed_context(rank: int | None, world_size: int | None) -> tuple[int, int, bool]:
    """(rank, world size, process group initialised) from the arguments or torchrun's environment."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
    if not 0 <= rank < world_size:
        raise MonteCarloError(f"rank {rank} is outside a world of size {world_size}")
    initialised = False
    if world_size > 1:
        try:
            import torch.distributed as dist

            initialised = dist.is_available() and dist.is_initialized()
        except ImportError:
            pass
    return rank, world_size, initialised


def _barrier(initialised: bool) -> None:
    if initialised:
        import torch.distributed as dist

        dist.barrier()


def _write_json(path: Path, payload: Any) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def split_hashes(split: Any, protocol: str, patient_ids: Sequence[str], image_keys: Sequence[str]) -> dict[str, str]:
    """The ``train_hash``/``val_hash``/``test_hash`` of a split (see the module docstring)."""
    from leuk.data.splits import patient_set_hash

    keys = np.asarray(patient_ids if protocol == "patient" else image_keys, dtype=object)
    return {f"{part}_hash": patient_set_hash([str(k) for k in keys[np.asarray(getattr(split, part))]])
            for part in ("train", "val", "test")}


def _image_keys(dataset: Any, patient_ids: Sequence[str]) -> list[str]:
    if "path" in dataset.column_names:
        paths = list(dataset.select_columns(["path"])["path"])
        return [f"{patient}/{os.path.basename(str(path))}" for patient, path in zip(patient_ids, paths)]
    return [f"{patient}/#{index}" for index, patient in enumerate(patient_ids)]


def _label_names(dataset: Any, labels: np.ndarray) -> list[str]:
    feature = dataset.features.get("label") if hasattr(dataset, "features") else None
    names = getattr(feature, "names", None)
    return [str(n) for n in names] if names else [str(i) for i in range(int(labels.max()) + 1)]


# ----------------------------------------------------------------------------------------- finetune mode

@contextlib.contextmanager
def _single_process_environment() -> Iterator[None]:
    """Hide torchrun's variables while one rank trains on its own: the Trainer must not join the other
    ranks (they train other iterations)."""
    saved = {key: os.environ.pop(key) for key in _TORCHRUN_VARIABLES if key in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def finetune_engine(model: str) -> Any:
    """The training engine that trains preset ``model`` in ``finetune`` mode (its family's, through the
    :class:`leuk.models.family.ModelFamily` contract); :class:`MonteCarloError` with the family's reason
    when it cannot."""
    from leuk.models import family_of_preset, list_models

    if model not in list_models():
        raise MonteCarloError(f"finetune mode trains presets (`leuk info` lists them); {model!r} is not one "
                              "(a trained model can be compared in features mode)")
    family = family_of_preset(model)
    refusal = family.finetune_refusal()
    if refusal:
        raise MonteCarloError(f"{model}: {refusal}")
    return family.engine_module()


def _finetune_probabilities(model: str, dataset: Any, split: Any, *, seed: int, image_size: int | None,
                            batch_size: int, pretrained: bool, device: str | None, options: dict[str, Any],
                            run_dir: Path) -> np.ndarray:
    """Train preset ``model`` on one iteration's split with its engine's ``fit_for_monte_carlo`` (selection and
    calibration on validation only) and return its test probabilities through :class:`leuk.inference.Predictor`."""
    from leuk.inference import Predictor

    engine = finetune_engine(model)
    with _single_process_environment():
        fit = engine.fit_for_monte_carlo(
            model, dataset, train=split.train, val=split.val, seed=int(seed), output_dir=run_dir,
            image_size=image_size, batch_size=batch_size, pretrained=pretrained, device=device, **options)
    paths = [str(p) for p in dataset.select_columns(["path"])["path"]]
    predictor = Predictor(fit.model, fit.processor, device=device, batch_size=batch_size)
    return predictor.probability_matrix([paths[i] for i in np.asarray(split.test, dtype=np.int64)])


# ----------------------------------------------------------------------------------------------- running

def _metric_row(metrics: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in metrics.items():
        if key == "n" or isinstance(value, bool):
            continue
        if value is None or isinstance(value, (int, float, np.integer, np.floating)):
            row[key] = math.nan if value is None else float(value)
    row["confusion_matrix"] = json.dumps(metrics["confusion_matrix"])
    return row


def _read_run_config(out: Path) -> dict[str, Any] | None:
    path = out / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise MonteCarloError(f"{path} is not valid JSON ({err}); remove it or use another --out") from err


def _check_or_write_config(out: Path, config: dict[str, Any]) -> None:
    existing = _read_run_config(out)
    if existing is not None:
        fixed = {k: v for k, v in config.items() if k != "n_iter"}
        old = {k: v for k, v in existing.items() if k != "n_iter"}
        if json_ready(fixed) != old:
            changed = sorted(k for k in set(fixed) | set(old) if json_ready(fixed).get(k) != old.get(k))
            raise MonteCarloError(
                f"{out} holds a different Monte Carlo run (differs in: {', '.join(changed)}); use another --out")
    _write_json(out / RUN_FILE, config)


def _load(data: Any, dataset_kind: str, patients_csv: str | os.PathLike | None) -> tuple[Any, Path | None]:
    if not isinstance(data, (str, os.PathLike)):
        return data, None
    from leuk.data import load_aria, load_cnmc

    if dataset_kind == "cnmc":
        return load_cnmc(data), Path(data)
    if dataset_kind == "aria":
        return load_aria(data, patients_csv), Path(data)
    raise MonteCarloError(f"unknown dataset kind {dataset_kind!r}: use cnmc or aria")


def _check_models(models: Sequence[str], reference: str | None) -> tuple[list[str], str]:
    names = [str(m).strip() for m in models]
    if not names or any(not m for m in names):
        raise MonteCarloError("give at least one model")
    twice = sorted({m for m in names if names.count(m) > 1})
    if twice:
        raise MonteCarloError(f"models listed twice: {', '.join(twice)}")
    reference = names[0] if reference is None else str(reference).strip()
    if reference not in names:
        raise MonteCarloError(f"reference model {reference!r} is not one of the models ({', '.join(names)})")
    return names, reference


def _looks_synthetic(data_root: Path | None) -> bool | None:
    """True for a folder written by :mod:`leuk.data.synthetic`, None when only a Dataset was given."""
    if data_root is None:
        return None
    from leuk.training.efficientnet_se import looks_synthetic

    return looks_synthetic(data_root)


def run_monte_carlo(
    data: Any,
    models: Sequence[str],
    out: str | os.PathLike,
    *,
    dataset_kind: str = "cnmc",
    patients_csv: str | os.PathLike | None = None,
    reference: str | None = None,
    mode: Mode = "features",
    n_iter: int = 100,
    protocol: Protocol = "patient",
    seed: int = SEED,
    test_size: float = TEST_SIZE,
    val_size: float = VAL_SIZE,
    image_size: int | None = None,
    batch_size: int = 32,
    pretrained: bool = False,
    head: HeadConfig | None = None,
    finetune_options: dict[str, Any] | None = None,
    feature_cache: str | os.PathLike | None = None,
    device: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    on_part_written: Callable[[int, str, str], None] | None = None,
    progress: bool = True,
    plots: bool = True,
    wait_for_ranks: float | None = None,
) -> MonteCarloRun:
    """Run (or resume) a Monte Carlo experiment and, when complete, write the merged results.

    ``data`` is a dataset folder (loaded with :func:`leuk.data.load_cnmc` or, for ``dataset_kind="aria"``,
    :func:`leuk.data.load_aria` with ``patients_csv``) or an already loaded :class:`datasets.Dataset` with
    columns ``label`` (ClassLabel), ``patient_id`` and ``path`` (or ``image``). ``models`` are preset
    names (:func:`leuk.models.list_models`) or model specs (:func:`leuk.hub.load_model`); ``reference``
    (default the first) is the model every other one is tested against. ``feature_cache`` defaults to
    ``<out>/feature_cache``. ``on_part_written(iteration, protocol, model)`` is called after each part file
    is on disk (progress reporting, tests that interrupt a run). ``rank``/``world_size`` default to
    torchrun's ``RANK``/``WORLD_SIZE``. Without an initialised process group, ``wait_for_ranks`` (seconds)
    lets rank 0 wait for the other ranks' parts before merging, and the other ranks wait for rank 0's
    feature cache; ``None`` means no waiting (rank 0 merges only if every part exists).
    ``test_size``/``val_size`` are fractions of each label's subjects
    (:func:`leuk.data.splits.train_val_test_split`); with few subjects of one class, raise ``val_size`` until
    the validation part holds one of them (C-NMC's real pool, 3 HEM subjects: ``val_size=0.2`` gives one
    HEM subject each to train, validation and test; 0.12 or the default 0.15 gives validation none).
    See the module docstring for the rest.
    """
    models, reference = _check_models(models, reference)
    if mode not in ("features", "finetune"):
        raise MonteCarloError(f"unknown mode {mode!r}: use features or finetune")
    if mode == "finetune":
        for model in models:
            finetune_engine(model)  # refuses, before any work, a model its family cannot retrain
    if int(n_iter) < 1:
        raise MonteCarloError("n_iter must be at least 1")
    test_size, val_size = float(test_size), float(val_size)
    if not (0 < test_size < 1 and 0 <= val_size < 1 and test_size + val_size < 1):
        raise MonteCarloError(f"test_size and val_size must be fractions with a sum below 1, got {test_size}, "
                              f"{val_size}")
    protocols = _protocols(protocol)
    head = head or HeadConfig()
    dataset, data_root = _load(data, dataset_kind, patients_csv)
    rank, world_size, distributed = _distributed_context(rank, world_size)
    out = Path(out)
    parts_dir = out / PARTS_DIR
    parts_dir.mkdir(parents=True, exist_ok=True)

    from leuk.data.splits import monte_carlo_splits
    from leuk.experiments.features import data_fingerprint

    started = time.perf_counter()
    labels = np.asarray(list(dataset["label"]), dtype=np.int64)
    patient_ids = [str(p) for p in dataset["patient_id"]]
    label_names = _label_names(dataset, labels)
    image_keys = _image_keys(dataset, patient_ids)
    data_hash = data_fingerprint(dataset)
    config = {
        "models": models, "reference": reference, "mode": mode, "protocol": protocol, "seed": int(seed),
        "n_iter": int(n_iter), "image_size": None if image_size is None else int(image_size),
        "pretrained": bool(pretrained),
        "label_names": label_names, "n_images": len(labels), "n_patients": len(set(patient_ids)),
        "data_hash": data_hash,
        "head": asdict(head) if mode == "features" else None,
        "finetune_options": dict(finetune_options or {}) if mode == "finetune" else None,
        "dataset_kind": dataset_kind if data_root is not None else None,
        "synthetic": _looks_synthetic(data_root),
        "split": {"test_size": test_size, "val_size": val_size,
                  "val_share_of_rest": round(val_size / (1 - test_size), 10),
                  "grouped_by": "patient_id", "generator": "leuk.data.splits.monte_carlo_splits"},
    }
    if rank == 0:
        _check_or_write_config(out, config)
    _barrier(distributed)
    if rank != 0:
        _check_or_write_config(out, config)

    splits = {p: list(monte_carlo_splits(labels, patient_ids, n_iter=int(n_iter), seed=int(seed), protocol=p,
                                         test_size=test_size, val_size=val_size))
              for p in protocols}
    seeds_by_protocol = {p: [s for _, s, _ in splits[p]] for p in protocols}
    if len({tuple(v) for v in seeds_by_protocol.values()}) != 1:
        raise MonteCarloError("the split generator gave different iteration seeds per protocol")
    done = {path.name for path in parts_dir.glob("*.parquet")}
    tasks = [(iteration, p, model) for p in protocols for iteration, _, _ in splits[p]
             if iteration % world_size == rank for model in models]
    tasks.sort(key=lambda task: (task[0], PROTOCOLS.index(task[1]), models.index(task[2])))
    todo = [task for task in tasks if _part_name(*task) not in done]
    setup_s = time.perf_counter() - started

    import torch

    from leuk.devices import choose_device

    device = device or choose_device()
    if world_size > 1 and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % max(torch.cuda.device_count(), 1)}"

    # Features: extracted once per model. Rank 0 extracts for every rank; the others read its cache (after a
    # barrier, or by polling when ``wait_for_ranks`` is set) or, failing that, extract themselves.
    extraction_started = time.perf_counter()
    features: dict[str, np.ndarray] = {}
    if mode == "features":
        from leuk.experiments.features import cached_features

        cache_dir = Path(feature_cache) if feature_cache else out / "feature_cache"
        all_tasks = [(i, p, m) for p in protocols for i in range(int(n_iter)) for m in models]
        needed_by_any = [m for m in models if any(t[2] == m and _part_name(*t) not in done for t in all_tasks)]
        needed = [m for m in models if any(task[2] == m for task in todo)]

        def extract(names: Sequence[str], wait_s: float | None = None) -> None:
            for model in names:
                features[model], _, _ = cached_features(
                    model, dataset, cache_dir, image_size=image_size, batch_size=batch_size,
                    pretrained=pretrained, init_seed=int(seed), device=device, data_hash=data_hash,
                    progress=progress, wait_s=wait_s)

        if rank == 0:
            extract(needed_by_any if world_size > 1 else needed)
        _barrier(distributed)
        if rank != 0:
            extract(needed, wait_s=None if distributed else wait_for_ranks)
    extraction_s = time.perf_counter() - extraction_started

    from tqdm.auto import tqdm

    from leuk.metrics import classification_metrics

    iterations_started = time.perf_counter()
    split_lookup = {(p, it): (s, split) for p in protocols for it, s, split in splits[p]}
    written = 0
    for iteration, protocol_name, model in tqdm(todo, desc=f"monte carlo (rank {rank})" if world_size > 1
                                                else "monte carlo", unit="fit", disable=not progress):
        iteration_seed, split = split_lookup[(protocol_name, iteration)]
        train, val, test = (np.asarray(split.train), np.asarray(split.val), np.asarray(split.test))
        if mode == "features":
            probs, _ = fit_head(features[model][train], labels[train], features[model][val], labels[val],
                                features[model][test], len(label_names), head,
                                _derived_seed(iteration_seed, model))
            metrics = classification_metrics(labels[test], probs, label_names)
        else:
            probs = _finetune_probabilities(
                model, dataset, split, seed=_derived_seed(iteration_seed, model), image_size=image_size,
                batch_size=batch_size, pretrained=pretrained, device=device, options=dict(finetune_options or {}),
                run_dir=out / "finetune" / f"rank{rank}")
            metrics = classification_metrics(labels[test], probs, label_names)
        row = {"iteration": iteration, "seed": int(iteration_seed), "model": model, "protocol": protocol_name,
               **split_hashes(split, protocol_name, patient_ids, image_keys),
               "n_train": len(train), "n_val": len(val), "n_test": len(test), **_metric_row(metrics)}
        part = parts_dir / _part_name(iteration, protocol_name, model)
        with atomic_output(part) as temporary:
            pd.DataFrame([row]).to_parquet(temporary, index=False)
        written += 1
        if on_part_written is not None:
            on_part_written(iteration, protocol_name, model)
    iterations_s = time.perf_counter() - iterations_started

    _barrier(distributed)
    run = MonteCarloRun(out=out, results=None, summary=None, complete=False, extraction_s=extraction_s,
                        iterations_s=iterations_s, parts_written=written, parts_skipped=len(tasks) - len(todo))
    if rank == 0:
        merged = _merge_when_ready(out, plots=plots, wait_s=wait_for_ranks if world_size > 1 and not distributed
                                   else None, may_be_incomplete=world_size > 1 and not distributed)
        if merged is not None:
            run.results, run.summary = merged
            run.complete = True
    run.timings = {"setup_s": setup_s, "extraction_s": extraction_s, "iterations_s": iterations_s,
                   "total_s": time.perf_counter() - started}
    return run


# ----------------------------------------------------------------------------------------------- merging

class IncompleteRunError(MonteCarloError):
    """Some (iteration, protocol, model) parts are missing: other ranks are still running or were stopped."""


def _merge_when_ready(out: Path, *, plots: bool, wait_s: float | None,
                      may_be_incomplete: bool) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """Merge once every part exists, looking again every :data:`RANK_POLL_S` for up to ``wait_s`` seconds;
    ``None`` when parts are still missing and ``may_be_incomplete`` (other ranks not done)."""
    deadline = time.monotonic() + (wait_s or 0.0)
    while True:
        try:
            return merge_results(out, plots=plots)
        except IncompleteRunError:
            if not may_be_incomplete:
                raise
            if time.monotonic() >= deadline:
                return None  # merge later: merge_results / leuk montecarlo --merge
            time.sleep(RANK_POLL_S)


def load_parts(out: str | os.PathLike) -> pd.DataFrame:
    """Every finished part of a run folder as one table, in canonical order (unmerged runs included)."""
    parts_dir = Path(out) / PARTS_DIR
    files = sorted(parts_dir.glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=ID_COLUMNS)
    return _canonical(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True))


def _canonical(frame: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    metric_columns = [c for c in frame.columns if c not in ID_COLUMNS and c != "confusion_matrix"]
    columns = ID_COLUMNS + metric_columns + (["confusion_matrix"] if "confusion_matrix" in frame else [])
    frame = frame[columns].copy()
    protocol_rank = frame["protocol"].map({p: i for i, p in enumerate(PROTOCOLS)})
    model_rank = frame["model"].map({m: i for i, m in enumerate(models)}) if models else frame["model"]
    order = np.lexsort((model_rank.to_numpy(), protocol_rank.to_numpy(), frame["iteration"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    for column in ("iteration", "seed", "n_train", "n_val", "n_test"):
        frame[column] = frame[column].astype("int64")
    for column in metric_columns:
        frame[column] = frame[column].astype("float64")
    return frame


def merge_results(out: str | os.PathLike, *, plots: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Merge a run folder's parts into ``results.parquet`` + ``summary.json``/``summary.md`` (+ plots).

    Raises :class:`IncompleteRunError` when parts are missing. Writes every file atomically and returns
    ``(results, summary)``.
    """
    out = Path(out)
    config = _read_run_config(out)
    if config is None:
        raise MonteCarloError(f"{out} is not a Monte Carlo run folder (no {RUN_FILE})")
    models, protocols, n_iter = config["models"], _protocols(config["protocol"]), int(config["n_iter"])
    expected = {_part_name(i, p, m) for i in range(n_iter) for p in protocols for m in models}
    present = {path.name for path in (out / PARTS_DIR).glob("*.parquet")}
    missing = expected - present
    if missing:
        raise IncompleteRunError(
            f"{len(missing)} of {len(expected)} (iteration, protocol, model) results are missing in {out}; "
            "resume the run (same command) or wait for the other ranks")
    results = _canonical(
        pd.concat([pd.read_parquet(out / PARTS_DIR / name) for name in sorted(expected)], ignore_index=True),
        models)
    with atomic_output(out / RESULTS_FILE) as temporary:
        results.to_parquet(temporary, index=False)
    summary = summarize(results, config["reference"], config=config)
    _write_json(out / SUMMARY_JSON, summary)
    with atomic_output(out / SUMMARY_MD) as temporary:
        temporary.write_text(summary_markdown(summary), encoding="utf-8")
    if plots:
        from leuk.experiments.plots import write_plots

        write_plots(out, results, summary)
    return results, summary

