"""The HybridCN-NAS phases of one smear, as pictures and a feature table (``model.stages(image)``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from leuk.io import ImageSource, read_image
from leuk.serving.assessment import verdict_headline
from leuk.verdict import UNCERTAIN_BELOW
from leuk.serving.classify import MAX_APP_PIXELS, classify_images
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.runtime import gpu

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class PipelineResult:
    """Pictures of each phase (with captions), the cells found and the selected features furthest from the
    training mean for this image."""

    model_name: str
    stages: list[tuple[Image.Image, str]]
    n_cells: int
    features: "pd.DataFrame"
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    #: the smear's uncertainty verdict (:mod:`leuk.verdict`), as the Classify tab gives it
    verdict: Any = None
    #: the model's verdict threshold (:attr:`leuk.hub.LoadedModel.uncertain_below`)
    threshold: float = UNCERTAIN_BELOW
    #: the file the phases are about (an upload's or a sample's name), ``""`` when unknown
    image_name: str = ""

    @property
    def gallery(self) -> list[tuple[Image.Image, str]]:
        """``(image, caption)`` pairs for a gallery widget."""
        return list(self.stages)

    @property
    def summary_markdown(self) -> str:
        """The smear's verdict, then the cells found and the prediction."""
        about = f" in `{self.image_name}`" if self.image_name else ""
        text = f"**{self.n_cells} cell{'s' if self.n_cells != 1 else ''} found**{about} by `{self.model_name}`."
        if self.label is not None:
            text += f" Prediction: **{self.label}** ({self.probabilities.get(self.label, float('nan')):.3f})."
        return text if self.verdict is None else f"{verdict_headline(self.verdict, self.threshold)}\n\n{text}"


def _has_stages(loaded: Any) -> bool:
    """Whether a loaded model's family shows its phases (:attr:`leuk.models.family.ModelFamily.has_phases`)."""
    family = getattr(loaded, "family", None)
    return bool(family is not None and family.has_phases)


def pipeline_model_names(registry: ModelRegistry | None = None) -> list[str]:
    """Configured models that expose the HybridCN-NAS phases (loads them)."""
    return (registry or get_registry()).names_where(_has_stages)


def _label_map_to_rgb(labels: np.ndarray) -> np.ndarray:
    """An integer cell-label map coloured per cell (background black), for display."""
    rng = np.random.default_rng(0)
    palette = rng.integers(60, 256, size=(int(labels.max()) + 1, 3), dtype=np.uint8)
    palette[0] = 0
    return palette[labels]


def as_picture(value: Any) -> Image.Image:
    """A PIL image from a stage output: PIL image, RGB/grey uint8 array, float array in [0, 1] or boolean mask."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == bool:
        return Image.fromarray(array.astype(np.uint8) * 255).convert("RGB")
    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        high = float(np.nanmax(array)) if array.size else 1.0
        array = np.clip(np.nan_to_num(array) * (255.0 if high <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


@gpu()
def pipeline_stages(image: ImageSource, model_name: str | None = None, *, image_name: str | None = None,
                    registry: ModelRegistry | None = None) -> PipelineResult:
    """Run the HybridCN-NAS phases on one smear with ``model_name`` (default: the first model that has them).
    ``image_name``: the file's name for the result text (default: the name of a path ``image``)."""
    registry = registry or get_registry()
    name = registry.choose(model_name, _has_stages,
                           wrong_kind="has no pipeline phases: choose a HybridCN-NAS model",
                           none_configured="no HybridCN-NAS model is configured, so there is no pipeline to show")
    picture = read_image(image, max_pixels=MAX_APP_PIXELS)
    loaded = registry.get(name)
    stages = loaded.model.stages(picture, processor=loaded.processor, top_k=TOP_FEATURES)
    result = result_from_stages(name, stages, size=picture.size)
    classified = classify_images([picture], name, registry=registry)
    result.verdict, result.threshold = classified.verdict, classified.threshold
    if image_name is None and isinstance(image, (str, os.PathLike)):
        image_name = Path(image).name
    result.image_name = image_name or ""
    return result


#: Phases shown, in order: (key of ``model.stages``, caption).
SHOWN_PHASES = (
    ("input", "1. input (resized)"),
    ("stain_normalized", "2. stain-normalised (Reinhard)"),
    ("clahe", "3. CLAHE on L"),
    ("preprocessed", "4. preprocessed: what the model sees"),
)
TOP_FEATURES = 10


def _cells_picture(base: np.ndarray, cell_labels: np.ndarray, cells: list[dict[str, Any]],
                   size: tuple[int, int] | None = None) -> Image.Image:
    """The preprocessed image with each watershed cell tinted in its own colour, boxed and numbered; with ``size``
    (the original's width, height) drawn at the original's aspect ratio (boxes scaled, numbers left unstretched)."""
    from PIL import ImageDraw

    from leuk.explain import restore_aspect

    rgb = np.asarray(base, dtype=np.uint8)
    labels = np.asarray(cell_labels)
    scale_x = scale_y = 1.0
    if size is not None and labels.shape == rgb.shape[:2]:
        height, width = rgb.shape[:2]
        rgb = restore_aspect(rgb, size)
        labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(
            (rgb.shape[1], rgb.shape[0]), Image.Resampling.NEAREST))
        scale_x, scale_y = rgb.shape[1] / width, rgb.shape[0] / height
    if labels.shape == rgb.shape[:2] and labels.max(initial=0) > 0:
        colours = _label_map_to_rgb(labels.astype(np.int64))
        tinted = np.where(labels[..., None] > 0, (0.55 * rgb + 0.45 * colours).round(), rgb).astype(np.uint8)
    else:
        tinted = rgb
    picture = Image.fromarray(tinted)
    draw = ImageDraw.Draw(picture)
    for number, cell in enumerate(cells, start=1):
        x0, y0, x1, y1 = (int(round(v * scale)) for v, scale in zip(cell["box"], (scale_x, scale_y) * 2))
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=(255, 255, 0), width=1)
        draw.text((x0 + 2, y0 + 1), str(number), fill=(255, 255, 0))
    return picture


def result_from_stages(name: str, stages: dict[str, Any], *, size: tuple[int, int] | None = None) -> PipelineResult:
    """A :class:`PipelineResult` from the dict :meth:`HybridCNNASForImageClassification.stages` returns.

    The phases run on the smear resized to the model's square input; ``size`` (the original's width, height)
    stretches every picture back to the original's aspect ratio, so that cells keep their shape."""
    import pandas as pd

    from leuk.explain import restore_aspect

    def shown(picture: Image.Image, *, nearest: bool = False) -> Image.Image:
        return picture if size is None else Image.fromarray(restore_aspect(picture, size, nearest=nearest))

    pictures = [(shown(as_picture(stages[key])), caption) for key, caption in SHOWN_PHASES if key in stages]
    if "mask_probability" in stages:
        pictures.append((shown(as_picture(np.asarray(stages["mask_probability"], dtype=np.float32))),
                         "5. segmentation: cell probability (Attention U-Net)"))
    cells = list(stages.get("cells") or [])
    if "mask" in stages:
        pictures.append((shown(as_picture(np.asarray(stages["mask"], dtype=bool)), nearest=True),
                         "6. segmentation mask"))
    if "cell_labels" in stages and "preprocessed" in stages:
        pictures.append((_cells_picture(stages["preprocessed"], stages["cell_labels"], cells, size),
                         f"7. {len(cells)} cells found (watershed)"))
    if "branch_view" in stages:
        grown = int(stages.get("mask_dilation") or 0)
        pictures.append((shown(as_picture(stages["branch_view"])),
                         "8. what the CNN branches see" + (f" (mask grown by {grown} px)" if grown else "")))
    features = pd.DataFrame(
        [{"rank": rank, "feature": f["name"], "mRMR rank": f.get("mrmr_rank"), "z-score": round(float(f["z"]), 3)}
         for rank, f in enumerate(stages.get("top_features") or [], start=1)],
        columns=["rank", "feature", "mRMR rank", "z-score"],
    )
    probabilities = {str(k): float(v) for k, v in (stages.get("probabilities") or {}).items()}
    return PipelineResult(model_name=name, stages=pictures, n_cells=len(cells), features=features,
                          label=stages.get("label"), probabilities=probabilities)
