"""Publishing: one upload folder per model (safetensors + config + remote code + card) and result tables.

Every push is ``create_repo(exist_ok=True)`` followed by ONE ``upload_folder`` commit. The ``HfApi`` is a
parameter, so tests (and dry runs) never touch the network.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from leuk.errors import LeukError
from leuk.hub.loader import HUB_ID_PATTERN

#: Files that can execute code when loaded; a leuk upload folder never contains them.
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".h5", ".msgpack")
RESULTS_PARQUET = "data/train-00000-of-00001.parquet"


@dataclass
class PushResult:
    """What a push uploaded (or, for a dry run, would upload)."""

    repo_id: str
    repo_type: str
    folder: Path
    files: list[tuple[str, int]]
    dry_run: bool
    revision: str | None = None
    commit_message: str | None = None
    commit_oid: str | None = None
    commit_url: str | None = None
    tag: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Human-readable summary: target, one line per file with its size, and the commit."""
        verb = "would upload" if self.dry_run else "uploaded"
        total = sum(size for _, size in self.files)
        lines = [f"{verb} {len(self.files)} files ({_human_size(total)}) to {self.repo_type} repo {self.repo_id}"
                 + (f" (branch {self.revision})" if self.revision else "") + f" from {self.folder}"]
        lines += [f"  {size:>12,d}  {name}" for name, size in self.files]
        if self.commit_url or self.commit_oid:
            lines.append(f"commit {self.commit_oid or ''} {self.commit_url or ''}".rstrip())
        if self.tag:
            lines.append(f"{'would tag' if self.dry_run else 'tagged'} {self.tag} (the revision the card pins)")
        return "\n".join(lines)


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _check_repo_id(repo_id: str) -> None:
    if not HUB_ID_PATTERN.match(repo_id or ""):
        raise LeukError(f"invalid Hub repo id {repo_id!r}: expected org/name")


def list_folder(folder: Path) -> list[tuple[str, int]]:
    """(relative posix path, size in bytes) of every file under ``folder``, sorted."""
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def _forbidden_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name.lower().endswith(FORBIDDEN_SUFFIXES))


def _remote_code_files(config: Mapping[str, Any]) -> set[str]:
    """``.py`` files that an ``auto_map`` refers to (``module.Class`` or ``repo--module.Class``)."""
    names = set()
    for reference in (config.get("auto_map") or {}).values():
        for item in reference if isinstance(reference, (list, tuple)) else [reference]:
            if isinstance(item, str) and "." in item:
                module = item.split("--")[-1].rsplit(".", 1)[0]
                names.add(f"{module}.py")
    return names


@contextmanager
def _staging(out_dir: str | Path | None, *, keep: bool) -> Iterator[Path]:
    """The folder to stage an upload in: ``out_dir`` if given, else a temporary one (deleted unless ``keep``)."""
    if out_dir is not None:
        yield Path(out_dir)
    elif keep:
        yield Path(tempfile.mkdtemp(prefix="leuk-upload-"))
    else:
        with tempfile.TemporaryDirectory(prefix="leuk-upload-") as tmp:
            yield Path(tmp)


def _fresh_folder(out_dir: str | Path) -> Path:
    folder = Path(out_dir)
    if folder.exists() and any(folder.iterdir()):
        raise LeukError(f"output folder {folder} is not empty; give a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def prepare_upload_folder(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    repo_id: str,
    eval_results: str | Path | Mapping | None = None,
    mc_summary: str | Path | Mapping | None = None,
    family: str | None = None,
    pinned_revision: str | None = None,
) -> Path:
    """Write the folder a Hub repo will hold: safetensors weights, config.json (with ``auto_map``), preprocessor
    config, the remote-code ``.py`` files, ``eval_results.json`` and ``README.md`` (the model card).

    Refuses pickle-based files (``.bin``, ``.pt``, ``.pkl``, ...) anywhere in ``model_dir``.
    """
    from leuk.hub.cards import build_model_card, read_json_file
    from leuk.hub.loader import EVAL_RESULTS_FILE

    _check_repo_id(repo_id)
    source = Path(model_dir)
    if not (source / "config.json").is_file():
        raise LeukError(f"{source} is not a save_pretrained model folder (no config.json)")
    forbidden = _forbidden_files(source)
    if forbidden:
        raise LeukError(f"refusing to publish pickle-based files from {source}: {', '.join(forbidden)} "
                        "(save with safe_serialization / safetensors only)")
    config = read_json_file(source / "config.json", "model config")
    if not config.get("auto_map"):
        raise LeukError(f"{source}/config.json has no auto_map: call register_for_auto_class() before save_pretrained")
    weights = sorted(source.glob("*.safetensors"))
    if not weights:
        raise LeukError(f"{source} holds no .safetensors weights")
    processor_path = source / "preprocessor_config.json"
    if not processor_path.is_file():
        raise LeukError(f"{source} has no preprocessor_config.json: save the image processor next to the model")
    code_files = _remote_code_files(config) | _remote_code_files(read_json_file(processor_path, "preprocessor config"))
    missing = sorted(name for name in code_files if not (source / name).is_file())
    if missing:
        raise LeukError(f"{source} lacks the remote-code files its auto_map names: {', '.join(missing)}")

    folder = _fresh_folder(out_dir)
    to_copy = weights + sorted(source.glob("*.safetensors.index.json")) + sorted(source.glob("*.py"))
    to_copy += [p for p in sorted(source.glob("*.json")) if p.name != EVAL_RESULTS_FILE and p not in to_copy]
    for path in to_copy:
        shutil.copy2(path, folder / path.name)

    if eval_results is None and (source / EVAL_RESULTS_FILE).is_file():
        eval_results = source / EVAL_RESULTS_FILE
    copied_eval = None
    if eval_results is not None:
        eval_json = eval_results if isinstance(eval_results, Mapping) else read_json_file(eval_results, "eval results")
        copied_eval = folder / EVAL_RESULTS_FILE
        copied_eval.write_text(json.dumps(eval_json, indent=2) + "\n", encoding="utf-8")
    card = build_model_card(folder, repo_id=repo_id, eval_results=copied_eval, mc_summary=mc_summary,
                            family=family, pinned_revision=pinned_revision)
    card.save(folder / "README.md")
    return folder


def _token_of(api: Any) -> str:
    from huggingface_hub import get_token

    token = getattr(api, "token", None) or get_token()
    if not token:
        raise LeukError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)")
    return token


def _upload(api: Any, folder: Path, repo_id: str, repo_type: str, *, revision: str | None, private: bool,
            commit_message: str) -> Any:
    token = _token_of(api)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, token=token)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True, token=token)
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, revision=revision,
                             commit_message=commit_message, token=token)


def push_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    api: Any = None,
    revision: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    commit_message: str | None = None,
    out_dir: str | Path | None = None,
    eval_results: str | Path | Mapping | None = None,
    mc_summary: str | Path | Mapping | None = None,
    tag: str | None = None,
) -> PushResult:
    """Publish a saved model to ``repo_id`` in one commit (or, with ``dry_run``, only write the folder).

    ``api`` is an ``huggingface_hub.HfApi`` (a fresh one when None); the token comes from ``api.token``, else
    ``HF_TOKEN`` / ``hf auth login``. ``revision`` is the branch to commit to; ``tag`` (e.g. ``v1.0``) is created
    on the new commit and pinned in the card's loading snippets.
    """
    _check_repo_id(repo_id)
    if not dry_run:
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        _token_of(api)  # fail before the (possibly long) card build
    with _staging(out_dir, keep=dry_run) as staging:
        folder = prepare_upload_folder(model_dir, staging, repo_id=repo_id, eval_results=eval_results,
                                       mc_summary=mc_summary, pinned_revision=tag)
        message = commit_message or f"Upload {Path(model_dir).name}: safetensors weights, remote code and model card"
        result = PushResult(repo_id, "model", folder, list_folder(folder), dry_run, revision, message, tag=tag)
        if dry_run:
            return result
        commit = _upload(api, folder, repo_id, "model", revision=revision, private=private, commit_message=message)
    result.commit_oid = getattr(commit, "oid", None)
    result.commit_url = getattr(commit, "commit_url", None)
    if tag:
        api.create_tag(repo_id, tag=tag, revision=result.commit_oid or revision, repo_type="model",
                       token=_token_of(api))
    return result


def _read_table(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise LeukError(f"{path}: results must be a .parquet or .csv file")


def push_results(
    results_path: str | Path,
    repo_id: str,
    *,
    api: Any = None,
    summary: str | Path | Mapping | None = None,
    dry_run: bool = False,
    out_dir: str | Path | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> PushResult:
    """Publish a Monte Carlo results table as a dataset repo: parquet (written by ``datasets``) + dataset card,
    in one commit."""
    from datasets import Dataset

    from leuk.hub.cards import build_results_card

    _check_repo_id(repo_id)
    if not dry_run:
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        _token_of(api)
    source = Path(results_path)
    if not source.is_file():
        raise LeukError(f"results file {source} does not exist")
    table = _read_table(source)
    if table.empty:
        raise LeukError(f"results file {source} holds no rows")
    models = sorted(map(str, table["model"].unique())) if "model" in table.columns else None
    card = build_results_card(repo_id, num_rows=len(table), columns=[str(c) for c in table.columns],
                              summary=summary, models=models)
    with _staging(out_dir, keep=dry_run) as staging:
        folder = _fresh_folder(staging)
        (folder / RESULTS_PARQUET).parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_pandas(table, preserve_index=False).to_parquet(str(folder / RESULTS_PARQUET))
        card.save(folder / "README.md")
        message = commit_message or f"Upload Monte Carlo results ({len(table)} rows)"
        result = PushResult(repo_id, "dataset", folder, list_folder(folder), dry_run, None, message)
        if dry_run:
            return result
        commit = _upload(api, folder, repo_id, "dataset", revision=None, private=private, commit_message=message)
    result.commit_oid = getattr(commit, "oid", None)
    result.commit_url = getattr(commit, "commit_url", None)
    return result


def load_results(spec: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None):
    """Results table (pandas) from a parquet/CSV file, a folder of parquet files, or a dataset repo id
    (``org/name[@revision]``, through ``snapshot_download``, so the HF cache and offline mode apply)."""
    import pandas as pd

    path = Path(str(spec)).expanduser()
    if not path.exists():
        repo_id, _, spec_revision = str(spec).partition("@")
        if not HUB_ID_PATTERN.match(repo_id):
            raise LeukError(f"results {spec!r} is neither a file, a folder nor a dataset repo id (org/name)")
        path = _download_dataset(repo_id, spec_revision or revision, cache_dir)
    if path.is_file():
        return _read_table(path)
    parts = sorted(path.rglob("*.parquet"))
    if not parts:
        raise LeukError(f"no .parquet files under {path}")
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def _download_dataset(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    from leuk.hub.loader import _offline, not_cached_message

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                                      local_files_only=_offline(), allow_patterns=["*.parquet", "*.md"]))
    except RepositoryNotFoundError as err:
        raise LeukError(f"dataset repo {repo_id!r} not found (or private): check the id or log in") from err
    except LocalEntryNotFoundError as err:
        raise LeukError(not_cached_message(f"dataset {repo_id!r}", local_files_only=_offline())) from err
    except HfHubHTTPError as err:
        raise LeukError(f"could not download dataset {repo_id!r}: {str(err).splitlines()[0]}") from err
