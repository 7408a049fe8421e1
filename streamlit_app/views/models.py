"""Models: every configured model's card, size and metrics, side by side, and how to load it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from leuk import serving
from streamlit_app import ui

st.title("Models")
names = ui.model_names()
if not names:
    st.info(f"**No model is configured.** {serving.NO_MODEL_HELP}", icon=":material/info:")
    st.stop()

infos: dict[str, serving.ModelInfo] = {}
for name in names:
    info = ui.attempt(f"describe model {name}", ui.model_info, name)
    if info is not None:
        infos[name] = info
if not infos:
    st.stop()

st.dataframe(pd.DataFrame([{
    "model": info.name, "type": info.model_type, "parameters": info.num_parameters, "classes": ", ".join(info.labels),
    "source": info.source, "revision": info.revision or "", "bundled / demo": info.is_demo,
    "training data": info.training or "not recorded",
} for info in infos.values()]), hide_index=True, width="stretch",
    column_config={"parameters": st.column_config.NumberColumn("parameters", format="localized")})

st.subheader("Metrics side by side")
side_by_side = None
for name, info in infos.items():
    frame = info.metrics.rename(columns={"value": name})
    side_by_side = frame if side_by_side is None else side_by_side.merge(frame, on="metric", how="outer", sort=False)
if side_by_side is None or side_by_side.drop(columns="metric").isna().all().all():
    st.info("No model ships evaluation results (`eval_results.json`).", icon=":material/info:")
else:
    st.dataframe(side_by_side, hide_index=True, width="stretch",
                 column_config={name: st.column_config.NumberColumn(name, format="%.4f") for name in infos})

st.subheader("Model cards")
for tab, info in zip(st.tabs(list(infos)), infos.values()):
    with tab:
        st.markdown(info.summary_markdown)
        st.code(info.snippet, language="python")
        with st.container(border=True):
            st.markdown(info.card_markdown)
