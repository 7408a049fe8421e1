"""The dashboard's Altair charts, each drawn from one long-format table.

Monte Carlo charts take the tables of :mod:`leuk.experiments.plots` (``metric_frame``, ``difference_frame``,
``leakage_frame``) restricted to one metric; every point is one iteration, with a tooltip, and clicking a legend
entry highlights that group.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import altair as alt
import pandas as pd

CHART_HEIGHT = 280
#: Groups drawn in this order when present (the honest protocol first); others follow in order of appearance.
PREFERRED_ORDER = ("patient", "image")


def _order(values: pd.Series, first: Sequence[str] = PREFERRED_ORDER) -> list[str]:
    """The distinct values, those of ``first`` first (in that order), the rest in order of appearance."""
    seen = [str(v) for v in dict.fromkeys(values)]
    return [v for v in first if v in seen] + [v for v in seen if v not in first]


def _box_and_points(data: pd.DataFrame, *, x: str, y: str, color: str, y_title: str, title: str,
                    tooltip: list[str], zero_rule: bool, x_order: Sequence[str] = ()) -> alt.LayerChart:
    """A box per ``x`` (split by ``color``) with every observation drawn over it as a point; ``x_order`` (e.g. the
    run's model order) sorts the boxes."""
    offsets = data[color].nunique() if color != x else 1
    # every group keeps its label: slanted enough not to collide, never dropped for overlapping (Vega hides
    # colliding labels by default, which left 2 of 4 models named)
    x_axis = alt.X(f"{x}:N", title=None, sort=_order(data[x], x_order),
                   axis=alt.Axis(labelAngle=-35, labelLimit=220, labelOverlap=False, labelAlign="right",
                                 labelBaseline="middle"))
    y_axis = alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False))
    colour_order = _order(data[color], x_order if color == x else PREFERRED_ORDER)
    colour = alt.Color(f"{color}:N", title=color, scale=alt.Scale(domain=colour_order, scheme="tableau10"))
    shared = {"x": x_axis, "y": y_axis, "color": colour}
    if offsets > 1:
        shared["xOffset"] = alt.XOffset(f"{color}:N", sort=colour_order)
    box = alt.Chart(data).mark_boxplot(size=max(8, 36 // offsets), opacity=0.45, outliers=False).encode(
        **shared)
    pick = alt.selection_point(fields=[color], bind="legend")
    points = alt.Chart(data).mark_circle(size=26).encode(
        **shared,
        opacity=alt.condition(pick, alt.value(0.75), alt.value(0.06)),
        tooltip=[alt.Tooltip(f"{name}:Q", format=".4f") if pd.api.types.is_float_dtype(data[name])
                 else alt.Tooltip(name) for name in tooltip],
    ).add_params(pick)
    layers: list[alt.Chart] = [box, points]
    if zero_rule:
        layers.append(alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(strokeDash=[5, 4], color="gray")
                      .encode(y="zero:Q"))
    return alt.layer(*layers).properties(title=title, height=CHART_HEIGHT)


def distribution_chart(values: pd.DataFrame, metric: str, models: Sequence[str] = ()) -> alt.LayerChart:
    """Scores of one metric over the iterations, per model (in the order of ``models``) and protocol
    (columns of ``plots.metric_frame``)."""
    data = values[values["metric"] == metric]
    return _box_and_points(data, x="model", y="value", color="protocol", y_title=metric,
                           title=f"{metric}: per iteration", tooltip=["model", "protocol", "iteration", "value"],
                           zero_rule=False, x_order=models)


def difference_chart(differences: pd.DataFrame, metric: str, reference: str,
                     models: Sequence[str] = ()) -> alt.LayerChart:
    """Paired differences (model − ``reference``, same split) of one metric (``plots.difference_frame``)."""
    data = differences[differences["metric"] == metric].assign(
        comparison=lambda frame: frame["model"].astype(str) + f" − {reference}")
    return _box_and_points(data, x="comparison", y="difference", color="protocol",
                           y_title=f"Δ {metric}", title=f"{metric}: model − {reference}, paired by iteration",
                           tooltip=["comparison", "protocol", "iteration", "difference"], zero_rule=True,
                           x_order=[f"{model} − {reference}" for model in models])


def leakage_chart(gaps: pd.DataFrame, metric: str, models: Sequence[str] = ()) -> alt.LayerChart:
    """Leakage gap of one metric (image-level − patient-level score, same iteration; ``plots.leakage_frame``)."""
    data = gaps[gaps["metric"] == metric]
    return _box_and_points(data, x="model", y="gap", color="model", y_title=f"Δ {metric} (image − patient)",
                           title=f"{metric}: leakage gap", tooltip=["model", "iteration", "gap"], zero_rule=True,
                           x_order=models)


def probability_chart(probabilities: Mapping[str, float]) -> alt.LayerChart:
    """Horizontal bars of class probabilities (one image, or a patient's mean), labelled with their values.

    The height (:data:`PROBABILITY_CHART_MIN_HEIGHT` at least) is that of the whole chart, axes included, as
    Streamlit fits it: a smaller one leaves the bars a pixel or two.
    """
    data = pd.DataFrame({"class": list(probabilities), "probability": [float(v) for v in probabilities.values()]})
    base = alt.Chart(data).encode(
        y=alt.Y("class:N", sort="-x", title=None, axis=alt.Axis(labelFontSize=LABEL_FONT_SIZE, labelLimit=200)),
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="calibrated probability",
                axis=alt.Axis(format=".0%", tickCount=5, labelFontSize=LABEL_FONT_SIZE - 1,
                              titleFontSize=LABEL_FONT_SIZE)),
        tooltip=["class", alt.Tooltip("probability:Q", format=".4f")],
    )
    bars = base.mark_bar(color="#be123c")
    text = base.mark_text(align="left", dx=4, fontSize=LABEL_FONT_SIZE).encode(
        text=alt.Text("probability:Q", format=".3f"))
    return alt.layer(bars, text).properties(height=probability_chart_height(len(data)))


#: Smallest height of :func:`probability_chart`, axes included (pixels).
PROBABILITY_CHART_MIN_HEIGHT = 160
LABEL_FONT_SIZE = 13


def probability_chart_height(n_classes: int) -> int:
    """Height of :func:`probability_chart` for ``n_classes`` bars: about 40 px per bar plus the axes."""
    return max(PROBABILITY_CHART_MIN_HEIGHT, 40 * n_classes + 80)
