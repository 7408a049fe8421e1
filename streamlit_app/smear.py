"""The Predict page's Smear mode: smear photos in, every white cell found, cut out onto black and classified.

A thin view over :func:`leuk.serving.classify_smears`: the smears with each cell's box coloured by its call, the
summary, the cell crops (pick one to explain its call), the per-cell and per-smear tables and the CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from leuk import serving
from streamlit_app import ui

RESULT_KEY = "smear_result"
EXPLAINED_KEY = "smear_explained"
RENDERED_KEY = "smear_rendered"
CSV_NAME = "leuk_smear_cells.csv"
COLUMNS = 6


def cell_model(selected: str) -> str | None:
    """:func:`leuk.serving.cell_model_for` (the selected model when it classifies single cells, else the first
    configured one that does), with its error shown on the page."""
    return ui.attempt("list the single-cell models", serving.cell_model_for, selected)


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


def _encoded(picture) -> bytes:
    import io

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Rendered:
    """What the page shows of one result, made once: every click (an *Explain*, a method choice) reruns the
    page, and re-encoding a large smear and rebuilding the tables each time cost more than the explanation."""

    result: serving.SmearsResult
    boxed: list[bytes]
    crops: list[bytes]
    captions: list[str]
    cell_table: Any
    smear_table: Any
    csv: bytes


def rendered(result: serving.SmearsResult) -> Rendered:
    """The :class:`Rendered` view of ``result`` (kept in the session until the next result)."""
    kept = st.session_state.get(RENDERED_KEY)
    if kept is None or kept.result is not result:
        readable = [smear for smear in result.smears if smear.error is None]
        gallery = [item for smear in result.smears for item in smear.gallery()]
        kept = Rendered(result, [_encoded(smear.annotated()) for smear in readable],
                        [_encoded(image) for image, _ in gallery], [caption for _, caption in gallery],
                        result.cell_table(), result.smear_table(),
                        result.table().to_csv(index=False).encode("utf-8"))
        st.session_state[RENDERED_KEY] = kept
    return kept


@st.fragment
def explain_one(model_name: str, crops: list) -> None:
    """Pick a cell and a method, explain its call. A fragment: its widgets rerun only this part of the page, not
    the smears, crops and tables above and below it."""
    choices = [f"{smear.name} cell {cell.number}" for smear, cell in crops]
    pick, method, go = st.columns([3, 2, 1], vertical_alignment="bottom")
    chosen = pick.selectbox("Explain the call of", choices, key="smear_cell")
    method_name = method.selectbox("Method", [value for _, value in serving.explain_method_choices()],
                                   key="smear_method")
    if go.button("Explain", key="smear_explain", icon=":material/visibility:"):
        smear, cell = crops[choices.index(chosen)]
        with ui.user_errors("explain the cell"), st.spinner("Explaining…"):
            explained = serving.explain_image(cell.crop, model_name, method=method_name)
            st.session_state[EXPLAINED_KEY] = (chosen, explained)
    shown = st.session_state.get(EXPLAINED_KEY)
    if shown is not None and shown[0] in choices:
        left, right = st.columns(2)
        left.image(shown[1].overlay, caption=shown[0], width="stretch")
        right.markdown(shown[1].summary_markdown)


def show(result: serving.SmearsResult) -> None:
    """Boxes, summary, crops with an explanation of the chosen one, both tables and the CSV download."""
    view = rendered(result)
    st.markdown(result.summary_markdown)
    readable = [smear for smear in result.smears if smear.error is None]
    for column, smear, picture in zip(st.columns(min(3, max(1, len(readable)))), readable, view.boxed):
        column.image(picture, caption=smear.headline, width="stretch")
    st.caption("Boxes: red ALL, green HEM, thin with ? uncertain, grey skipped (see the reason in the table).")
    crops = [(smear, cell) for smear in result.smears for cell in smear.classified]
    if crops:
        st.markdown("**Cells cut out onto black, as C-NMC cells**")
        for start in range(0, len(crops), COLUMNS):
            for column, picture, caption in zip(st.columns(COLUMNS), view.crops[start:start + COLUMNS],
                                                view.captions[start:start + COLUMNS]):
                column.image(picture, caption=caption, width="stretch")
        explain_one(result.model_name, crops)
    st.markdown("**Per cell** (box in the smear's pixels)")
    st.dataframe(view.cell_table, hide_index=True, width="stretch")
    st.markdown("**Per smear and patient**")
    st.dataframe(view.smear_table, hide_index=True, width="stretch")
    st.download_button("Download CSV (a row per cell, per smear and the patient)", view.csv, file_name=CSV_NAME,
                       mime="text/csv", on_click="ignore", icon=":material/download:", key="smear_csv")


def page(selected: str) -> None:
    """The Smear mode's controls and its last result."""
    st.file_uploader("Smear images of one patient (PNG, JPG, BMP, TIFF)", type=ui.UPLOAD_TYPES,
                     accept_multiple_files=True, key="smear_files")
    st.selectbox("Cell finder", list(serving.SEGMENTER_LABELS), format_func=serving.SEGMENTER_LABELS.get, key="smear_segmenter")
    if st.button("Find and classify every white cell", type="primary", icon=":material/play_arrow:",
                 key="smear_run"):
        st.session_state.pop(EXPLAINED_KEY, None)
        with ui.user_errors("classify the smears"):
            run(selected)
    if RESULT_KEY in st.session_state:
        show(st.session_state[RESULT_KEY])
