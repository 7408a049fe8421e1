"""Pipeline: the HybridCN-NAS phases on one smear (stain normalisation, CLAHE, segmentation, cells, features)."""

from __future__ import annotations

import streamlit as st

from leuk import serving
from streamlit_app import ui

RESULT_KEY = "pipeline_result"
NO_SAMPLE = "(none)"
COLUMNS = 4

st.title("Pipeline")
st.markdown("The HybridCN-NAS phases on one smear: Reinhard stain normalisation, CLAHE on the L channel, "
            "segmentation (an Attention U-Net; watershed splits touching cells), the cells found, and the "
            "mRMR-selected features that lie furthest from their training mean for this image.")

candidates = ui.attempt("list the HybridCN-NAS models", ui.pipeline_models, tuple(ui.model_names())) or []
if not candidates:
    st.info("No HybridCN-NAS model is configured, so there is no pipeline to show. "
            f"{serving.NO_MODEL_HELP}", icon=":material/info:")
    st.stop()

selected = ui.selected_model()
source_column, options_column = st.columns(2)
with options_column:
    model_name = st.selectbox("HybridCN-NAS model", candidates, key="pipeline_model",
                              index=candidates.index(selected) if selected in candidates else 0)
    ui.model_notice(model_name)
    run = st.button("Run pipeline", type="primary", icon=":material/play_arrow:", key="pipeline_run")
with source_column:
    upload = st.file_uploader("Smear image", type=ui.UPLOAD_TYPES, key="pipeline_file")
    smears = {s.path.name: s.path for s in serving.samples_for_model(model_name)}
    sample = st.selectbox("…or a bundled synthetic smear", [NO_SAMPLE, *smears], key="pipeline_sample",
                          index=1 if smears else 0, disabled=upload is not None)
    chosen = serving.choose_input(upload.name if upload is not None else None,
                                  upload.getvalue() if upload is not None else None, smears.get(sample))
    if chosen is not None:
        st.caption(chosen.note or f"Runs on `{chosen.name}`.")

if run:
    if chosen is None:
        st.warning("Upload a smear image or pick a sample first.", icon=":material/upload:")
    else:
        with ui.user_errors("run the pipeline"), st.spinner(f"Running the phases on {chosen.name}…"):
            st.session_state[RESULT_KEY] = serving.pipeline_stages(chosen.image, model_name, image_name=chosen.name)

result: serving.PipelineResult | None = st.session_state.get(RESULT_KEY)
if result is not None:
    st.markdown(result.summary_markdown)
    for start in range(0, len(result.stages), COLUMNS):
        for column, (picture, caption) in zip(st.columns(COLUMNS), result.stages[start:start + COLUMNS]):
            column.image(picture, width="stretch")
            column.caption(caption)  # a caption of its own wraps (an image's caption is cut to one line)
    st.markdown("**Selected features furthest from the training mean**")
    st.dataframe(result.features, hide_index=True, width="stretch")
