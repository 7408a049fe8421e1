"""Explain: an attribution map for one image (Captum methods) and how faithful it is (deletion / insertion)."""

from __future__ import annotations

import streamlit as st

from leuk import serving
from streamlit_app import ui

RESULT_KEY = "explain_result"
NO_SAMPLE = "(none)"

st.title("Explain")
st.markdown("Where the model looks for one image, drawn on the image it actually sees. The faithfulness score "
            "checks the map: the class probability as the most-attributed pixels are put back (insertion, higher "
            "is better) or taken away (deletion, lower is better).")
model_name = ui.require_model()

source_column, options_column = st.columns(2)
with source_column:
    upload = st.file_uploader("Image", type=ui.UPLOAD_TYPES, key="explain_file")
    sample_paths = {s.path.name: s.path for s in serving.samples_for_model(model_name)}
    sample = st.selectbox("…or a bundled sample the model takes", [NO_SAMPLE, *sample_paths],
                          key="explain_sample", index=1 if sample_paths else 0, disabled=upload is not None,
                          help=serving.samples_description(serving.samples_for_model(model_name)))
    chosen = serving.choose_input(upload.name if upload is not None else None,
                                  upload.getvalue() if upload is not None else None, sample_paths.get(sample))
    if chosen is not None:
        st.caption(chosen.note or f"Explains `{chosen.name}`.")
with options_column:
    methods = dict(serving.explain_method_choices())
    method_title = st.selectbox("Method", list(methods), key="explain_method")
    target = st.selectbox("Class to explain", ["predicted", *serving.model_labels(model_name)], key="explain_target")
    baselines = dict(serving.explain_baseline_choices())
    baseline_title = st.selectbox("Baseline of Integrated Gradients and Occlusion", list(baselines),
                                  key="explain_baseline", disabled=methods[method_title] not in serving.BASELINE_METHODS,
                                  help="The image the attribution starts from. On cells segmented onto black, the "
                                       "black baseline credits the cell as a whole (random weights do so too); the "
                                       "blurred image asks which fine structure, such as chromatin, drove the call.")
    steps = dict(serving.ig_steps_choices())
    steps_title = st.selectbox("Integrated Gradients steps", list(steps), key="explain_ig_steps",
                               disabled=methods[method_title] not in serving.IG_STEPS_METHODS,
                               help="More steps make the integral more exact (a smaller completeness gap) and take "
                                    "proportionally longer.")
    run = st.button("Explain", type="primary", icon=":material/play_arrow:", key="explain_run")

if run:
    if chosen is None:
        st.warning("Upload an image or pick a sample first.", icon=":material/upload:")
    else:
        with ui.user_errors("explain"), st.spinner(f"Computing {method_title} of {chosen.name}…"):
            st.session_state[RESULT_KEY] = serving.explain_image(
                chosen.image, model_name, method=methods[method_title], target=target,
                baseline=baselines[baseline_title], ig_steps=steps[steps_title] or None, image_name=chosen.name)

result: serving.ExplainResult | None = st.session_state.get(RESULT_KEY)
if result is not None:
    seen, overlay = st.columns(2)
    seen.image(result.model_input, caption="What the model sees (after preprocessing), at the image's own aspect ratio",
               width="stretch")
    overlay.image(result.overlay, caption=f"{serving.METHOD_TITLES.get(result.method, result.method)} overlay "
                  f"(`{result.model_name}`)", width="stretch")
    st.markdown(result.summary_markdown)
