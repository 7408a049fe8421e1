"""The Gradio app in a real browser: Debian's headless Chromium driven by playwright (never a downloaded browser),
at 1400 x 900.

Serves two tiny models as bundled demos (``demo:<name>``, the app's default configuration), visits every tab,
saves one screenshot per tab (into ``$LEUK_SCREENSHOTS`` when set, else a pytest temp folder) and checks the
notices; that every sample of the gallery is fully visible and clickable and that a clicked sample replaces the
upload; that table headers never break inside a word and the Classify tables fit their boxes; that a 2:1 image
keeps its shape in the Explain overlay and the Pipeline's first phase; that the IG baseline can be chosen; that a
bad Monte Carlo source leaves the loaded results and shows one message; that a mistake's toast says what failed;
and that the Monte Carlo and Models tabs fill themselves on page load.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_app_api import free_port, save_tiny_models, write_montecarlo_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 90_000
VIEWPORT = {"width": 1400, "height": 900}

#: Words of visible table headers (within ``root``) that the browser broke across lines.
BROKEN_HEADER_WORDS = """(root) => {
  const broken = [];
  for (const th of root.querySelectorAll('thead th')) {
    if (!th.getBoundingClientRect().width) continue;
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const lines = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""
#: Visible tables (within ``root``) wider than their box: [their width, the box's width].
OVERFLOWING_TABLES = """(root) => Array.from(root.querySelectorAll('.virtual-table-viewport'))
  .filter(v => v.getBoundingClientRect().width > 0 && v.scrollWidth > v.clientWidth + 1)
  .map(v => [v.scrollWidth, v.clientWidth])"""
#: Visible table cells (within ``root``) whose text is cut: wider than the cell shows, or running past the right
#: edge of the window or of the table's box: [the text, why].
CLIPPED_CELLS = """(root) => {
  const cut = [];
  for (const viewport of root.querySelectorAll('.virtual-table-viewport')) {
    const box = viewport.getBoundingClientRect();
    if (!box.width) continue;
    for (const cell of viewport.querySelectorAll('thead th, tbody td')) {
      const r = cell.getBoundingClientRect();
      if (!r.width) continue;
      const text = cell.innerText.trim();
      if (!text) continue;
      if (r.right > Math.min(innerWidth, box.right) + 1) { cut.push([text, 'past the right edge']); continue; }
      for (const inner of cell.querySelectorAll('*')) {
        if (inner.innerText.trim() && inner.scrollWidth > inner.clientWidth + 1
            && getComputedStyle(inner).overflowX !== 'visible') {
          cut.push([text, 'text wider than its cell']); break;
        }
      }
    }
  }
  return cut;
}"""
#: Whether the element's centre and four points just inside its corners are hit on it (nothing lies over it,
#: nothing clips it); it must be scrolled into view first.
FULLY_VISIBLE = """(element) => {
  const r = element.getBoundingClientRect();
  if (r.width < 10 || r.height < 10 || r.right > innerWidth || r.bottom > innerHeight) return false;
  const points = [[r.left + r.width / 2, r.top + r.height / 2], [r.left + 3, r.top + 3], [r.right - 3, r.top + 3],
                  [r.left + 3, r.bottom - 3], [r.right - 3, r.bottom - 3]];
  return points.every(([x, y]) => { const hit = document.elementFromPoint(x, y); return hit && element.contains(hit); });
}"""

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
            tab = browser.new_page(viewport=VIEWPORT)
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


@pytest.fixture(scope="module")
def wide_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A cell and a smear twice as wide as high (two bundled samples side by side)."""
    from leuk.serving import list_samples

    root = tmp_path_factory.mktemp("wide")
    out = {}
    for task in ("cnmc", "aria"):
        sample = next(s.path for s in list_samples(task))
        array = np.asarray(Image.open(sample).convert("RGB"))
        out[task] = root / f"wide_{task}.png"
        Image.fromarray(np.concatenate([array, array], axis=1)).save(out[task])
    return out


def test_classify_tab_samples_upload_and_tables(page, shots):
    open_tab(page, "Classify")
    assert "Not a medical device" in page.locator("#medical-notice").inner_text()
    assert "Demo weights" in page.locator("#demo-banner").inner_text()
    thumbnails = page.locator("#sample-gallery button.thumbnail-item")
    thumbnails.first.wait_for()
    page.wait_for_timeout(500)  # let the gallery finish its layout
    page.screenshot(path=shots / "classify_empty.png", full_page=True)
    # every sample is fully visible (not under the gallery's label, not cut off on the right) and clickable
    # only the samples the selected model takes: C-NMC single cells for EfficientNet-SE, no Aria smear
    assert thumbnails.count() == 6
    assert set(page.locator("#sample-gallery").inner_text().split()) <= {"all", "hem"}
    for index in range(thumbnails.count()):
        thumbnail = thumbnails.nth(index)
        thumbnail.scroll_into_view_if_needed()
        assert thumbnail.evaluate(FULLY_VISIBLE), f"sample {index} is hidden or cut off: {thumbnail.bounding_box()}"
    gallery = page.locator("#sample-gallery").bounding_box()
    right = max(thumbnails.nth(i).bounding_box()["x"] + thumbnails.nth(i).bounding_box()["width"]
                for i in range(thumbnails.count()))
    assert right <= gallery["x"] + gallery["width"]

    # a clicked sample replaces what was uploaded, so the upload box shows what the results are about
    upload = page.locator("#tab-classify input[type=file]").first
    uploaded = sorted((Path(__file__).resolve().parents[1] / "assets" / "samples" / "aria").glob("*.jpg"))[0]
    upload.set_input_files(str(uploaded))
    page.locator("#tab-classify").get_by_text(uploaded.name).first.wait_for()
    thumbnails.first.click()
    label = page.locator("#class-label")
    label.get_by_text("%").first.wait_for()  # a class with its probability
    assert any(name in label.inner_text() for name in ("hem", "all"))
    page.get_by_text("images assessed").wait_for()
    page.wait_for_function("() => !document.querySelector('#tab-classify').innerText.includes(%r)" % uploaded.name)
    assert "all_1.png" in page.locator("#tab-classify").inner_text()

    # table headers break between words only, and the Classify tables fit their boxes
    page.wait_for_timeout(500)
    assert page.locator("#tab-classify").evaluate(BROKEN_HEADER_WORDS) == []
    assert page.locator("#tab-classify").evaluate(OVERFLOWING_TABLES) == []
    page.screenshot(path=shots / "classify.png", full_page=True)


def test_an_upload_replaces_the_sample_and_no_table_cell_is_clipped(page, shots, tmp_path):
    """After a sample click, an upload replaces the sample (Gradio would append it); the result names the files
    it used; the per-image table with an error column fits at 1400 px; a sample click then replaces the upload."""
    from leuk.serving import list_samples

    open_tab(page, "Classify")
    tab = page.locator("#tab-classify")
    assert "all_1.png" in tab.inner_text()  # the sample clicked by the previous test
    cells = list_samples("cnmc")
    mine = tmp_path / "patient_cell.png"
    mine.write_bytes(cells[4].path.read_bytes())
    broken = tmp_path / "scanner_export_that_is_not_a_picture.png"
    broken.write_bytes(b"this is text, not a picture")
    tab.locator("input[type=file]").first.set_input_files([str(mine), str(broken)])
    box = page.locator("#classify-files")
    names_in_box = "() => document.querySelector('#classify-files').innerText.replace(/\\n/g, '')"

    def in_box() -> str:  # the file names the upload box lists (Gradio splits each before its suffix)
        return page.evaluate(names_in_box)

    page.wait_for_function(f"() => ({names_in_box})().includes({mine.name!r})"
                           f" && !({names_in_box})().includes('all_1.png')")
    assert broken.name in in_box()
    page.get_by_role("button", name="Classify", exact=True).click()
    flag = page.locator("#uncertain-flag")
    flag.get_by_text("Classified 2 images").wait_for()
    assert mine.name in flag.inner_text() and broken.name in flag.inner_text()
    assert "all_1.png" not in tab.inner_text()  # neither in the box nor in any result
    page.wait_for_timeout(800)
    assert tab.evaluate(OVERFLOWING_TABLES) == []
    assert tab.evaluate(CLIPPED_CELLS) == []
    assert "not a readable image" in tab.inner_text()  # the error column is there, and shown whole
    page.screenshot(path=shots / "classify_upload_replaces_sample.png", full_page=True)

    # a sample click replaces the uploads: the box holds only the clicked sample
    thumbnails = page.locator("#sample-gallery button.thumbnail-item")
    thumbnails.nth(3).click()
    flag.get_by_text("Classified image").wait_for()
    page.wait_for_function(f"() => !({names_in_box})().includes('patient_cell.png')")
    assert cells[3].path.name in in_box() and broken.name not in in_box()
    assert cells[3].path.name in flag.inner_text() and mine.name not in flag.inner_text()


def test_explain_tab_keeps_the_aspect_ratio_and_offers_the_baseline(page, shots, wide_images):
    open_tab(page, "Explain")
    tab = page.locator("#tab-explain")
    page.get_by_role("button", name="Explain").wait_for()
    # a mistake's toast says what failed, under the warning level (Gradio 6.31 shows no toast titles)
    page.get_by_role("button", name="Explain").click()
    toast = page.locator("[data-testid=toast-body]").first
    toast.wait_for()
    assert "Nothing to explain: Upload an image first" in toast.inner_text()
    assert "warning" in (toast.get_attribute("class") or "")
    page.locator("[data-testid=toast-close]").first.click()

    tab.locator("input[type=file]").first.set_input_files(str(wide_images["cnmc"]))
    tab.get_by_text(wide_images["cnmc"].name).first.wait_for()
    tab.locator("#explain-baseline input").wait_for()
    assert tab.locator("#explain-baseline input").is_disabled()  # Grad-CAM starts from no baseline
    tab.locator("#explain-method input").click()
    page.get_by_role("option", name="Integrated Gradients").click()
    page.wait_for_function("() => !document.querySelector('#explain-baseline input').disabled")
    tab.locator("#explain-baseline input").click()
    page.get_by_role("option", name="blurred image", exact=False).click()
    # the IG steps setting is live for Integrated Gradients, and the result says how many steps it used
    tab.locator("#explain-ig-steps input").click()
    page.get_by_role("option", name="32", exact=True).click()
    page.get_by_role("button", name="Explain").click()
    overlay = page.locator("#overlay img")
    overlay.wait_for()
    page.get_by_text("Faithfulness").first.wait_for()
    text = page.locator("#faithfulness").inner_text()
    assert "from the blur baseline, 32 steps" in text and wide_images["cnmc"].name in text
    assert "n_steps" not in text  # advice, when there is any, names the setting on the screen
    natural = overlay.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    shown = overlay.bounding_box()
    assert natural[0] / natural[1] == pytest.approx(2.0, rel=0.02)
    assert shown["width"] / shown["height"] == pytest.approx(2.0, rel=0.05)
    page.screenshot(path=shots / "explain.png", full_page=True)

    # Grad-CAM on a cell cut out onto black: the result says what it did with the heat on the background, or
    # that the map is empty and which method shows the call
    tab.locator("#explain-method input").click()
    page.get_by_role("option", name="Grad-CAM", exact=True).click()
    page.wait_for_function("() => document.querySelector('#explain-ig-steps input').disabled")
    page.get_by_role("button", name="Explain").click()
    page.wait_for_function("() => { const t = document.querySelector('#faithfulness').innerText;"
                           " return t.includes('Grad-CAM') && !t.includes('32 steps'); }")
    text = page.locator("#faithfulness").inner_text()
    assert "Background masked" in text or ("map is empty" in text and "Integrated Gradients" in text), text
    page.screenshot(path=shots / "explain_gradcam.png", full_page=True)


def test_pipeline_tab_keeps_the_aspect_ratio(page, shots, wide_images):
    open_tab(page, "Pipeline")
    tab = page.locator("#tab-pipeline")
    tab.locator("input[type=file]").first.set_input_files(str(wide_images["aria"]))
    tab.get_by_text(wide_images["aria"].name).first.wait_for()
    page.get_by_role("button", name="Run pipeline").click()
    first = page.locator("#stages img").first
    first.wait_for()
    page.locator("#pipeline-summary").get_by_text("found").wait_for()
    page.wait_for_function("() => { const img = document.querySelector('#stages img');"
                           " return img !== null && img.complete && img.naturalHeight > 0; }")
    natural = first.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert natural[0] / natural[1] == pytest.approx(2.0, rel=0.02)
    page.screenshot(path=shots / "pipeline.png", full_page=True)


def test_montecarlo_tab_keeps_its_results_when_a_source_is_bad(page, shots):
    open_tab(page, "Monte Carlo")
    tab = page.locator("#tab-montecarlo")
    page.locator("#mc-summary").get_by_text("iterations").wait_for()
    page.locator("#mc-distribution img").wait_for()
    page.wait_for_timeout(500)
    assert tab.evaluate(BROKEN_HEADER_WORDS) == []
    # the paired tests and the leakage gap fit at 1400 px: no table scrolls sideways, no cell is cut
    assert tab.evaluate(OVERFLOWING_TABLES) == []
    assert tab.evaluate(CLIPPED_CELLS) == []
    assert "t-test p" in tab.inner_text() and "t_pvalue" not in tab.inner_text()
    page.screenshot(path=shots / "montecarlo.png", full_page=True)
    summary = page.locator("#mc-summary").inner_text()
    chart = page.locator("#mc-distribution img").get_attribute("src")

    source = page.locator("#mc-source input")
    source.fill("/no/such/results-folder")
    source.press("Enter")
    page.get_by_role("button", name="Load").click()
    message = tab.get_by_text("Cannot load Monte Carlo results")
    message.first.wait_for()
    assert message.count() == 1 and "/no/such/results-folder" in message.first.inner_text()
    page.wait_for_timeout(1000)
    # what was loaded stays: no panel turns into an "Error" badge, and no toast repeats the message
    assert page.locator("#mc-summary").inner_text() == summary
    assert page.locator("#mc-distribution img").get_attribute("src") == chart
    assert tab.get_by_text("Error", exact=True).count() == 0
    assert page.locator("[data-testid=toast-body]").count() == 0
    page.screenshot(path=shots / "montecarlo_bad_source.png", full_page=False)


def test_models_tab(page, shots):
    open_tab(page, "Models")
    page.locator("#model-summary").get_by_text("parameters").wait_for()
    assert "from_pretrained" in page.locator("body").inner_text()
    page.screenshot(path=shots / "models.png", full_page=True)
    assert len(list(shots.glob("*.png"))) >= 5


def test_the_gallery_follows_the_models_task(page, shots):
    """HybridCN-NAS is offered the Aria smears, and only them, in Classify and in Explain; EfficientNet-SE the
    C-NMC cells again; a model switch clears the previous model's result instead of leaving it beside the new
    model's name."""
    open_tab(page, "Classify")
    gallery = page.locator("#sample-gallery")

    def choose(name: str) -> None:
        page.locator("#model-select input").click()
        page.get_by_role("option", name=name).click()

    gallery.locator("button, img").first.click()  # a result of the first model
    page.wait_for_function("() => /hem|all/.test(document.querySelector('#class-label').innerText)")
    choose("demo:hybridcn-nas-lite")
    page.wait_for_function("() => !/hem|all/.test(document.querySelector('#class-label').innerText)")
    page.wait_for_function("() => document.querySelector('#sample-gallery').innerText.includes('Benign')")
    assert set(gallery.inner_text().split()) <= {"Benign", "Early", "Pre", "Pro"}
    assert "Aria smear" in page.locator("#samples-note").inner_text()
    assert "C-NMC" not in page.locator("#samples-note").inner_text()
    page.screenshot(path=shots / "classify_gallery_smears.png", full_page=True)
    open_tab(page, "Explain")
    explain_gallery = page.locator("#explain-sample-gallery")
    page.wait_for_function("() => document.querySelector('#explain-sample-gallery').innerText.includes('Benign')")
    assert set(explain_gallery.inner_text().split()) <= {"Benign", "Early", "Pre", "Pro"}
    explain_gallery.locator("button, img").first.click()  # the sample goes into the Explain box
    page.locator("#tab-explain").get_by_text(".jpg").first.wait_for()
    open_tab(page, "Classify")
    choose("demo:efficientnet-se-test")
    page.wait_for_function("() => document.querySelector('#sample-gallery').innerText.includes('hem')")
    assert set(gallery.inner_text().split()) <= {"all", "hem"}


def test_smear_boxes_keep_their_line_width_at_any_resolution(page, shots, tmp_path):
    """Smear mode on one drawn smear at 320 px and at 2560 px: both boxed pictures come back at the same display
    size with the same box line width (it follows the picture, not the upload), and the boxes are visible in a
    screenshot at 1400 px."""
    import io

    from test_smear_cells import crowded_smear

    small = crowded_smear([(90, 100, 26), (230, 210, 22)])
    paths = [tmp_path / "smear_320.png", tmp_path / "smear_2560.png"]
    Image.fromarray(small).save(paths[0])
    Image.fromarray(small).resize((2560, 2560), Image.Resampling.BICUBIC).save(paths[1])
    open_tab(page, "Classify")
    page.locator("#classify-mode").get_by_text("Smear", exact=True).first.click()
    page.locator("#tab-classify input[type=file]").first.set_input_files([str(p) for p in paths])
    page.locator("#tab-classify").get_by_text("smear_2560").first.wait_for()
    page.get_by_role("button", name="Find and classify every white cell").click()
    page.locator("#smear-summary").get_by_text("used as the ruler").first.wait_for()
    images = page.locator("#smear-boxes img")
    images.first.wait_for()
    page.wait_for_timeout(500)
    page.screenshot(path=shots / "classify_smear_boxes.png", full_page=True)
    sources = [images.nth(i).get_attribute("src") for i in range(images.count())]
    pictures = [np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB")) for src in sources]
    assert len(pictures) >= 2 and {p.shape for p in pictures} == {(1024, 1024, 3)}

    def line_width(picture: np.ndarray) -> int:
        """The commonest horizontal run of box-coloured pixels no longer than 24 px: the width of the boxes'
        vertical edges (grey, red or green lines), whatever the number of boxes."""
        near = np.logical_or.reduce([np.all(np.abs(picture.astype(int) - colour) <= 40, axis=2)
                                     for colour in ((140, 140, 140), (220, 38, 38), (22, 163, 74))])
        runs = []
        for row in near:
            edges = np.flatnonzero(np.diff(np.r_[0, row.astype(np.int8), 0]))
            runs += [int(end - start) for start, end in zip(edges[::2], edges[1::2]) if end - start <= 24]
        assert runs, "no box line found"
        return int(np.bincount(runs).argmax())

    # thin (uncertain, skipped) or thick (confident) boxes: one or three line units of the served picture, the same
    # for the 320 px and the 2560 px upload
    from leuk.serving.cells import box_line_unit

    unit = box_line_unit((1024, 1024))
    widths = [line_width(p) for p in pictures[:2]]
    assert unit >= 2 and all(min(abs(w - unit), abs(w - 3 * unit)) <= 1 for w in widths), (widths, unit)
