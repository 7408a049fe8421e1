"""About: what leuk is for, what it is not for, and how its figures are made."""

from __future__ import annotations

import streamlit as st

from leuk import serving



def _bundled_models_text() -> str:
    """One Markdown bullet per bundled model: what its records say it was trained on."""
    from leuk.hub import list_demo_models
    from leuk.hub.loader import demo_models_dir
    from leuk.hub.provenance import folder_training_summary

    lines = []
    for name in list_demo_models():
        summary = folder_training_summary(demo_models_dir() / name)
        lines.append(f"- `demo:{name}`: {summary.text if summary is not None else 'no readable config.json'}")
    return "\n".join(lines) or "- none bundled"


st.title("About leuk")
st.warning(serving.NOT_A_MEDICAL_DEVICE, icon=":material/health_and_safety:")
st.markdown(f"""
**leuk** rebuilds two published leukemic-cell classifiers as reference software and evaluates them honestly:

- **EfficientNet-SE**: ALL (malignant lymphoblast) versus HEM (normal) on single segmented cells of the
  C-NMC 2019 dataset;
- **HybridCN-NAS**: four B-ALL classes (Benign, Early Pre-B, Pre-B, Pro-B) on peripheral blood smears of the
  Aria ALL dataset, with its four phases (preprocessing, segmentation, features, attention classifier).

### Intended use
Research and teaching: reproducing the two papers, comparing models under patient-wise evaluation, studying
calibration, uncertainty and explanations, and measuring how much image-level splits inflate published figures.

### Out of scope
Any clinical use: screening, diagnosis, triage or treatment decisions. The models saw images from few hospitals
and scanners; they have not been validated prospectively, on other stains, microscopes or populations, and
they cannot see what a haematologist needs (morphology across the whole smear, flow cytometry, genetics).

### How to read the outputs
- Probabilities are **calibrated** by a temperature fitted on validation data only; the test set is touched once.
- Every image and every patient gets one verdict, **confident** or **uncertain** with its reasons (see
  "Confident or uncertain" below). A confident prediction is not a correct one.
- The **patient-level** reading averages the probabilities of a patient's images and reports the majority vote.
- **Monte Carlo** figures come from repeated splits grouped by patient; the image-level protocol is shown only to
  measure the leakage that inflates published numbers.

### Bundled models
When no model is configured, the app serves the models bundled in `assets/demo_models/`. What each was trained
on comes from its own records (`eval_results.json`, `config.json`):

{_bundled_models_text()}

A model trained on synthetic look-alikes exists so that the app runs anywhere; its predictions on real images
mean nothing. Set `LEUK_MODELS` (Hub ids with `@revision`, folders, or `demo:<name>`) to serve other models.
The sample images: {serving.samples_description() or "none bundled"}.

### Confident or uncertain
{serving.UNCERTAINTY_HELP}
""")
