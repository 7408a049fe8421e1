"""One prediction-row schema (``leuk.serving.rows``): every surface's columns come from it."""

from __future__ import annotations

from leuk.inference import Prediction
from leuk.serving import ImageResult
from leuk.serving.assessment import NOT_ASSESSED
from leuk.serving.rows import (
    APP_TABLE,
    BATCH_CSV,
    CLI_CSV,
    COLUMNS,
    SMEAR_CELL,
    PredictionRow,
    json_record,
)

LABELS = ["hem", "all"]
OOD = "out of distribution: unlike the training images (feature distance 9.0 > 3.0)"


def _prediction(**kw) -> Prediction:
    base = dict(source="a.png", label="all", probabilities={"hem": 0.123456, "all": 0.876544},
                top_probability=0.876544, ood_score=1.23456)
    return Prediction(**{**base, **kw})


def test_every_view_selects_schema_columns_only():
    schema = {column for column, _ in COLUMNS}
    for view in (CLI_CSV, BATCH_CSV, APP_TABLE, SMEAR_CELL):
        assert {column for column, _ in view.columns} <= schema
        assert len(view.headers(LABELS)) == len(set(view.headers(LABELS)))
    assert PredictionRow.columns(LABELS) == ["file", "label", "top_probability", "p_hem", "p_all", "ood_score",
                                             "assessed", "uncertain", "reasons", "verdict", "error"]


def test_a_prediction_and_its_image_result_give_one_row():
    prediction = _prediction(uncertain=True, reasons=[OOD])
    result = ImageResult(name="a.png", label="all", probabilities=dict(prediction.probabilities),
                         top_probability=prediction.top_probability, ood_score=prediction.ood_score,
                         uncertain=True, reasons=[OOD])
    row = PredictionRow.of(prediction, "a.png")
    assert row == PredictionRow.of(result, "a.png")
    assert row.assessed is False and result.assessed is False
    assert json_record(prediction, row)["assessed"] is False


def test_views_rename_round_and_hide():
    row = PredictionRow.of(_prediction(uncertain=True, reasons=[OOD]), "a.png")
    app = APP_TABLE.render(row, LABELS)
    assert list(app) == ["image", "label", "top probability", "p(hem)", "p(all)", "OOD score", "verdict", "reasons",
                         "error"]
    assert app["label"] == NOT_ASSESSED and app["p(all)"] is None and app["OOD score"] == 1.23
    csv_row = CLI_CSV.render(row, LABELS)
    assert csv_row["probability"] == 0.876544 and csv_row["label"] == "all" and csv_row["assessed"] is False
    assert SMEAR_CELL.render(None, LABELS) == {"label": "", "p_hem": None, "p_all": None, "assessed": None,
                                               "ood_score": None, "verdict": "", "reasons": ""}


def test_an_unreadable_image_shows_its_error_once_in_the_app():
    prediction = Prediction(source="b.png", error="b.png: not a readable image", uncertain=True,
                            reasons=["unreadable: b.png: not a readable image"])
    app = APP_TABLE.render(PredictionRow.of(prediction, "b.png"), LABELS)
    assert app["label"] == "" and app["reasons"] == "" and app["error"] == "not a readable image"
    assert BATCH_CSV.render(PredictionRow.of(prediction, "b.png"), LABELS)["uncertain_reasons"].startswith("unread")
