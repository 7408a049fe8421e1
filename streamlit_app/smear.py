"""The Predict page's Smear mode: smear photos in, every white cell found, cut out onto black and classified.

A thin view over :func:`leuk.serving.classify_smears`: the smears with each cell's box coloured by its call, the
summary, the cell crops (pick one to explain its call), the per-cell and per-smear tables and the CSV.
"""

from __future__ import annotations

import streamlit as st

from leuk import serving
from streamlit_app import ui

RESULT_KEY = "smear_result"
EXPLAINED_KEY = "smear_explained"
CSV_NAME = "leuk_smear_cells.csv"
COLUMNS = 6
SEGMENTERS = {"auto": "U-Net of the HybridCN-NAS model (colour threshold if it finds none)",
              "unet": "U-Net only", "classical": "colour threshold only"}


def cell_model(selected: str) -> str | None:
    """The selected model when it classifies single cells, else the first configured one that does."""
    names = ui.attempt("list the single-cell models", serving.cell_model_names) or []
    return selected if selected in names else (names[0] if names else None)


def run(selected: str) -> None:
    """Classify the uploaded smears and keep the result in the session."""
    uploads = st.session_state.get("smear_files") or []
    if not uploads:
        st.warning("Upload one or more smear images first.", icon=":material/upload:")
        return
    model = cell_model(selected)
    if model is None:
        st.warning("No single-cell model (with an 'all' class) is configured to classify the cells.",
                   icon=":material/info:")
        return
    with st.spinner(f"Finding and classifying the white cells of {len(uploads)} smear(s)…"):
        st.session_state[RESULT_KEY] = serving.classify_smears(
            [upload.getvalue() for upload in uploads], model, names=[upload.name for upload in uploads],
            segmenter=st.session_state.get("smear_segmenter", "auto"))


def show(result: serving.SmearsResult) -> None:
    """Boxes, summary, crops with an explanation of the chosen one, both tables and the CSV download."""
    st.markdown(result.summary_markdown)
    readable = [smear for smear in result.smears if smear.error is None]
    for column, smear in zip(st.columns(min(3, max(1, len(readable)))), readable):
        column.image(smear.annotated(), caption=smear.headline, width="stretch")
    st.caption("Boxes: red ALL, green HEM, thin with ? uncertain, grey skipped (see the reason in the table).")
    crops = [(smear, cell) for smear in result.smears for cell in smear.classified]
    if crops:
        st.markdown("**Cells cut out onto black, as C-NMC cells**")
        captions = [caption for smear in result.smears for _, caption in smear.gallery()]
        for start in range(0, len(crops), COLUMNS):
            for column, (smear, cell), caption in zip(st.columns(COLUMNS), crops[start:start + COLUMNS],
                                                       captions[start:start + COLUMNS]):
                column.image(cell.crop, caption=caption, width="stretch")
        choices = [f"{smear.name} cell {cell.number}" for smear, cell in crops]
        pick, method, go = st.columns([3, 2, 1], vertical_alignment="bottom")
        chosen = pick.selectbox("Explain the call of", choices, key="smear_cell")
        method_name = method.selectbox("Method", [value for _, value in serving.explain_method_choices()],
                                       key="smear_method")
        if go.button("Explain", key="smear_explain", icon=":material/visibility:"):
            smear, cell = crops[choices.index(chosen)]
            with ui.user_errors("explain the cell"), st.spinner("Explaining…"):
                explained = serving.explain_image(cell.crop, result.model_name, method=method_name)
                st.session_state[EXPLAINED_KEY] = (chosen, explained)
        shown = st.session_state.get(EXPLAINED_KEY)
        if shown is not None and shown[0] in choices:
            left, right = st.columns(2)
            left.image(shown[1].overlay, caption=shown[0], width="stretch")
            right.markdown(shown[1].summary_markdown)
    st.markdown("**Per cell** (box in the smear's pixels)")
    st.dataframe(result.cell_table(), hide_index=True, width="stretch")
    st.markdown("**Per smear and patient**")
    st.dataframe(result.smear_table(), hide_index=True, width="stretch")
    st.download_button("Download CSV (a row per cell, per smear and the patient)",
                       result.table().to_csv(index=False).encode("utf-8"), file_name=CSV_NAME, mime="text/csv",
                       on_click="ignore", icon=":material/download:", key="smear_csv")


def page(selected: str) -> None:
    """The Smear mode's controls and its last result."""
    st.file_uploader("Smear images of one patient (PNG, JPG, BMP, TIFF)", type=ui.UPLOAD_TYPES,
                     accept_multiple_files=True, key="smear_files")
    st.selectbox("Cell finder", list(SEGMENTERS), format_func=SEGMENTERS.get, key="smear_segmenter")
    if st.button("Find and classify every white cell", type="primary", icon=":material/play_arrow:",
                 key="smear_run"):
        st.session_state.pop(EXPLAINED_KEY, None)
        with ui.user_errors("classify the smears"):
            run(selected)
    if RESULT_KEY in st.session_state:
        show(st.session_state[RESULT_KEY])
