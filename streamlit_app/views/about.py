"""About: what leuk is for, what it is not for, and how its figures are made."""

from __future__ import annotations

import streamlit as st

from leuk import serving


def _bundled_summaries() -> dict:
    """``{name: TrainingSummary or None}`` of every bundled model, from its own records."""
    from leuk.hub import list_demo_models
    from leuk.hub.loader import demo_models_dir
    from leuk.hub.provenance import folder_training_summary

    return {name: folder_training_summary(demo_models_dir() / name) for name in list_demo_models()}


def _bundled_models_text(summaries: dict) -> str:
    """One Markdown bullet per bundled model: what its records say it was trained on."""
    lines = [f"- `demo:{name}`: {summary.text if summary is not None else 'no readable config.json'}"
             for name, summary in summaries.items()]
    return "\n".join(lines) or "- none bundled"


def _bundled_data_text(summaries: dict) -> str:
    """What the bundled models' training data means for their predictions, as their records say it."""
    synthetic = [f"`demo:{name}`" for name, s in summaries.items() if s is not None and s.synthetic]
    unknown = [f"`demo:{name}`" for name, s in summaries.items() if s is None or s.synthetic is None]
    real = [name for name, s in summaries.items() if s is not None and s.real]
    parts = []
    if synthetic:
        parts.append(f"{', '.join(synthetic)} {'was' if len(synthetic) == 1 else 'were'} trained on synthetic "
                     "look-alikes so that the app runs anywhere; its predictions on real images mean nothing.")
    if unknown:
        parts.append(f"The records of {', '.join(unknown)} do not say what it was trained on.")
    if real and not synthetic and not unknown:
        parts.append(f"{'Both' if len(real) == 2 else 'All' if len(real) > 2 else 'The'} bundled "
                     f"model{'s were' if len(real) > 1 else ' was'} trained on real images; each answers only for "
                     "images like its own training data (anything else is not assessed) and none is validated for "
                     "clinical use.")
    return " ".join(parts)


SUMMARIES = _bundled_summaries()

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
- An image unlike the model's training images (out of distribution) or unreadable is **not assessed**: no class
  and no percentage are given for it, and the **patient-level** reading, which averages the probabilities of a
  patient's images and reports the majority vote, leaves it out and says how many it left out.
- **Monte Carlo** figures come from repeated splits grouped by patient; the image-level protocol is shown only to
  measure the leakage that inflates published numbers.

### Bundled models
When no model is configured, the app serves the models bundled in `assets/demo_models/`. What each was trained
on comes from its own records (`eval_results.json`, `config.json`):

{_bundled_models_text(SUMMARIES)}

{_bundled_data_text(SUMMARIES)} Set `LEUK_MODELS` (Hub ids with `@revision`, folders, or `demo:<name>`) to serve other models.
The sample images: {serving.samples_description() or "none bundled"}.

### Confident or uncertain
{serving.UNCERTAINTY_HELP}
""")
