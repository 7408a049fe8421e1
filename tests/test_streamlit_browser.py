"""The Streamlit dashboard in a real browser: ``streamlit run`` in a subprocess, Debian's headless Chromium driven
by playwright (never a downloaded browser), the Monte Carlo page until its Altair charts are drawn.

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
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
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
