"""The Gradio app in a real browser: Debian's headless Chromium driven by playwright (never a downloaded browser).

Serves two tiny models as bundled demos (``demo:<name>``, the app's default configuration), visits every tab,
saves one screenshot per tab (into ``$LEUK_SCREENSHOTS`` when set, else a pytest temp folder) and checks the
notices, that clicking a sample shows a label, that an explanation and the pipeline phases appear, and that the
Monte Carlo and Models tabs fill themselves on page load.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_app_api import free_port, save_tiny_models, write_montecarlo_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed (`make browser`)"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    """URL of the app serving two tiny models and one Monte Carlo run."""
    from leuk import serving

    root = tmp_path_factory.mktemp("browser")
    save_tiny_models(root / "demo_models")  # served as demo:<name>, as the app's default configuration does
    write_montecarlo_run(root / "results" / "cnmc-demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        patch.setenv("LEUK_RESULTS_DIR", str(root / "results"))
        patch.setenv("LEUK_DEMO_MODELS_DIR", str(root / "demo_models"))
        patch.delenv("LEUK_MODELS", raising=False)
        serving.set_registry(serving.ModelRegistry())
        assert serving.get_registry().names == ["demo:efficientnet-se-test", "demo:hybridcn-nas-lite"]
        import app

        demo = app.build_demo()
        _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True, **app.LAUNCH_OPTIONS)
        try:
            assert not serving.warm_up()
            yield url
        finally:
            demo.close()
            serving.set_registry(None)


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 1000})
            tab.set_default_timeout(TIMEOUT_MS)
            tab.goto(app_url, wait_until="load")
            tab.get_by_role("tab", name="Classify").wait_for()
            yield tab
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("LEUK_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_classify_tab_shows_a_label_after_clicking_a_sample(page, shots):
    open_tab(page, "Classify")
    assert "Not a medical device" in page.locator("#medical-notice").inner_text()
    assert "Demo weights" in page.locator("#demo-banner").inner_text()
    thumbnails = page.locator("#sample-gallery button.thumbnail-item")
    thumbnails.first.wait_for()
    page.screenshot(path=shots / "classify_empty.png", full_page=True)
    thumbnails.first.click()
    label = page.locator("#class-label")
    label.get_by_text("%").first.wait_for()  # a class with its probability
    assert any(name in label.inner_text() for name in ("hem", "all"))
    page.get_by_text("images classified").wait_for()
    page.screenshot(path=shots / "classify.png", full_page=True)


def test_explain_tab(page, shots):
    open_tab(page, "Explain")
    page.get_by_role("button", name="Explain").wait_for()
    page.locator("#tab-explain").get_by_text("all_1.png").click()  # an example fills the upload
    page.get_by_role("button", name="Explain").click()
    page.locator("#overlay img").wait_for()
    page.get_by_text("Faithfulness").first.wait_for()
    page.screenshot(path=shots / "explain.png", full_page=True)


def test_pipeline_tab(page, shots):
    open_tab(page, "Pipeline")
    page.locator("#tab-pipeline").get_by_text("Benign_1.jpg").click()
    page.get_by_role("button", name="Run pipeline").click()
    page.locator("#stages img").first.wait_for()
    page.locator("#pipeline-summary").get_by_text("found").wait_for()
    page.screenshot(path=shots / "pipeline.png", full_page=True)


def test_montecarlo_tab(page, shots):
    open_tab(page, "Monte Carlo")
    page.locator("#mc-summary").get_by_text("iterations").wait_for()
    page.locator("#mc-distribution img").wait_for()
    page.screenshot(path=shots / "montecarlo.png", full_page=True)


def test_models_tab(page, shots):
    open_tab(page, "Models")
    page.locator("#model-summary").get_by_text("parameters").wait_for()
    assert "from_pretrained" in page.locator("body").inner_text()
    page.screenshot(path=shots / "models.png", full_page=True)
    assert len(list(shots.glob("*.png"))) >= 5
