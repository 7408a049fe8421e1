"""Predict: classify one image, many images or a zip archive; per-image and patient-level tables, CSV download.
Smear mode (:mod:`streamlit_app.smear`): smear photos in, every white cell found, cut out and classified."""

from __future__ import annotations

import streamlit as st

from leuk import serving
from leuk.serving import batch as batching
from streamlit_app import charts, smear, ui

#: Session-state key of the last batch result (kept across reruns, e.g. the download click).
RESULT_KEY = "predict_result"
CSV_NAME = "leuk_predictions.csv"


def probability_columns(labels: list[str], prefix: str = "p_") -> dict[str, object]:
    """Column formats of a table holding ``<prefix><class>`` probabilities."""
    config: dict[str, object] = {f"{prefix}{name}": st.column_config.ProgressColumn(
        f"{prefix}{name}", min_value=0.0, max_value=1.0, format="%.3f") for name in labels}
    config["top_probability"] = st.column_config.NumberColumn("top probability", format="%.3f")
    config["ood_score"] = st.column_config.NumberColumn(
        "OOD score", format="%.1f",
        help="Mahalanobis distance of the image's features to the training images (the model's stored detector)")
    config["uncertain"] = st.column_config.CheckboxColumn("uncertain")
    return config


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def headline(total: int, read: int, model_name: str) -> str:
    """The result's title: how many images were classified, and how many could not be read."""
    if read == 0:
        return ("No image classified: the file could not be read" if total == 1
                else f"No image classified: none of the {total} files could be read")
    unreadable = f" ({_count(total - read, 'unreadable file')} left out)" if read < total else ""
    return f"{_count(read, 'image')} classified by `{model_name}`{unreadable}"


def gather_inputs(model: str) -> list[batching.NamedImage]:
    """The uploaded files, the images of the uploaded zip and the chosen samples, as one batch."""
    images = [batching.NamedImage(f.name, f.getvalue()) for f in st.session_state.get("predict_files") or []]
    archive = st.session_state.get("predict_zip")
    if archive is not None:
        images += batching.read_zip_images(archive.getvalue(), archive_name=archive.name)
    chosen = set(st.session_state.get("predict_samples") or [])
    images += [batching.NamedImage(s.path.name, str(s.path)) for s in serving.samples_for_model(model)
               if s.path.name in chosen]
    return images


def run_batch(model: str) -> None:
    """Classify the gathered inputs with a progress bar and keep the result in the session."""
    images = gather_inputs(model)
    if not images:
        st.warning("Upload images or a zip archive, or pick samples, first.", icon=":material/upload:")
        return
    bar = st.progress(0.0, text=f"Classifying {len(images)} image(s)…")

    def advance(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Classified {done} of {total} image(s)")

    st.session_state[RESULT_KEY] = batching.classify_batch(images, model, progress=advance)
    bar.empty()


def show(batch: batching.BatchResult) -> None:
    """Headline numbers, the probabilities of a single image or patient, both tables and the CSV download."""
    result = batch.result
    table = batch.table()
    patients = batch.patient_table()
    st.subheader(headline(len(table), int((table["error"] == "").sum()), result.model_name))
    count, uncertain, not_assessed, failed, groups = st.columns(5)
    count.metric("images read", int((table["error"] == "").sum()))
    uncertain.metric("uncertain", int(table["uncertain"].sum()))
    not_assessed.metric("not assessed", int((~table["assessed"] & (table["error"] == "")).sum()),
                        help="out of distribution: unlike the images this model was trained on; no class is given "
                             "and the patient label leaves them out")
    failed.metric("unreadable", int((table["error"] != "").sum()))
    groups.metric("patients", len(patients) if "patient_id" in table.columns else "not known")

    if result.aggregate is None:
        errors = [item.error for item in result.images if item.error][:8]
        st.warning("Nothing was classified: no image could be read.\n\n" + "\n".join(f"- {e}" for e in errors),
                   icon=":material/broken_image:")
    elif len(patients) <= 1 and not result.assessed:  # no class, no percentage: the verdict says why
        st.markdown(result.flag_markdown)
    elif len(patients) <= 1:
        chart, verdict = st.columns([3, 2])
        single = int((table["error"] == "").sum()) == 1  # the one readable image, not a mean
        chart.markdown("**Calibrated probabilities**" + ("" if single else " (patient mean of the assessed images)"))
        chart.altair_chart(charts.probability_chart(result.label_output()), width="stretch")
        verdict.markdown(result.flag_markdown)
    else:
        left_out = int(patients["left_out"].sum())
        st.markdown(f"**{int(patients['uncertain'].sum())} of {len(patients)} patients flagged uncertain.**"
                    + (f" {left_out} image(s) not assessed (unlike the images this model was trained on), left "
                       "out of their patients' labels." if left_out else ""))
    hidden = result.not_assessed_lines()
    if hidden:
        with st.expander(result.DETAILS_TITLE, expanded=False):
            st.markdown("\n\n".join(hidden))

    st.markdown("**Per image**")
    st.dataframe(batch.display_table(), hide_index=True, column_config=probability_columns(batch.labels),
                 width="stretch")
    st.markdown("**Patient level** (mean of the calibrated probabilities and majority vote over the assessed images: "
                "readable and not out of distribution)")
    st.dataframe(patients, hide_index=True, column_config=probability_columns(batch.labels, "mean_p_"),
                 width="stretch")
    st.download_button("Download CSV (one row per image)", batch.csv_bytes(), file_name=CSV_NAME, mime="text/csv",
                       on_click="ignore", icon=":material/download:", key="predict_csv")
    threshold = serving.get_registry().get(result.model_name).uncertain_below
    notes = [serving.uncertainty_rule(threshold)]
    notes.append(f"Out-of-distribution check: {result.ood_reference}." if result.ood_reference
                 else f"No out-of-distribution check: {result.ood_note}.")
    st.caption(" ".join(notes))
    with st.expander("What confident / uncertain and the OOD score mean"):
        st.markdown(serving.UNCERTAINTY_HELP)


st.title("Predict")
model_name = ui.require_model()
if st.radio("Input", serving.MODES, horizontal=True, key="predict_mode",
            help="single cells cut out onto black (as C-NMC), or smear photos: every white cell is found, cut "
                 "out onto black and classified") == serving.MODES[1]:
    st.markdown("Upload smear photos of one patient: every white cell is found (at the scale where the smear's red "
                "cells are 13 px across, so any magnification gives the same cells), cut out onto black at the "
                "C-NMC cell scale and classified by the single-cell model, with a row per cell and a summary per "
                "smear and patient.")
    smear.page(model_name)
    st.stop()
st.markdown("Upload one image, the images of one or several patients, or a zip archive. Patient ids come from "
            "C-NMC file names (`UID_<subject>_…`) or from the folder holding each image inside the zip.")

files_column, zip_column = st.columns(2)
files_column.file_uploader("Images (PNG, JPG, BMP, TIFF)", type=ui.UPLOAD_TYPES, accept_multiple_files=True,
                           key="predict_files")
zip_column.file_uploader("…or a zip archive of images (one folder per patient)", type=["zip"], key="predict_zip")
sample_names = [s.path.name for s in serving.samples_for_model(model_name)]
st.multiselect("…or bundled samples (the model's own task first)", sample_names, key="predict_samples",
               help=serving.samples_description())

if st.button("Classify", type="primary", icon=":material/play_arrow:", key="predict_run"):
    with ui.user_errors("classify"):
        run_batch(model_name)

if RESULT_KEY in st.session_state:
    show(st.session_state[RESULT_KEY])
