"""Texts every leuk app shows: the medical-device disclaimer and the banner of a bundled model.

The banner says what the model's own records (``config.json``, ``eval_results.json``; see
:mod:`leuk.hub.provenance`) say it was trained on: synthetic look-alikes, or real cells with the number of
training subjects and the headline cross-subject figure. A model without such records gets the demo-weights
warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from leuk.hub.provenance import TrainingSummary

NOT_A_MEDICAL_DEVICE = (
    "**Not a medical device.** leuk is research software: its outputs are not a diagnosis and must not guide "
    "the care of any patient. Leukaemia is diagnosed by haematologists from morphology, flow cytometry and "
    "genetics, not by an image classifier."
)

DEMO_WEIGHTS = (
    "**Demo weights.** {names} {verb} trained only on small synthetic look-alike images, so that this app runs "
    "anywhere; {pronoun} predictions on real smears mean nothing. Set `LEUK_MODELS` to a trained model (Hub id "
    "with `@revision`, or a folder) for real use."
)


#: Banner of a model whose records say it was trained on synthetic data; ``{summary}`` from its records.
SYNTHETIC_WEIGHTS = (
    "**Demo weights.** {summary} (`{name}`), so that this app runs anywhere; its predictions on real images "
    "mean nothing. Set `LEUK_MODELS` to a trained model (Hub id with `@revision`, or a folder) for real use."
)
#: Banner of a model without any record of its training data.
UNRECORDED_WEIGHTS = (
    "**Demo weights.** `{name}` carries no record of real training data (no `eval_results.json` saying "
    "`\"synthetic\": false`): treat its predictions as meaningless. Set `LEUK_MODELS` to a trained model (Hub id "
    "with `@revision`, or a folder) for real use."
)
#: Banner of a bundled model trained on real data; ``{summary}`` from its records.
REAL_WEIGHTS = (
    "**Bundled model.** {summary} (`{name}`). A research model from a small public pool, with no external "
    "validation: its outputs are not a diagnosis."
)


def demo_banner(demo_names: Iterable[str]) -> str:
    """The demo-weights banner for these model names, or ``""`` when there are none."""
    names = [f"`{name}`" for name in demo_names]
    if not names:
        return ""
    plural = len(names) > 1
    return DEMO_WEIGHTS.format(
        names=", ".join(names), verb="were" if plural else "was", pronoun="their" if plural else "its"
    )


def model_banner(name: str, summary: "TrainingSummary | None") -> str:
    """The banner of model ``name`` from what its records say it was trained on (``summary``; ``None``: no records).

    Real data: e.g. ``EfficientNet-SE: trained on real C-NMC cells (2 HEM + 9 ALL subjects, 1,319 cells);
    cross-subject weighted F1 0.645 ± 0.067 over 3 folds``; synthetic: ``HybridCN-NAS lite: trained on synthetic
    smears`` inside the demo-weights warning.
    """
    if summary is None or summary.synthetic is None:
        return UNRECORDED_WEIGHTS.format(name=name)
    if summary.real:
        return REAL_WEIGHTS.format(name=name, summary=summary.text)
    return SYNTHETIC_WEIGHTS.format(name=name, summary=summary.text)

NO_MODEL_HELP = (
    "Set `LEUK_MODELS` to Hub ids (`org/name@revision`), model folders or `demo:<name>` (comma separated), or "
    "add the demo models to `assets/demo_models/` (`make demo-assets`)."
)
