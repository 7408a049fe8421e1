"""Models: every configured model's size, held-out figures side by side, then per model its headline and
per-subject / per-fold tables, how to load it, every recorded number (collapsed) and its card."""

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

def _mean_sd(info: serving.ModelInfo) -> pd.DataFrame | None:
    """A model's headline figures as ``metric`` / ``<model>`` (mean ± sd over folds, pooled), for a side by side."""
    evaluation = info.evaluation
    if evaluation is None or evaluation.headline.empty or "mean ± sd over folds" not in evaluation.headline:
        return None
    frame = evaluation.headline
    if "protocol" in frame:  # cross-validation records: one row per protocol (and model), no pooled figure
        if evaluation.shipped in set(frame["model"]):  # these weights' rows; the baselines are in the model's tab
            frame = frame[frame["model"] == evaluation.shipped]
            label = frame["metric"] + " · " + frame["protocol"]
        else:
            label = frame["metric"] + " · " + frame["protocol"] + " · " + frame["model"]
        return pd.DataFrame({"metric": label, info.name: frame["mean ± sd over folds"]})
    pooled = frame["pooled"].map(lambda v: "" if pd.isna(v) else f" (pooled {v:.3f})")
    return pd.DataFrame({"metric": frame["metric"], info.name: frame["mean ± sd over folds"] + pooled})


st.subheader("Held-out figures side by side")
st.caption("Mean ± sd over the cross-subject (or cross-validation) folds, and pooled over every held-out image. "
           "Each model's own tab below has its per-subject or per-fold figures and every recorded number.")
frames = [frame for frame in map(_mean_sd, infos.values()) if frame is not None]
if not frames:
    st.info("No model records held-out figures over folds (`eval_results.json`).", icon=":material/info:")
else:
    # metrics in the order the models list them (an outer merge would sort them by name)
    order = list(dict.fromkeys(metric for frame in frames for metric in frame["metric"]))
    side_by_side = pd.concat([frame.set_index("metric") for frame in frames], axis=1).reindex(order)
    st.dataframe(side_by_side.fillna("—").reset_index(), hide_index=True, width="stretch")

st.subheader("Each model")
for tab, info in zip(st.tabs(list(infos)), infos.values()):
    with tab:
        st.markdown(info.summary_markdown)
        evaluation = info.evaluation
        if evaluation is not None and evaluation.note:
            st.markdown(evaluation.note)
        if evaluation is not None and not evaluation.headline.empty:
            st.markdown("**Held-out figures** (mean ± sd over folds; pooled over every held-out image)")
            st.dataframe(evaluation.headline, hide_index=True, width="stretch",
                         column_config={"pooled": st.column_config.NumberColumn("pooled", format="%.3f"),
                                        "held-out value": st.column_config.NumberColumn(format="%.3f")})
        if evaluation is not None and not evaluation.breakdown.empty:
            st.markdown(f"**{evaluation.breakdown_title}**")
            numbers = [c for c in evaluation.breakdown.columns if evaluation.breakdown[c].dtype.kind == "f"]
            st.dataframe(evaluation.breakdown, hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in numbers})
        st.markdown("**Load this exact model**")
        st.code(info.snippet, language="python", wrap_lines=True)
        with st.expander(f"All records: every number of eval_results.json ({len(info.metrics)})", expanded=False):
            if info.metrics.empty:
                st.info("This model ships no evaluation results (`eval_results.json`).", icon=":material/info:")
            else:
                st.dataframe(info.metrics, hide_index=True, width="stretch",
                             column_config={"value": st.column_config.NumberColumn("value", format="%.3f")})
        with st.container(border=True):
            st.markdown(info.card_markdown)
