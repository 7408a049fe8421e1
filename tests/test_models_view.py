"""The Models tab of the Gradio app on the bundled default model, through the HTTP API.

In a module of its own: it serves another registry than tests/test_app_api.py's module-wide server, and a test
there that swapped the process-wide registry left that server's later tests without their models.
"""

from __future__ import annotations

import pandas as pd
import pytest

from test_app_api import free_port

DEFAULT_F1 = ("F1 (weighted)", "0.781 ± 0.021", 0.793)  # demo:efficientnet-se: over its 3 folds, pooled


def test_models_tab_headline_and_per_subject_tables_of_the_default_model(tmp_path):
    """Through the API: the default model's headline holds weighted F1 as mean ± sd over folds with its pooled
    value (3 decimals), and the per-subject table lists its 17 held-out subjects, each with its fold."""
    from gradio_client import Client

    from leuk import serving
    from leuk.hub import list_demo_models

    if "efficientnet-se" not in list_demo_models():
        pytest.skip("demo:efficientnet-se is not bundled")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        previous = serving.registry._DEFAULT  # restored afterwards, whatever else is serving
        serving.set_registry(serving.ModelRegistry(["demo:efficientnet-se"], device="cpu"))
        import app

        demo = app.build_demo()
        _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True, **app.LAUNCH_OPTIONS)
        try:
            client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
            summary, card, metrics, snippet, headline, breakdown = client.predict("demo:efficientnet-se",
                                                                                 api_name="/model_info")
            client.close()
        finally:
            demo.close()
            serving.set_registry(previous)
    table = pd.DataFrame(headline["data"], columns=headline["headers"])
    assert list(table.columns[:3]) == ["metric", "mean ± sd over folds", "pooled"]
    assert table.iloc[0]["metric"] == DEFAULT_F1[0], "weighted F1 leads the headline"
    row = table.set_index("metric").loc[DEFAULT_F1[0]]
    assert "±" in row["mean ± sd over folds"] and row["mean ± sd over folds"] == DEFAULT_F1[1]
    assert float(row["pooled"]) == pytest.approx(DEFAULT_F1[2], abs=1e-9)
    subjects = pd.DataFrame(breakdown["data"], columns=breakdown["headers"])
    assert len(subjects) == 17 and subjects["subject"].nunique() == 17
    assert {"H10", "H14", "H22", "2", "51"} <= set(subjects["subject"].astype(str))
    assert set(subjects["held out in fold"].astype(int)) == {0, 1, 2}
    assert "leave-one-rare-subject-out" in summary and "Calibration" in summary
    assert all(len(str(v).rsplit(".", 1)[-1]) <= 3 for v in subjects["accuracy"]), "3 decimals"
