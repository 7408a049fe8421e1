"""What every page of the dashboard shares: cached access to :mod:`leuk.serving`, the model picker, notices
and the one way user mistakes are shown (a one-line ``st.error``, never a traceback).

Models are cached with ``st.cache_resource`` (one copy per process, shared by every session), tables and
reports with ``st.cache_data``. Every computation lives in :mod:`leuk.serving`; nothing here is recomputed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from leuk import serving  # before torch: imports `spaces` first, as the serving layer requires
from leuk.io import IMAGE_SUFFIXES

import streamlit as st  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd

    from leuk.hub import LoadedModel

log = logging.getLogger("leuk.dashboard")

T = TypeVar("T")

#: Session-state key of the model chosen in the sidebar.
MODEL_KEY = "model"
#: File types the image uploaders accept (those :func:`leuk.io.read_image` reads).
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]


@contextlib.contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Show leuk's errors as one line (``Cannot <action>: ...``); log anything unexpected and say so briefly."""
    from leuk.errors import LeukError

    try:
        yield
    except LeukError as err:
        st.error(f"Cannot {action}: {err}", icon=":material/error:")
    except Exception as err:  # noqa: BLE001  (a bad request must not show a traceback to the user)
        log.exception("unexpected error while trying to %s", action)
        st.error(f"Cannot {action}: unexpected error ({type(err).__name__}); the request was not completed.",
                 icon=":material/error:")


def attempt(action: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``function(*args, **kwargs)``, or ``None`` after showing its error as :func:`user_errors` does."""
    with user_errors(action):
        return function(*args, **kwargs)
    return None


# ------------------------------------------------------------------------------------------------- models

def model_names() -> list[str]:
    """The configured model specs (``LEUK_MODELS`` or every bundled demo), in order."""
    return list(serving.get_registry().names)


@st.cache_resource(show_spinner="Loading the model…")
def loaded_model(name: str) -> "LoadedModel":
    """The model called ``name``, loaded once per process (on CUDA when present)."""
    return serving.get_registry().get(name)


@st.cache_data(show_spinner=False)
def model_info(name: str) -> serving.ModelInfo:
    """Card, size, metrics and loading snippet of a configured model."""
    loaded_model(name)
    return serving.model_info(name)


@st.cache_resource(show_spinner="Looking for HybridCN-NAS models…")
def pipeline_models(names: tuple[str, ...]) -> list[str]:
    """Configured models that expose the HybridCN-NAS phases (``names``: the configuration, as cache key)."""
    return serving.pipeline_model_names()


def selected_model() -> str | None:
    """The model chosen in the sidebar (the first configured one before any choice), or ``None``."""
    names = model_names()
    chosen = st.session_state.get(MODEL_KEY)
    return chosen if chosen in names else (names[0] if names else None)


def require_model() -> str:
    """The selected model, loaded; stops the page with a notice when none is configured or it fails to load."""
    name = selected_model()
    if name is None:
        st.info(f"**No model is configured.** {serving.NO_MODEL_HELP}", icon=":material/info:")
        st.stop()
    if attempt(f"load model {name}", loaded_model, name) is None:
        st.stop()
    model_notice(name)
    return name


def model_notice(name: str) -> None:
    """The demo-weights banner of model ``name`` (loaded) unless :func:`demo_notice` already showed it."""
    if name == selected_model() and serving.banner_for(name, load=False):
        return
    banner = serving.banner_for(name)
    if banner:
        st.warning(banner, icon=":material/science:")


def sidebar() -> None:
    """The model picker and the short disclaimer, on every page."""
    names = model_names()
    with st.sidebar:
        if names:
            st.selectbox("Model", names, key=MODEL_KEY, help="Set `LEUK_MODELS` to serve other models.")
        else:
            st.warning(f"No model configured. {serving.NO_MODEL_HELP}")
        st.caption(serving.NOT_A_MEDICAL_DEVICE)


def demo_notice() -> None:
    """The demo-weights banner when the selected model is a bundled demo (decided from its spec: no loading)."""
    name = selected_model()
    banner = serving.banner_for(name, load=False) if name is not None else ""
    if banner:
        st.warning(banner, icon=":material/science:")


# -------------------------------------------------------------------------------------------- Monte Carlo

@st.cache_data(show_spinner=False, ttl=600)
def montecarlo_sources() -> list[str]:
    """Names of the bundled Monte Carlo runs."""
    return serving.montecarlo_sources()


def montecarlo_choices() -> list[tuple[str, str]]:
    """``(label, name)`` of the bundled Monte Carlo runs, the default (real data) first."""
    return serving.montecarlo_choices()


@st.cache_data(show_spinner="Loading Monte Carlo results…", max_entries=64)
def montecarlo_report(source: str, metric: str | None) -> serving.MonteCarloReport:
    """Tables of one metric of a run (no matplotlib figures: the dashboard draws its own charts)."""
    return serving.montecarlo_report(source or None, metric, figures=False)


@st.cache_data(show_spinner=False, max_entries=8)
def montecarlo_parquet(source: str) -> bytes:
    """The run's full results table as parquet bytes, for download."""
    import io

    buffer = io.BytesIO()
    serving.load_montecarlo(source or None).results.to_parquet(buffer, index=False)
    return buffer.getvalue()


@st.cache_data(show_spinner=False, max_entries=8)
def montecarlo_summary(source: str) -> dict[str, Any]:
    """The run's summary (``summary.json``, or computed by :func:`leuk.experiments.montecarlo.summarize`)."""
    return serving.load_montecarlo(source or None).summary


def score_table(summary: dict[str, Any], metrics: Sequence[str], models: Sequence[str],
                protocols: Sequence[str]) -> "pd.DataFrame":
    """Each model's score per protocol and metric as the summary describes it (mean, sd, median, 95% interval)."""
    import pandas as pd

    rows = []
    for protocol in protocols:
        per_model = (summary.get("protocols", {}).get(protocol) or {}).get("models", {})
        for model in models:
            for metric in metrics:
                stats = (per_model.get(model) or {}).get(metric)
                if stats:
                    rows.append({"protocol": protocol, "model": model, "metric": metric, "mean": stats.get("mean"),
                                 "sd": stats.get("sd"), "median": stats.get("median"),
                                 "p2.5": stats.get("p2_5"), "p97.5": stats.get("p97_5"), "n": stats.get("n")})
    return pd.DataFrame(rows, columns=["protocol", "model", "metric", "mean", "sd", "median", "p2.5", "p97.5", "n"])
