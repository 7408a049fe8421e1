"""The one model loader: Hub repo ids, local ``save_pretrained`` folders and bundled demo models.

Every app, CLI command and notebook loads models through :func:`load_model`. Models are built with the
in-package Auto classes registered by :mod:`leuk.models` (``trust_remote_code=False``), so leuk itself never
executes code downloaded from the Hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from leuk.devices import resolve_device
from leuk.errors import LeukError, ModelNotFoundError
from leuk.records import CARD_FILE, EVAL_RESULTS_FILE, read_eval_results

DEMO_PREFIX = "demo:"
DEMO_MODELS_ENV = "LEUK_DEMO_MODELS_DIR"
DEFAULT_MODELS_ENV = "LEUK_MODELS"
# what a model snapshot needs; anything else in a Hub repo (pickles, images, logs) is never downloaded
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.md", "*.txt"]

#: ``org/name`` as the Hub spells repo ids
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
_SYNTHETIC_KEYS = ("data", "training_data", "train_data", "dataset", "data_source")

Source = Literal["hub", "folder", "demo"]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: where a model comes from (``kind``), what to fetch (``target``), which revision."""

    kind: Source
    target: str
    revision: str | None = None


@dataclass
class LoadedModel:
    """A model ready for inference, with everything an app needs to describe it."""

    model: Any
    processor: Any
    spec: str
    source: Source
    revision: str | None
    path: Path
    is_demo: bool
    eval_results: dict | None
    card_text: str | None
    num_parameters: int
    config: Any = field(repr=False, default=None)
    #: the out-of-distribution detector stored with the weights (:mod:`leuk.ood`), ``None`` when there is none
    ood_detector: Any = field(repr=False, default=None)
    #: why there is no detector (one line), ``None`` when there is one
    ood_note: str | None = None
    #: the model's :class:`leuk.models.family.ModelFamily` (what the rest of leuk may ask of it); ``None`` for a
    #: transformers model of no leuk family
    family: Any = field(repr=False, default=None)
    #: the calibrated top probability below which a call is "uncertain": the folder's ``calibration.json``
    #: (fitted on out-of-fold predictions) or :data:`leuk.verdict.UNCERTAIN_BELOW`
    uncertain_below: float = field(default_factory=lambda: _default_threshold())
    #: the folder's ``calibration.json`` (``{}`` when it has none)
    calibration: dict = field(repr=False, default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Class names in logit order (from ``config.id2label``)."""
        id2label = self.model.config.id2label
        return [id2label[i] for i in sorted(id2label)]


def _default_threshold() -> float:
    from leuk.verdict import UNCERTAIN_BELOW

    return UNCERTAIN_BELOW


def demo_models_dir() -> Path:
    """Folder of the bundled demo models (``$LEUK_DEMO_MODELS_DIR`` or ``<repo>/assets/demo_models``)."""
    override = os.environ.get(DEMO_MODELS_ENV)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[2] / "assets" / "demo_models"


def list_demo_models() -> list[str]:
    """Names of the bundled demo models (folders holding a ``config.json``), sorted."""
    root = demo_models_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def parse_model_spec(spec: str, revision: str | None = None) -> ModelSpec:
    """Parse ``org/name[@revision]``, a local folder or ``demo:<name>``.

    An existing local path wins over a Hub id of the same spelling, and so does a path inside an existing local
    folder (``runs/effse`` where ``runs/`` exists: a missing model folder, never a Hub repo). ``revision`` (if
    given) must agree with a revision written in the spec.
    """
    text = str(spec).strip()
    if not text:
        raise ModelNotFoundError("empty model spec: give a Hub id (org/name), a folder or demo:<name>")
    if text.startswith(DEMO_PREFIX):
        name = text[len(DEMO_PREFIX):].strip()
        if not name:
            raise ModelNotFoundError(f"empty demo name in {spec!r}; available demos: {_demo_names_text()}")
        return ModelSpec("demo", name, revision)
    path = Path(text).expanduser()
    if path.exists() or text.startswith((".", "/", "~")) or "\\" in text or _inside_local_folder(path):
        return ModelSpec("folder", str(path), revision)
    repo_id, separator, spec_revision = text.partition("@")
    if not HUB_ID_PATTERN.match(repo_id) or (separator and not spec_revision):
        if "/" in text:
            return ModelSpec("folder", str(path), revision)
        raise ModelNotFoundError(
            f"model spec {spec!r} is neither an existing folder, a Hub id (org/name[@revision]) nor demo:<name>"
        )
    if spec_revision and revision and spec_revision != revision:
        raise ModelNotFoundError(f"model spec {spec!r} pins revision {spec_revision!r} but revision={revision!r}")
    return ModelSpec("hub", repo_id, spec_revision or revision)


def _inside_local_folder(path: Path) -> bool:
    """Whether ``path`` (``a/b``) lies in a folder that exists here (``a/``): then it names a folder, not a Hub
    repo ``a/b``."""
    return path.parent != Path(".") and path.parent.is_dir()


def resolve_models_from_env(var: str = DEFAULT_MODELS_ENV) -> list[str]:
    """Model specs from a comma-separated environment variable, else ``demo:<name>`` for every demo model."""
    raw = os.environ.get(var, "")
    specs = [part.strip() for part in raw.split(",") if part.strip()]
    return specs or [f"{DEMO_PREFIX}{name}" for name in list_demo_models()]


def _demo_names_text() -> str:
    names = list_demo_models()
    return ", ".join(names) if names else f"none bundled in {demo_models_dir()} (run `make demo-assets`)"


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or env.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_env() -> str | None:
    """The name of the environment variable that switches the Hub client offline, when one does."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return name
    return None


def not_cached_message(what: str, *, local_files_only: bool = False) -> str:
    """One line for a Hub download that found nothing in the cache, advising only what applies here:
    the variable that is set, the ``local_files_only`` that was asked for, or the network."""
    variable = _offline_env()
    if variable is not None:
        return (f"{what} is not in the local Hugging Face cache and {variable}={os.environ[variable]} keeps the "
                f"Hub client offline: unset it (or set {variable}=0) to download, or fetch it first with "
                "`hf download`")
    if local_files_only:
        return (f"{what} is not in the local Hugging Face cache and only local files were asked for: "
                "download it first with `hf download`")
    return f"could not reach the Hub for {what} and it is not cached: check the network or download it first"


def _download_snapshot(
    repo_id: str, revision: str | None, cache_dir: str | Path | None, local_files_only: bool
) -> Path:
    """``snapshot_download`` with every failure turned into one clear :class:`ModelNotFoundError` line."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = local_files_only or _offline()
    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            allow_patterns=SNAPSHOT_PATTERNS,
        )
    except RevisionNotFoundError as err:
        raise ModelNotFoundError(
            f"Hub repo {repo_id!r} has no revision {revision!r}; check the tag/commit"
        ) from err
    except RepositoryNotFoundError as err:
        raise ModelNotFoundError(
            f"Hub repo {repo_id!r} not found (or private/gated): check the id, or log in with `hf auth login`"
        ) from err
    except LocalEntryNotFoundError as err:
        raise ModelNotFoundError(not_cached_message(f"model {where!r}", local_files_only=offline)) from err
    except HFValidationError as err:
        raise ModelNotFoundError(f"invalid Hub repo id {repo_id!r}: {err}".splitlines()[0]) from err
    except HfHubHTTPError as err:
        raise ModelNotFoundError(f"could not download {where!r} from the Hub: {str(err).splitlines()[0]}") from err
    return Path(folder)


def _resolve(spec: ModelSpec, cache_dir: str | Path | None, local_files_only: bool) -> tuple[Path, str | None]:
    """The local folder holding the model files, and the revision they come from (hub only)."""
    if spec.kind == "demo":
        path = demo_models_dir() / spec.target
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"unknown demo model {spec.target!r}; available demos: {_demo_names_text()}")
        return path, None
    if spec.kind == "folder":
        path = Path(spec.target)
        if not path.is_dir():
            raise ModelNotFoundError(
                f"no model folder at {path}: it does not exist (give a save_pretrained folder, a Hub id org/name "
                "or demo:<name>)"
            )
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"folder {str(path)!r} has no config.json: it is not a save_pretrained model folder"
            )
        return path, None
    try:
        path = _download_snapshot(spec.target, spec.revision, cache_dir, local_files_only)
    except ModelNotFoundError as err:  # org/name could also have meant a folder: say there is none here
        raise ModelNotFoundError(f"{err} (and there is no model folder at {spec.target} here)") from err.__cause__
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"Hub repo {spec.target!r} has no config.json: it is not a transformers model repo")
    commit = path.name if _COMMIT_HASH.match(path.name) else spec.revision
    return path, commit


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LeukError(f"{path} is not valid JSON: {err}") from err
    return data if isinstance(data, dict) else None


def mentions_synthetic_data(*sources: Any) -> bool:
    """True when a config / eval-results mapping (or card text) says the training data was synthetic."""
    for source in sources:
        if source is None:
            continue
        if isinstance(source, str):
            if re.search(r"^\s*-\s*synthetic[-_ ]data\s*$", source, flags=re.MULTILINE | re.IGNORECASE):
                return True
            continue
        mapping = source if isinstance(source, dict) else getattr(source, "to_dict", lambda: {})()
        if mapping.get("synthetic") is True or mapping.get("is_demo") is True:
            return True
        if any("synthetic" in str(mapping.get(key, "")).lower() for key in _SYNTHETIC_KEYS):
            return True
        # nested records such as a config's ``training_protocol``
        if any(isinstance(value, dict) and mentions_synthetic_data(value) for value in mapping.values()):
            return True
    return False


class ModelLoadError(LeukError):
    """A model folder that exists but cannot be built: broken files or weights that do not fit the config."""


def _load_from_folder(path: Path, device: str) -> tuple[Any, Any]:
    """Model (eval mode, on ``device``) and image processor of a ``save_pretrained`` folder, built from the
    in-package classes only; weights that do not match the architecture key for key are refused."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    import leuk.models

    leuk.models.list_families()  # registers every leuk model family (and its Auto classes)
    model_type = (_read_json(path / "config.json") or {}).get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ModelNotFoundError(
            f"{path} holds model_type {model_type!r}, which neither leuk nor transformers knows "
            "(for other custom models use transformers with trust_remote_code=True)"
        )
    try:
        with _loading_progress(show_loading_progress):
            model, info = AutoModelForImageClassification.from_pretrained(
                path, trust_remote_code=False, output_loading_info=True
            )
        problems = {kind: sorted(map(str, info.get(kind) or ()))
                    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if any(problems.values()):
            counts = ", ".join(f"{len(keys)} {kind.replace('_', ' ')}" for kind, keys in problems.items() if keys)
            example = next(keys[0] for keys in problems.values() if keys)
            raise ModelLoadError(f"the weights in {path} do not fit its config ({counts}, e.g. {example})")
        processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=False)
    except RuntimeError as err:
        if "mismatch" not in str(err):
            raise
        raise ModelLoadError(f"the weights in {path} do not fit its config (tensor shapes differ)") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelLoadError(f"could not load the model in {path}: {first_line}") from err
    return model.to(device).eval(), processor


#: Show transformers' "Loading weights" progress bar (the CLI's ``--verbose``); quiet by default, since every
#: command and app request that loads a model would print it.
show_loading_progress = False


@contextlib.contextmanager
def _loading_progress(show: bool):
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar)()


def _family_or_none(model: Any) -> Any:
    from leuk.models import FamilyError, family_of

    try:
        return family_of(model)
    except FamilyError:
        return None


_CACHE: dict[tuple, LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def clear_model_cache() -> None:
    """Forget every model :func:`load_model` has cached (tests, or to free memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_model(
    spec: str,
    *,
    device: Any = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> LoadedModel:
    """Load a model from a Hub id (``org/name`` or ``org/name@revision``), a folder or ``demo:<name>``.

    Hub ids resolve through ``huggingface_hub.snapshot_download`` and so honour ``HF_HUB_OFFLINE=1`` and the
    local cache. The result is cached per (spec, device, revision, cache dir): apps call this freely.
    Raises :class:`leuk.errors.ModelNotFoundError` (one line) when the model cannot be found.
    """
    parsed = parse_model_spec(spec, revision)
    device_name = resolve_device(device)
    target = str(Path(parsed.target).resolve()) if parsed.kind == "folder" else parsed.target
    if parsed.kind == "demo":  # the folder it names depends on $LEUK_DEMO_MODELS_DIR: two folders, two entries
        target = str((demo_models_dir() / parsed.target).resolve())
    key = (parsed.kind, target, parsed.revision, device_name, str(cache_dir) if cache_dir else None, local_files_only)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        path, resolved_revision = _resolve(parsed, cache_dir, local_files_only)
        model, processor = _load_from_folder(path, device_name)
        eval_results = read_eval_results(path)  # upgraded to the current schema, validated
        card_path = path / CARD_FILE
        card_text = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
        from leuk.ood.detector import load_detector

        ood_detector, ood_note = load_detector(path)
        from leuk.records import read_calibration
        from leuk.verdict import UNCERTAIN_BELOW

        calibration = read_calibration(path)
        loaded = LoadedModel(
            model=model,
            processor=processor,
            spec=str(spec),
            source=parsed.kind,
            revision=resolved_revision,
            path=path,
            is_demo=parsed.kind == "demo" or mentions_synthetic_data(model.config, eval_results, card_text),
            eval_results=eval_results,
            card_text=card_text,
            num_parameters=sum(p.numel() for p in model.parameters()),
            config=model.config,
            ood_detector=ood_detector,
            ood_note=ood_note,
            family=_family_or_none(model),
            uncertain_below=float(calibration.get("uncertain_below") or UNCERTAIN_BELOW),
            calibration=calibration,
        )
        _CACHE[key] = loaded
        return loaded
