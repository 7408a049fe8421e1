"""leuk dashboard: ``streamlit run streamlit_app/app.py`` (or ``make dashboard``).

The entry of a multipage app (``st.navigation``): it lays out the sidebar (model picker, disclaimer) and the
demo-weights banner, then runs the chosen page from ``views/``. Models come from ``LEUK_MODELS`` (comma-separated
Hub ids with ``@revision``, folders, or ``demo:<name>``), else every bundled demo model; Monte Carlo results
from ``assets/results/`` (``LEUK_RESULTS_DIR``) or a dataset repo id typed on the Monte Carlo page.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `streamlit run` puts only this folder on sys.path; the pages import the package
    sys.path.insert(0, str(REPO_ROOT))

from leuk import serving  # noqa: E402,F401  (before torch: imports `spaces` first, as the serving layer requires)

import streamlit as st  # noqa: E402

from streamlit_app import ui  # noqa: E402

st.set_page_config(page_title="leuk: leukemic-cell classification", page_icon=":material/biotech:", layout="wide")

PAGES = [
    st.Page("views/predict.py", title="Predict", icon=":material/biotech:", url_path="predict", default=True),
    st.Page("views/explain.py", title="Explain", icon=":material/visibility:", url_path="explain"),
    st.Page("views/pipeline.py", title="Pipeline", icon=":material/account_tree:", url_path="pipeline"),
    st.Page("views/montecarlo.py", title="Monte Carlo", icon=":material/query_stats:", url_path="montecarlo"),
    st.Page("views/models.py", title="Models", icon=":material/model_training:", url_path="models"),
    st.Page("views/about.py", title="About", icon=":material/info:", url_path="about"),
]

page = st.navigation(PAGES)
ui.sidebar()
ui.demo_notice()
page.run()
