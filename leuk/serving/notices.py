"""Texts every leuk app shows: the medical-device disclaimer and the demo-weights banner."""

from __future__ import annotations

from typing import Iterable

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


def demo_banner(demo_names: Iterable[str]) -> str:
    """The demo-weights banner for these model names, or ``""`` when there are none."""
    names = [f"`{name}`" for name in demo_names]
    if not names:
        return ""
    plural = len(names) > 1
    return DEMO_WEIGHTS.format(
        names=", ".join(names), verb="were" if plural else "was", pronoun="their" if plural else "its"
    )

NO_MODEL_HELP = (
    "Set `LEUK_MODELS` to Hub ids (`org/name@revision`), model folders or `demo:<name>` (comma separated), or "
    "add the demo models to `assets/demo_models/` (`make demo-assets`)."
)
