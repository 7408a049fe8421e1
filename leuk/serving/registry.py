"""The models an app offers: names from ``LEUK_MODELS`` (or every bundled demo), loaded once, on one device.

Only configured names can be loaded through the registry, so a request to a public app cannot make the
server download an arbitrary Hub repository.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable, Sequence

from leuk.errors import LeukError, ModelNotFoundError
from leuk.hub import resolve_models_from_env

if TYPE_CHECKING:
    from leuk.hub import LoadedModel

log = logging.getLogger(__name__)

MODELS_ENV = "LEUK_MODELS"


class ModelRegistry:
    """A fixed list of model specs (Hub ids with ``@revision``, folders or ``demo:<name>``), loaded lazily.

    ``specs=None`` reads ``$LEUK_MODELS`` (comma separated) and falls back to every bundled demo model.
    ``device=None`` picks CUDA when present; models go to that device when they are loaded.
    """

    def __init__(self, specs: Sequence[str] | None = None, device: str | None = None) -> None:
        names = list(specs) if specs is not None else resolve_models_from_env(MODELS_ENV)
        self.names: list[str] = list(dict.fromkeys(name.strip() for name in names if name.strip()))
        self._device = device
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        """The device every model of this registry runs on."""
        if self._device is None:
            from leuk.serving.runtime import choose_device

            self._device = choose_device()
        return self._device

    @property
    def default(self) -> str | None:
        """The first configured model name, or ``None`` when no model is configured."""
        return self.names[0] if self.names else None

    def check_name(self, name: str | None) -> str:
        """``name`` (or the default when empty) if it is configured; else a one-line :class:`LeukError`."""
        chosen = (name or "").strip() or self.default
        if chosen is None:
            raise ModelNotFoundError(
                f"no model is configured: set {MODELS_ENV} or add demo models to assets/demo_models/"
            )
        if chosen not in self.names:
            raise ModelNotFoundError(f"unknown model {chosen!r}; this app serves: {', '.join(self.names)}")
        return chosen

    def get(self, name: str | None = None) -> "LoadedModel":
        """The loaded model called ``name`` (the default model when empty); loaded once, then cached."""
        from leuk.hub import load_model

        chosen = self.check_name(name)
        with self._lock:  # one load at a time: two first requests must not load the same weights twice
            try:
                loaded = load_model(chosen, device=self.device)
            except LeukError as err:
                self._errors[chosen] = str(err)
                raise
            self._errors.pop(chosen, None)
            return loaded

    def names_where(self, accepts: "Callable[[LoadedModel], bool]") -> list[str]:
        """Configured models whose loaded form ``accepts`` (loads them; models that fail to load are left out)."""
        names = []
        for name in self.names:
            try:
                if accepts(self.get(name)):
                    names.append(name)
            except LeukError:
                continue
        return names

    def choose(self, name: str | None, accepts: "Callable[[LoadedModel], bool]", *, wrong_kind: str,
               none_configured: str) -> str:
        """``name`` when it is configured and ``accepts`` it, else the first configured model that it accepts.

        ``wrong_kind`` ends the error for a named model it refuses (``model 'x' <wrong_kind>``);
        ``none_configured`` is the error when no configured model is accepted."""
        if name:
            chosen = self.check_name(name)
            if not accepts(self.get(chosen)):
                raise LeukError(f"model {chosen!r} {wrong_kind}")
            return chosen
        candidates = self.names_where(accepts)
        if not candidates:
            raise LeukError(none_configured)
        return candidates[0]

    def warm_up(self) -> dict[str, str]:
        """Load every configured model; returns ``{name: error}`` for the ones that failed (logged, not raised)."""
        for name in self.names:
            try:
                self.get(name)
            except Exception as err:  # noqa: BLE001  (one broken model must not keep the app from starting)
                self._errors[name] = str(err)
                log.warning("model %s failed to load: %s", name, err)
        return dict(self._errors)

    def is_demo(self, name: str | None = None) -> bool:
        """Whether ``name`` is (or was trained as) a demo model; demo specs answer without loading."""
        chosen = self.check_name(name)
        if chosen.startswith("demo:"):
            return True
        return self.get(chosen).is_demo


_DEFAULT: ModelRegistry | None = None
_DEFAULT_LOCK = threading.Lock()


def get_registry() -> ModelRegistry:
    """The process-wide registry built from ``$LEUK_MODELS`` (created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = ModelRegistry()
        return _DEFAULT


def set_registry(registry: ModelRegistry | None) -> None:
    """Replace the process-wide registry (``None`` rebuilds it from the environment on next use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        _DEFAULT = registry


def warm_up() -> dict[str, str]:
    """Load every model of the process-wide registry; ``{name: error}`` for those that failed."""
    return get_registry().warm_up()
