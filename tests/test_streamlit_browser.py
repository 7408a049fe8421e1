"""The Streamlit dashboard in a real browser: ``streamlit run`` in a subprocess, Debian's headless Chromium driven
by playwright (never a downloaded browser), at 1400 x 900: the Monte Carlo page until its Altair charts are drawn;
the Predict page's probability chart (tall enough to read), an unreadable upload named by its file, and no
developer toolbar ("Deploy") for visitors.

Screenshots go to ``$LEUK_SCREENSHOTS`` when set, else a pytest temp folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_streamlit_app import (  # noqa: F401  (dashboard_server_factory is a fixture)
    MC_RUN,
    dashboard_env,
    dashboard_server_factory,
    save_tiny_models,
    write_montecarlo_run,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 120_000
CHART = ".vega-embed canvas, .vega-embed svg"
VIEWPORT = {"width": 1400, "height": 900}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed (`make browser`)"),
]


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory: pytest.TempPathFactory, dashboard_server_factory) -> str:
    """URL of ``streamlit run streamlit_app/app.py`` serving two tiny demo models and one Monte Carlo run."""
    root = tmp_path_factory.mktemp("dashboard")
    save_tiny_models(root / "demo_models")  # served as demo:<name>, as the default configuration does
    write_montecarlo_run(root / "results" / MC_RUN)
    env = dashboard_env("", root / "results")
    env["LEUK_DEMO_MODELS_DIR"] = str(root / "demo_models")
    return dashboard_server_factory(env, root / "streamlit.log")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("LEUK_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_montecarlo_page_draws_its_charts(dashboard_url: str, shots: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{dashboard_url}/montecarlo", wait_until="load")
            page.get_by_role("heading", name="Monte Carlo").first.wait_for()
            # the first tab shows one distribution chart per headline metric (three in this run)
            page.wait_for_function(
                f"Array.from(document.querySelectorAll('{CHART}')).filter(e => e.getBoundingClientRect().width > 0)"
                ".length >= 3")
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.get_by_text("Demo weights.").first.is_visible()
            assert page.get_by_text("These results come from synthetic data").first.is_visible()
            page.screenshot(path=str(shots / "streamlit_montecarlo.png"), full_page=True)

            page.get_by_role("tab", name="Statistics").click()
            page.get_by_text("Paired tests").first.wait_for()
            page.locator('[data-testid="stDataFrame"] >> visible=true').first.wait_for()
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(shots / "streamlit_statistics.png"), full_page=True)
        finally:
            browser.close()
    assert (shots / "streamlit_montecarlo.png").stat().st_size > 10_000


def test_predict_page_chart_upload_errors_and_no_developer_toolbar(dashboard_url: str, shots: Path, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is text, not a picture")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(dashboard_url, wait_until="load")  # Predict is the default page, served at /
            page.get_by_role("heading", name="Predict").first.wait_for()
            # .streamlit/config.toml: visitors see no "Deploy" button and no developer options
            page.locator('[data-testid="stToolbar"], [data-testid="stMainMenu"]').first.wait_for(state="attached")
            assert page.get_by_role("button", name="Deploy").count() == 0
            assert page.locator('[data-testid="stAppDeployButton"]').count() == 0

            # an unreadable upload is named by its file, and nothing pretends to have been classified
            page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(broken))
            page.get_by_text("broken.png").first.wait_for()
            page.get_by_role("button", name="Classify").click()
            page.get_by_text("No image classified").first.wait_for()
            page.get_by_text("broken.png: not a readable image").first.wait_for()  # the page is still drawing
            body = page.locator("body").inner_text()
            assert "broken.png: not a readable image" in body and "upload:" not in body
            assert "patients flagged" not in body and "image(s) classified" not in body
            page.screenshot(path=str(shots / "streamlit_predict_unreadable.png"), full_page=True)

            # plus one bundled sample: its probability bars, drawn tall enough to read
            page.locator('[data-testid="stMultiSelect"]').first.click()
            page.get_by_role("option", name="all_1.png").click()
            page.keyboard.press("Escape")
            page.get_by_role("button", name="Classify").click()
            page.get_by_text("(1 unreadable file left out)").first.wait_for()
            page.get_by_text("Per image").first.wait_for()
            chart = page.locator('[data-testid="stVegaLiteChart"]').first
            chart.locator('[aria-roledescription="bar"]').first.wait_for()
            page.wait_for_timeout(500)  # let vega finish its layout
            assert chart.bounding_box()["height"] >= 150
            bars = [bar.bounding_box()["height"] for bar in chart.locator('[aria-roledescription="bar"]').all()]
            assert len(bars) == 2 and min(bars) >= 20, bars
            assert page.locator('[data-testid="stException"]').count() == 0
            chart.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "streamlit_predict.png"), full_page=False)
        finally:
            browser.close()


#: Chips of the visible multiselects that are cut off (running past their field's right edge): their texts.
CUT_CHIPS = """() => {
  const cut = [];
  for (const field of document.querySelectorAll('[data-testid="stMultiSelect"]')) {
    const box = field.querySelector('[data-baseweb="select"]') || field;
    const right = box.getBoundingClientRect().right;
    for (const chip of field.querySelectorAll('[data-baseweb="tag"]')) {
      const r = chip.getBoundingClientRect();
      if (r.width && r.right > right - 40) cut.push(chip.innerText);
    }
  }
  return cut;
}"""


def test_montecarlo_filters_and_charts_name_every_model(dashboard_url: str, shots: Path):
    """Every model of the run is a whole chip in the filter, and every chart names each model on its axis."""
    from playwright.sync_api import sync_playwright

    from test_streamlit_app import MC_MODELS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{dashboard_url}/montecarlo", wait_until="load")
            page.get_by_role("heading", name="Monte Carlo").first.wait_for()
            page.wait_for_function(
                f"Array.from(document.querySelectorAll('{CHART}')).filter(e => e.getBoundingClientRect().width > 0)"
                ".length >= 3")
            page.wait_for_timeout(800)
            assert page.evaluate(CUT_CHIPS) == []
            models = page.locator('[data-testid="stMultiSelect"]').nth(1)
            assert all(models.get_by_text(name, exact=True).count() == 1 for name in MC_MODELS)
            chart = page.locator('[data-testid="stVegaLiteChart"]').first
            chart.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            # Vega draws with SVG or canvas; its accessible description lists the axis values, and the drawn
            # labels (SVG) must be all of them
            texts = chart.locator("svg text").evaluate_all("(els) => els.map(e => e.textContent)")
            if texts:
                assert all(name in texts for name in MC_MODELS), texts
            page.screenshot(path=str(shots / "streamlit_montecarlo_filters_charts.png"), full_page=False)
        finally:
            browser.close()
