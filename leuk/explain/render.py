"""Pictures of attributions: heatmaps blended on the image and side-by-side panels (matplotlib Agg).

Figures are built with :class:`matplotlib.figure.Figure` directly, never through pyplot, so rendering is
thread-safe in the web apps and leaves no global state behind.
"""

from __future__ import annotations

import textwrap

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image

from leuk.explain._util import ExplainError

SIGNS: tuple[str, ...] = ("positive", "absolute", "all")
#: Default colormaps: sequential for magnitudes, diverging (white at zero) for signed maps.
DEFAULT_CMAPS = {"positive": "turbo", "absolute": "turbo", "all": "RdBu_r"}

ImageLike = Union[np.ndarray, Image.Image]


def as_rgb_uint8(image: ImageLike) -> np.ndarray:
    """An H x W x 3 uint8 array from a PIL image or an array (uint8, float in [0, 1], grey or RGBA)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # C x H x W
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ExplainError(f"cannot show an array of shape {arr.shape} as an image")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    return arr


def display_image(pixel_values: Any, processor: Any = None) -> np.ndarray:
    """The image the model saw (H x W x 3 uint8) from processed ``pixel_values`` (C x H x W or 1 x C x H x W).

    Undoes the processor's normalisation (``image_mean``/``image_std``) and rescaling (``rescale_factor``)
    as far as it applies them; without a processor the values' range is stretched to 0-255. The attribution
    maps align with this image.
    """
    arr = np.asarray(pixel_values.detach().cpu().float() if hasattr(pixel_values, "detach") else pixel_values,
                     dtype=np.float64)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim != 3:
        raise ExplainError(f"pixel values of shape {arr.shape} are not one image")
    if processor is None:
        low, high = float(arr.min()), float(arr.max())
        arr = (arr - low) / (high - low if high > low else 1.0) * 255.0
    else:
        mean = getattr(processor, "image_mean", None)
        std = getattr(processor, "image_std", None)
        if getattr(processor, "do_normalize", False) and mean is not None and std is not None:
            channel = (-1, 1, 1)
            arr = arr * np.asarray(std, np.float64).reshape(channel) + np.asarray(mean, np.float64).reshape(channel)
        if getattr(processor, "do_rescale", False):
            arr = arr / float(getattr(processor, "rescale_factor", 1 / 255))
    return np.clip(np.moveaxis(arr, 0, -1), 0, 255).round().astype(np.uint8)


def restore_aspect(picture: ImageLike, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """A model-input picture stretched back to the aspect ratio of the original image, ``size`` = (width, height).

    Both families' processors resize the whole image to a square (no crop), so the square the model saw is the
    original squashed; stretching it (and any map aligned with it) back gives every structure its true shape.
    The shorter side keeps its length, the longer one grows. ``nearest`` for masks and label maps.
    """
    rgb = as_rgb_uint8(picture)
    height, width = rgb.shape[:2]
    out_width, out_height = (int(v) for v in size)
    if out_width <= 0 or out_height <= 0 or out_width * height == out_height * width:
        return rgb
    if out_width * height > out_height * width:  # wider than the picture: keep its height
        target = (max(1, round(height * out_width / out_height)), height)
    else:
        target = (width, max(1, round(width * out_height / out_width)))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(rgb).resize(target, resample))


def normalize_attribution(attribution: np.ndarray, sign: str = "positive", percentile: float = 99.0) -> np.ndarray:
    """Scale a map for display: [0, 1] for ``positive`` (negatives dropped) and ``absolute``, [-1, 1] for ``all``.

    Values are divided by the ``percentile``-th percentile of the shown magnitudes and clipped, so that a
    few extreme pixels do not wash out the rest. A map with nothing to show comes back as zeros.
    """
    if sign not in SIGNS:
        raise ExplainError(f"unknown sign {sign!r}: use one of {', '.join(SIGNS)}")
    values = np.nan_to_num(np.asarray(attribution, dtype=np.float64))
    if sign == "positive":
        values = np.clip(values, 0, None)
    elif sign == "absolute":
        values = np.abs(values)
    magnitudes = np.abs(values[values != 0])
    scale = float(np.percentile(magnitudes, percentile)) if magnitudes.size else 0.0
    if scale <= 0:
        return np.zeros_like(values)
    low = -1.0 if sign == "all" else 0.0
    return np.clip(values / scale, low, 1.0)


def _resize_map(attribution: np.ndarray, height: int, width: int) -> np.ndarray:
    attr = np.asarray(attribution, dtype=np.float32)
    if attr.ndim != 2:
        raise ExplainError(f"an attribution map must be H x W, got shape {attr.shape}")
    if attr.shape == (height, width):
        return attr
    return np.asarray(Image.fromarray(attr, mode="F").resize((width, height), Image.Resampling.BILINEAR))


def render_overlay(
    image: ImageLike,
    attribution: np.ndarray,
    *,
    cmap: Optional[str] = None,
    alpha: float = 0.5,
    sign: str = "positive",
    percentile: float = 99.0,
) -> np.ndarray:
    """The heatmap of ``attribution`` blended on ``image``; returns H x W x 3 uint8 at the image's size.

    ``sign``: ``positive`` (evidence for the target), ``absolute`` (any evidence) or ``all`` (diverging:
    red for, blue against). ``alpha``: heatmap opacity in [0, 1]. The map is resized to the image if needed.
    """
    import matplotlib

    if not 0.0 <= alpha <= 1.0:
        raise ExplainError(f"alpha must be in [0, 1], got {alpha}")
    rgb = as_rgb_uint8(image)
    height, width = rgb.shape[:2]
    scaled = normalize_attribution(_resize_map(attribution, height, width), sign, percentile)
    if sign == "all":
        scaled = (scaled + 1.0) / 2.0
    try:
        colormap = matplotlib.colormaps[cmap or DEFAULT_CMAPS[sign]]
    except KeyError as err:
        raise ExplainError(f"unknown matplotlib colormap {cmap!r}") from err
    heat = colormap(scaled)[..., :3] * 255.0
    blended = (1.0 - alpha) * rgb.astype(np.float64) + alpha * heat
    return np.clip(blended, 0, 255).round().astype(np.uint8)


def _panel_items(explanations: Any) -> list[tuple[str, np.ndarray, Any]]:
    """(title, map, explanation or None) for each panel from Explanations or a mapping of maps."""
    if isinstance(explanations, Mapping):
        items = list(explanations.items())
    elif hasattr(explanations, "attribution"):
        items = [(explanations.method, explanations)]
    else:
        items = [(getattr(e, "method", str(i)), e) for i, e in enumerate(explanations)]
    out = []
    for name, value in items:
        if hasattr(value, "attribution"):
            out.append((str(name), np.asarray(value.attribution), value))
        else:
            out.append((str(name), np.asarray(value), None))
    if not out:
        raise ExplainError("nothing to draw: give at least one explanation")
    return out


def panel_info(explanation: Any, probabilities: Optional[Mapping[str, float]] = None) -> str:
    """What a panel's otherwise empty cell says: the class explained with its probability, every class
    probability (when given), the deletion/insertion AUCs and the explanation's notes."""
    label = explanation.label if explanation.label is not None else explanation.target
    lines = [f"explained: {label} (p={explanation.probability:.3f})"]
    if probabilities:
        lines += ["probabilities:"] + [f"  {name}: {value:.3f}" for name, value in
                                       sorted(probabilities.items(), key=lambda item: -item[1])]
    faith = explanation.faithfulness
    if faith is not None:
        lines.append(f"deletion AUC {faith.deletion_auc:.3f} (lower is better)")
        lines.append(f"insertion AUC {faith.insertion_auc:.3f} (higher is better)")
    lines += [f"note: {note}" for note in explanation.notes]
    return "\n".join(lines)


def render_panel(
    image: ImageLike,
    explanations: Union[Any, Sequence[Any], Mapping[str, Any]],
    *,
    cmap: Optional[str] = None,
    alpha: float = 0.5,
    sign: str = "positive",
    percentile: float = 99.0,
    curves: bool = False,
    title: Optional[str] = None,
    panel_size: float = 3.0,
    info: Optional[str] = None,
):
    """Side-by-side panels: the original image, then one overlay per method (matplotlib Figure, Agg).

    ``explanations``: an :class:`~leuk.explain.Explanation`, a list of them, or ``{title: map or
    Explanation}``. Each overlay's caption gives the target, its probability and the deletion/insertion
    AUCs; ``curves=True`` adds a row with the deletion and insertion curves, and the cell under the original
    holds ``info`` (e.g. the verdict and the class probabilities; default: :func:`panel_info` of the first
    explanation) instead of staying empty. Save with ``fig.savefig``.
    """
    from matplotlib.figure import Figure

    rgb = as_rgb_uint8(image)
    items = _panel_items(explanations)
    columns = len(items) + 1
    with_curves = curves and any(e is not None and e.faithfulness is not None for _, _, e in items)
    rows = 2 if with_curves else 1
    fig = Figure(figsize=(panel_size * columns, panel_size * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title("original", fontsize=9)
    for col, (name, attribution, exp) in enumerate(items, start=1):
        axes[0, col].imshow(render_overlay(rgb, attribution, cmap=cmap, alpha=alpha, sign=sign, percentile=percentile))
        caption = name.replace("_", " ")
        if exp is not None:
            label = exp.label if exp.label is not None else exp.target
            caption += f"\n{label}: p={exp.probability:.2f}"
            if exp.faithfulness is not None:
                f = exp.faithfulness
                caption += f"\ndel AUC {f.deletion_auc:.2f}  ins AUC {f.insertion_auc:.2f}"
        axes[0, col].set_title(caption, fontsize=8)
        if with_curves:
            ax = axes[1, col]
            if exp is not None and exp.faithfulness is not None:
                f = exp.faithfulness
                ax.plot(f.fractions, f.deletion, label="deletion")
                ax.plot(f.fractions, f.insertion, label="insertion")
                ax.set_ylim(-0.02, 1.02)
                ax.set_xlabel("fraction of pixels", fontsize=7)
                ax.tick_params(labelsize=6)
                ax.legend(fontsize=6, loc="best")
            else:
                ax.set_axis_off()
    for ax in axes[0]:
        ax.set_axis_off()
    if with_curves:
        text = info if info is not None else panel_info([e for _, _, e in items if e is not None][0])
        width = max(24, int(panel_size * 11))
        wrapped = "\n".join(textwrap.fill(line, width) if line else "" for line in text.splitlines())
        axes[1, 0].text(0.0, 1.0, wrapped, transform=axes[1, 0].transAxes, va="top", ha="left", fontsize=7,
                        family="monospace")
        axes[1, 0].set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
