"""leuk: the Gradio app (a Hugging Face Space): classify, explain, pipeline, Monte Carlo results, models.

Run ``python app.py`` (http://127.0.0.1:7860). Models come from ``LEUK_MODELS`` (comma-separated Hub ids with
``@revision``, folders, or ``demo:<name>``), else every bundled demo model. Every computation lives in
:mod:`leuk.serving`; this file only lays out the page and turns user mistakes into one-line messages.
API endpoints (``gradio_client``): ``/classify``, ``/smear``, ``/explain``, ``/pipeline``, ``/montecarlo``,
``/model_info``.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable, Sequence, TypeVar

from leuk import serving  # before gradio and torch: imports `spaces` first, as ZeroGPU requires

import gradio as gr  # noqa: E402

log = logging.getLogger("leuk.app")

F = TypeVar("F", bound=Callable[..., Any])

#: Largest upload accepted by the server (Gradio refuses bigger files before they reach leuk).
MAX_FILE_SIZE = "20mb"
#: Whether the Monte Carlo tab may read result files from this machine's disk (never on a public Space).
ALLOW_LOCAL_RESULTS = os.environ.get("LEUK_ALLOW_LOCAL_RESULTS", "0" if os.environ.get("SPACE_ID") else "1") == "1"
#: Model computations running at once (one on a small CPU machine; raise it on a GPU).
MODEL_CONCURRENCY = int(os.environ.get("LEUK_CONCURRENCY", "1"))

CSS = """
#medical-notice {border-left: 4px solid #b91c1c; padding: 0.4em 0.8em; background: rgba(185, 28, 28, 0.06);}
#demo-banner {border-left: 4px solid #b45309; padding: 0.4em 0.8em; background: rgba(180, 83, 9, 0.08);}
#uncertain-flag p {font-size: 1.05em;}
/* Tables: headers wrap between words only (never "probabi-lity"), cells wrap, and no column is sized wider than
   12rem, so a table with long text columns (reasons, error) fits its box at 1400 px instead of running off it. */
.table-wrap .header-cell span.header {word-break: normal !important; overflow-wrap: normal !important;}
.table-wrap td .cell-wrap {white-space: normal !important; overflow-wrap: break-word !important;}
.table-wrap .sizing-body td .cell-wrap {white-space: nowrap !important; max-width: 12rem; overflow: hidden;}
/* The paired tests have eleven columns: a smaller type lets all of them show at 1400 px. */
#mc-pvalues td, #mc-pvalues th, #mc-pvalues .cell-wrap {font-size: 12px !important;}
#mc-pvalues td, #mc-pvalues th {padding-left: 6px !important; padding-right: 6px !important;}
/* The sample gallery: every column fits (Gradio gives each at least 100 px, which cuts the sixth one off). */
#sample-gallery .grid-container {grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important;}
#samples-note {margin-bottom: -0.5em;}
/* A validation message (e.g. a Monte Carlo source that cannot be loaded) lies over its field's label, not under. */
.wrap:has(> .validation-error) {z-index: 50 !important;}
"""

PVALUE_HEADERS = ["comparison", "protocol", "model", *serving.PVALUE_TITLES.values()]
LEAKAGE_HEADERS = list(serving.LEAKAGE_COLUMNS)

#: Options ``python app.py`` launches with; tests pass the same ones.
LAUNCH_OPTIONS: dict[str, Any] = {
    "max_file_size": MAX_FILE_SIZE,
    "theme": gr.themes.Soft(primary_hue="rose", secondary_hue="slate"),
    "css": CSS,
    "footer_links": ["api"],
}


#: How the message of a failure that is not the user's mistake begins.
UNEXPECTED = "Unexpected error"


def user_errors(action: str) -> Callable[[F], F]:
    """Turn leuk's errors into a one-line ``gr.Error``; log anything unexpected and report it briefly.

    Gradio keeps serving after any exception; this only decides what the user reads.
    """

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any) -> Any:
            from leuk.errors import LeukError

            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except LeukError as err:
                raise gr.Error(str(err), title=f"Cannot {action}", print_exception=False) from None
            except Exception as err:  # noqa: BLE001  (a bad request must not show a traceback)
                log.exception("unexpected error while trying to %s", action)
                raise gr.Error(f"{UNEXPECTED} ({type(err).__name__}); the request was not completed.",
                               title=f"Cannot {action}") from None

        return handler  # type: ignore[return-value]

    return wrap


def titled_toasts(fn: F) -> F:
    """An event handler whose errors pop up saying what failed: "Cannot classify: <why>", "Nothing to explain: ...".

    Gradio 6.31's page heads every toast with its level ("Error", "Warning") and shows no ``title``, so the title
    leads the message instead. A user's mistake (a leuk error: an unreadable file, nothing uploaded, an unknown
    model) is a warning, not an error of the app; the request still fails, silently on the page, so that API clients
    (``gradio_client``) get the error with its message. Unexpected failures stay errors.
    """

    @functools.wraps(fn)
    def handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error as err:
            if not err.visible:
                raise
            text = f"{err.title}: {err.message}" if err.title and err.title != "Error" else err.message
            if err.message.startswith(UNEXPECTED):
                raise gr.Error(text, duration=err.duration, title=err.title, print_exception=False) from None
            gr.Warning(text, duration=err.duration, title=err.title)
            raise gr.Error(err.message, duration=err.duration, visible=False, title=err.title,
                           print_exception=False) from None

    return handler  # type: ignore[return-value]


def _paths(files: Any) -> list[str]:
    """File paths from a gr.File value (one path, a list of paths, or nothing)."""
    if files is None:
        return []
    if isinstance(files, (str, os.PathLike)):
        return [str(files)]
    return [str(getattr(item, "path", item)) for item in files]


def _classify_outputs(result: serving.ClassifyResult) -> tuple[dict | str, str, Any, Any]:
    """Label widget ("not assessed" when the headline is no answer), verdict with the probabilities of the images
    not assessed in a collapsed detail, per-image and patient tables."""
    flag = "\n\n".join(part for part in (result.flag_markdown, result.files_markdown, result.probability_details())
                       if part)
    return result.label_output(), flag, result.table(), result.aggregate_table()


@user_errors("classify")
def classify(files: Sequence[str] | None, model_name: str) -> tuple[dict | str, str, Any, Any]:
    """Classify the uploaded images of one patient: probabilities, uncertainty, per-image and patient tables."""
    paths = _paths(files)
    if not paths:
        raise gr.Error("Upload one or more images first, or click a sample.", title="Nothing to classify")
    return _classify_outputs(serving.classify(paths, model_name))


@user_errors("classify")
def classify_sample(model_name: str, sample_paths: list[str], evt: gr.SelectData) -> tuple[Any, ...]:
    """Classify the sample image clicked in the gallery (``sample_paths``: the gallery's files, in order); the
    sample replaces whatever was uploaded, so the upload box shows what the results are about. Returns the upload
    box's new value, the sample in force (:func:`upload_replaces_sample` drops it on the next upload) and the
    Classify outputs."""
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    if not 0 <= index < len(sample_paths):
        raise gr.Error("That sample is not in the gallery any more; reload the page.", title="Cannot classify")
    path = sample_paths[index]
    return (gr.update(value=[path]), path) + _classify_outputs(serving.classify([path], model_name))


def upload_replaces_sample(files: Any, sample: str | None) -> tuple[Any, None]:
    """An upload after a sample click replaces the sample (Gradio appends uploads to the box's files): the box
    keeps only the uploaded files, so Classify never mixes a bundled sample into the user's patient."""
    if not sample:
        return gr.skip(), gr.skip()
    kept = serving.without_sample(_paths(files), sample)
    return gr.update(value=kept or None), None


def classify_mode(mode: str) -> tuple[Any, ...]:
    """Show the single-cell or the smear controls and results (:data:`leuk.serving.MODES`)."""
    smear = mode == serving.MODES[1]
    return tuple(gr.update(visible=smear if index % 2 else not smear) for index in range(6))


@user_errors("classify the smear")
def classify_smear(files: Sequence[str] | None, model_name: str, segmenter: str = "auto") -> tuple[Any, ...]:
    """Every white cell of the uploaded smears (one patient): boxes coloured by call, cell crops, tables.
    ``segmenter``: ``auto``, ``detector``, ``unet`` or ``classical`` (:data:`leuk.serving.SEGMENTER_CHOICES`)."""
    paths = _paths(files)
    if not paths:
        raise gr.Error("Upload one or more smear images first.", title="Nothing to classify")
    result = serving.classify_smears_gpu(paths, serving.cell_model_for(model_name), segmenter=segmenter or "auto")
    boxes = [(smear.annotated(), smear.headline) for smear in result.smears if smear.error is None]
    crops = [cell.crop for smear in result.smears for cell in smear.classified]
    return (boxes, result.summary_markdown, [(image, caption) for smear in result.smears
                                             for image, caption in smear.gallery()],
            result.cell_table(), result.smear_table(), {"model": result.model_name, "crops": crops},
            None, "_Click a cell to explain its call._" if crops else "")


@user_errors("explain the cell")
def explain_cell(state: dict | None, method: str, evt: gr.SelectData) -> tuple[Any, str]:
    """The attribution map of the clicked cell crop, by the model that classified it."""
    crops = (state or {}).get("crops") or []
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    if not 0 <= index < len(crops):
        raise gr.Error("That cell is not in the gallery any more; classify the smear again.", title="Cannot explain")
    result = serving.explain_image(crops[index], state["model"], method=method or serving.EXPLAIN_METHODS[0])
    return result.overlay, f"**Cell {index + 1} of the gallery.** {result.summary_markdown}"


@user_errors("explain")
def explain(file: str | None, model_name: str, method: str, target: str,
            baseline: str = serving.EXPLAIN_BASELINES[0], ig_steps: int | None = None) -> tuple[Any, str]:
    """Attribution overlay for one image, and how faithful the map is (deletion / insertion). ``baseline``: the
    reference image of Integrated Gradients and Occlusion (black, blur, mean or zero); ``ig_steps``: Integrated
    Gradients steps (empty or 0: 16 on CPU, 50 on a GPU)."""
    paths = _paths(file)
    if not paths:
        raise gr.Error("Upload an image first, or pick an example.", title="Nothing to explain")
    result = serving.explain_image(paths[0], model_name, method=method, target=target or None,
                                   baseline=baseline or None, ig_steps=int(ig_steps) if ig_steps else None)
    return result.overlay, result.summary_markdown


def baseline_choice(method: str) -> tuple[Any, Any]:
    """The baseline picker is live only for the methods that start from a reference image, the IG steps picker
    only for Integrated Gradients."""
    return (gr.update(interactive=method in serving.BASELINE_METHODS),
            gr.update(interactive=method in serving.IG_STEPS_METHODS))


@user_errors("run the pipeline")
def pipeline(file: str | None, model_name: str) -> tuple[list, str, Any]:
    """HybridCN-NAS phases for one smear: stain-normalised, CLAHE, mask, cells, top features."""
    paths = _paths(file)
    if not paths:
        raise gr.Error("Upload a smear image first, or pick an example.", title="Nothing to process")
    result = serving.pipeline_stages(paths[0], model_name or None)
    return result.gallery, result.summary_markdown, result.features


def check_montecarlo(source: str, metric: str) -> list[dict]:
    """Validator of the Monte Carlo Load button: a source or metric that cannot be loaded gets one message, on
    the field at fault, and the results already on the page stay (the loading function never runs).

    API clients get the same message (``gradio_client`` raises a validation error)."""
    from leuk.errors import LeukError

    problems = {"source": "", "metric": ""}
    try:
        serving.load_montecarlo(source or None, allow_local=ALLOW_LOCAL_RESULTS)
        try:
            serving.montecarlo_report(source or None, metric or None, figures=False, allow_local=ALLOW_LOCAL_RESULTS)
        except LeukError as err:
            problems["metric"] = f"Cannot load Monte Carlo results: {err}"
    except LeukError as err:
        problems["source"] = f"Cannot load Monte Carlo results: {err}"
    except Exception as err:  # noqa: BLE001  (a bad request must not show a traceback)
        log.exception("unexpected error while checking Monte Carlo source %r", source)
        problems["source"] = f"Cannot load Monte Carlo results: unexpected error ({type(err).__name__})"
    return [gr.validate(not problems[name], problems[name]) for name in ("source", "metric")]


@user_errors("load Monte Carlo results")
def montecarlo(source: str, metric: str) -> tuple[str, Any, Any, Any, Any, Any]:
    """Monte Carlo results (bundled, a folder/parquet, or a dataset repo id): charts, tests, leakage gap."""
    report = serving.montecarlo_report(source or None, metric or None, allow_local=ALLOW_LOCAL_RESULTS)
    return (report.summary_markdown, gr.update(choices=report.metrics, value=report.metric),
            report.distribution_chart, report.difference_chart, report.pvalue_table(), report.leakage)


@user_errors("describe the model")
def model_info(model_name: str) -> tuple[str, str, Any, str, Any, Any]:
    """Summary (with what was held out and the calibration), model card, every number of eval_results.json, a
    pinned from_pretrained snippet, the headline held-out figures (mean ± sd over folds, pooled) and the
    per-subject / per-fold figures."""
    info = serving.model_info(model_name)
    evaluation = info.evaluation
    summary = info.summary_markdown + (f"\n\n{evaluation.note}" if evaluation is not None and evaluation.note else "")
    headline = evaluation.headline if evaluation is not None else None
    breakdown = evaluation.breakdown if evaluation is not None else None
    return summary, info.card_markdown, info.metrics.round(3), info.snippet, headline, breakdown


def pipeline_choices() -> Any:
    """The Pipeline tab's model picker, limited to the models that have the HybridCN-NAS phases."""
    try:
        names = serving.pipeline_model_names()
    except Exception:  # noqa: BLE001  (keep the full list when models cannot be inspected)
        return gr.update()
    return gr.update(choices=[""] + names, value=names[0] if names else "")


def _gallery(samples: Sequence[serving.Sample]) -> tuple[list[tuple[str, str]], list[str]]:
    return [(str(s.path), s.caption) for s in samples], [str(s.path) for s in samples]


def _samples_note(samples: Sequence[serving.Sample]) -> str:
    if not samples:
        return "**Samples**: none bundled for this model's task."
    return f"**Samples** the selected model takes: click one to classify it ({serving.samples_description(samples)})."


@user_errors("switch model")
def on_model_change(model_name: str) -> tuple[Any, ...]:
    """Demo banner, explanation targets, the samples of the selected model's task (only images it takes) in the
    Classify and Explain galleries, and every result of the previous model cleared (it no longer applies)."""
    banner = serving.banner_for(model_name)
    targets = ["predicted"] + serving.model_labels(model_name)
    samples = serving.samples_for_model(model_name)
    items, paths = _gallery(samples)
    return ((gr.update(value=banner, visible=bool(banner)), gr.update(choices=targets, value="predicted"),
             gr.update(value=items), paths, _samples_note(samples), gr.update(value=items[:EXPLAIN_SAMPLES]))
            + cleared_results())


#: Samples the Explain tab offers (the first of the model's task).
EXPLAIN_SAMPLES = 12


def cleared_results() -> tuple[Any, ...]:
    """Empty values for every result a model produced (Classify, Smear, Explain), in the order of the outputs
    wired in :func:`build_demo`."""
    return (None, "", None, None) + (None, "", None, None, None, {}, None, "") + (None, "")


@user_errors("choose the sample")
def explain_sample(sample_paths: list[str], evt: gr.SelectData) -> str:
    """The Explain sample clicked (``sample_paths``: the selected model's samples, in gallery order)."""
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    if not 0 <= index < len(sample_paths):
        raise gr.Error("That sample is not in the gallery any more; reload the page.", title="Cannot choose")
    return sample_paths[index]


def on_page_load(handler: Callable[..., tuple], outputs: Sequence[Any]) -> Callable[..., tuple]:
    """``handler`` for a page-load event: its error message goes into the first output instead of a popup."""

    def load(*args: Any) -> tuple:
        try:
            return handler(*args)
        except gr.Error as err:
            return (f"_{err.message}_",) + tuple(gr.update() for _ in outputs[1:])

    load.__name__ = f"load_{handler.__name__}"
    return load


def build_demo() -> gr.Blocks:
    """Lay out the app for the models of :func:`leuk.serving.get_registry`. Cheap: no model is loaded here."""
    registry = serving.get_registry()
    names = registry.names
    default = registry.default
    samples = serving.list_samples()
    # the gallery is filled on page load with the samples of the selected model's task (it must be loaded)
    gallery_items, gallery_paths = [], []
    smear_examples = [[str(s.path)] for s in serving.one_per_class([s for s in samples if s.task == "aria"])]
    model_kwargs = dict(choices=names, value=default, label="Model", interactive=True)
    first_banner = serving.banner_for(default, load=False) if default else ""

    with gr.Blocks(title="leuk: leukemic-cell classification") as demo:
        gr.Markdown(
            "# leuk: leukemic-cell classification\n"
            "EfficientNet-SE (ALL vs HEM, C-NMC 2019) and HybridCN-NAS (four B-ALL classes, Aria), rebuilt and "
            "evaluated patient-wise. Probabilities are temperature-calibrated on data the model was not fitted on (each card says which)."
        )
        gr.Markdown(serving.NOT_A_MEDICAL_DEVICE, elem_id="medical-notice")
        banner = gr.Markdown(first_banner, visible=bool(first_banner), elem_id="demo-banner")
        if not names:
            gr.Markdown(f"**No model configured.** {serving.NO_MODEL_HELP}")
        model = gr.Dropdown(**model_kwargs, elem_id="model-select")

        with gr.Tabs():
            with gr.Tab("Classify", id="classify", elem_id="tab-classify"):
                with gr.Row():
                    with gr.Column(scale=1):
                        mode = gr.Radio(list(serving.MODES), value=serving.MODES[0], label="Input", elem_id="classify-mode",
                                        info="single cells cut out onto black (as C-NMC), or smear photos: every "
                                             "white cell is found, cut out and classified")
                        files = gr.File(file_count="multiple", file_types=["image"],
                                        label="Images of one patient (PNG, JPG, BMP, TIFF)",
                                        elem_id="classify-files")
                        classify_button = gr.Button("Classify", variant="primary")
                        with gr.Column(visible=False) as smear_controls:
                            segmenter = gr.Dropdown(choices=serving.SEGMENTER_CHOICES, value="auto", label="Cell finder",
                                                    elem_id="smear-segmenter")
                            smear_button = gr.Button("Find and classify every white cell", variant="primary")
                        # the gallery's own label floats over its first row: say what the samples are above it
                        samples_note = gr.Markdown("**Samples**: loading the ones the selected model takes…",
                                                   elem_id="samples-note")
                        gallery = gr.Gallery(gallery_items, label="Samples", show_label=False,
                                             columns=4, height="auto", allow_preview=False, object_fit="contain",
                                             interactive=False, buttons=[], elem_id="sample-gallery")
                        sample_paths = gr.State(gallery_paths)
                        active_sample = gr.State(None)  # the clicked sample the upload box holds, if any
                    with gr.Column(scale=1):
                        with gr.Column(visible=True) as cell_results:
                            label = gr.Label(num_top_classes=4, label="Calibrated probabilities",
                                             elem_id="class-label")
                            flag = gr.Markdown(elem_id="uncertain-flag")
                            aggregate = gr.Dataframe(headers=["patient-level", "value"],
                                                     label="Patient-level aggregate", interactive=False, wrap=True)
                        with gr.Column(visible=False) as smear_results:
                            smear_boxes = gr.Gallery(label="White cells found (red: ALL, green: HEM, thin with ?: "
                                                     "uncertain, grey: skipped)", columns=2, height="fit-content",
                                                     object_fit="contain", interactive=False, elem_id="smear-boxes")
                            smear_summary = gr.Markdown(elem_id="smear-summary")
                        with gr.Accordion("What confident / uncertain and the OOD score mean", open=False):
                            gr.Markdown(serving.UNCERTAINTY_HELP, elem_id="uncertainty-help")
                table = gr.Dataframe(headers=["image", "label", "top probability"], label="Per image",
                                     interactive=False, wrap=True)
                classify_outputs = [label, flag, table, aggregate]
                with gr.Column(visible=False) as smear_cells:
                    with gr.Row():
                        cell_gallery = gr.Gallery(label="Cells cut out onto black, as C-NMC cells (click one to "
                                                  "explain its call)", columns=6, height="auto", object_fit="contain",
                                                  allow_preview=False, interactive=False, elem_id="cell-gallery",
                                                  scale=2)
                        with gr.Column(scale=1):
                            cell_overlay = gr.Image(label="Why this call", type="pil", interactive=False,
                                                    format="png", elem_id="cell-overlay")
                            cell_explanation = gr.Markdown(elem_id="cell-explanation")
                    cell_table = gr.Dataframe(label="Per cell (box in the smear's pixels)", interactive=False,
                                              wrap=True)
                    smear_table = gr.Dataframe(label="Per smear and patient", interactive=False, wrap=True)
                smear_state = gr.State({})
                smear_outputs = [smear_boxes, smear_summary, cell_gallery, cell_table, smear_table, smear_state,
                                 cell_overlay, cell_explanation]

            with gr.Tab("Explain", id="explain", elem_id="tab-explain"):
                with gr.Row():
                    with gr.Column(scale=1):
                        explain_file = gr.File(file_types=["image"], label="Image")
                        method = gr.Dropdown(choices=serving.explain_method_choices(), label="Method",
                                             value=serving.EXPLAIN_METHODS[0], elem_id="explain-method")
                        target = gr.Dropdown(choices=["predicted"], value="predicted", label="Class to explain",
                                             allow_custom_value=True)
                        baseline = gr.Dropdown(choices=serving.explain_baseline_choices(),
                                               value=serving.EXPLAIN_BASELINES[0], interactive=False,
                                               label="Baseline of Integrated Gradients and Occlusion",
                                               info="black credits the cell as a whole (random weights do so too); "
                                                    "the blurred image asks which fine structure drove the call",
                                               elem_id="explain-baseline")
                        ig_steps = gr.Dropdown(choices=serving.ig_steps_choices(), value=0,
                                               interactive=False, label="Integrated Gradients steps",
                                               info="more steps: a more exact integral (a smaller completeness "
                                                    "gap), in proportion slower", elem_id="explain-ig-steps")
                        explain_button = gr.Button("Explain", variant="primary")
                        gr.Markdown("**Samples** the selected model takes (click one to put it in the box)",
                                    elem_id="explain-samples-note")
                        explain_gallery = gr.Gallery([], label="Samples", show_label=False, columns=4, height="auto",
                                                     allow_preview=False, object_fit="contain", interactive=False,
                                                     buttons=[], elem_id="explain-sample-gallery")
                    with gr.Column(scale=1):
                        overlay = gr.Image(label="Attribution overlay", type="pil", interactive=False,
                                           format="png", elem_id="overlay")
                        faithfulness = gr.Markdown(elem_id="faithfulness")

            with gr.Tab("Pipeline", id="pipeline", elem_id="tab-pipeline"):
                gr.Markdown("The HybridCN-NAS phases on one smear: Reinhard stain normalisation, CLAHE, segmentation "
                            "(Attention U-Net, then watershed splits touching cells), the cells found, and the "
                            "mRMR-selected features that lie furthest from their training mean for this image.")
                with gr.Row():
                    with gr.Column(scale=1):
                        pipeline_file = gr.File(file_types=["image"], label="Smear image")
                        pipeline_model = gr.Dropdown(choices=[""] + names, value="", label="HybridCN-NAS model "
                                                     "(empty: the first one configured)", allow_custom_value=True)
                        pipeline_button = gr.Button("Run pipeline", variant="primary")
                        if smear_examples:
                            gr.Examples(smear_examples, inputs=[pipeline_file], label="Samples")
                    with gr.Column(scale=2):
                        gr.Markdown("**Phases** (each at the smear's own aspect ratio)", elem_id="stages-note")
                        stages = gr.Gallery(label="Phases", show_label=False, columns=4, height="auto",
                                            object_fit="contain", interactive=False, elem_id="stages")
                        pipeline_summary = gr.Markdown(elem_id="pipeline-summary")
                        features = gr.Dataframe(headers=["rank", "feature", "mRMR rank", "z-score"], interactive=False,
                                                label="Selected features furthest from the training mean")

            with gr.Tab("Monte Carlo", id="montecarlo", elem_id="tab-montecarlo"):
                gr.Markdown("Repeated patient-grouped splits: every model sees the same split in each iteration, "
                            "so differences are paired. Pick a bundled run (the real C-NMC pool by default, the "
                            "synthetic set second), or type a dataset repo id (`org/name[@revision]`), a results "
                            "folder or a parquet file.")
                with gr.Row():
                    sources = serving.montecarlo_choices()
                    mc_source = gr.Dropdown(choices=sources, value=sources[0][1] if sources else None, scale=3,
                                            allow_custom_value=True, elem_id="mc-source",
                                            label="Results: a bundled run, or type a dataset repo id / folder / parquet")
                    mc_metric = gr.Dropdown(choices=[], label="Metric", allow_custom_value=True, scale=1)
                    mc_button = gr.Button("Load", variant="primary", scale=1)
                mc_summary = gr.Markdown(elem_id="mc-summary")
                with gr.Row():
                    mc_distribution = gr.Plot(label="Distribution per model", show_label=False,
                                              elem_id="mc-distribution")
                    mc_difference = gr.Plot(label="Paired differences", show_label=False, elem_id="mc-difference")
                mc_pvalues = gr.Dataframe(headers=PVALUE_HEADERS, label="Paired tests (Holm-corrected)",
                                          interactive=False, wrap=True, elem_id="mc-pvalues")
                mc_leakage = gr.Dataframe(headers=LEAKAGE_HEADERS, interactive=False,
                                          label="Leakage gap: image-level minus patient-level score")

            with gr.Tab("Models", id="models", elem_id="tab-models"):
                info_summary = gr.Markdown(elem_id="model-summary")
                headline = gr.Dataframe(label="Held-out figures (mean ± sd over folds; pooled over every held-out "
                                              "image)", interactive=False, wrap=True, elem_id="model-headline")
                breakdown = gr.Dataframe(label="Per subject / per fold", interactive=False, wrap=True,
                                         max_height=420, elem_id="model-breakdown")
                # full width (no longer beside a table): a long line scrolls inside the box, never cut at its edge
                snippet = gr.Code(language="python", label="Load this exact model", interactive=False,
                                  elem_id="model-snippet")
                with gr.Accordion("All records (every number of eval_results.json)", open=False,
                                  elem_id="model-records"):
                    metrics = gr.Dataframe(headers=["metric", "value"], label="Metrics (eval_results.json)",
                                           interactive=False, wrap=True, max_height=420)
                card = gr.Markdown(elem_id="model-card")

        heavy = dict(concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")
        light = dict(concurrency_limit=4, concurrency_id="light")
        classify_button.click(titled_toasts(classify), [files, model], classify_outputs, api_name="classify",
                              **heavy)
        gallery.select(titled_toasts(classify_sample), [model, sample_paths],
                       [files, active_sample] + classify_outputs, api_visibility="private", **heavy)
        files.upload(upload_replaces_sample, [files, active_sample], [files, active_sample],
                     api_visibility="private", **light)
        files.clear(lambda: None, None, [active_sample], api_visibility="private", **light)
        mode.change(classify_mode, [mode], [classify_button, smear_controls, cell_results, smear_results, table,
                                            smear_cells], api_visibility="private", **light)
        smear_button.click(titled_toasts(classify_smear), [files, model, segmenter], smear_outputs, api_name="smear", **heavy)
        cell_gallery.select(titled_toasts(explain_cell), [smear_state, method], [cell_overlay, cell_explanation],
                            api_visibility="private", **heavy)
        explain_button.click(titled_toasts(explain), [explain_file, model, method, target, baseline, ig_steps],
                             [overlay, faithfulness], api_name="explain", **heavy)
        method.change(baseline_choice, [method], [baseline, ig_steps], api_visibility="private", **light)
        pipeline_button.click(titled_toasts(pipeline), [pipeline_file, pipeline_model],
                              [stages, pipeline_summary, features], api_name="pipeline", **heavy)
        mc_outputs = [mc_summary, mc_metric, mc_distribution, mc_difference, mc_pvalues, mc_leakage]
        mc_button.click(titled_toasts(montecarlo), [mc_source, mc_metric], mc_outputs, api_name="montecarlo",
                        validator=check_montecarlo, **light)
        info_outputs = [info_summary, card, metrics, snippet, headline, breakdown]
        model_outputs = ([banner, target, gallery, sample_paths, samples_note, explain_gallery] + classify_outputs
                         + smear_outputs + [overlay, faithfulness])
        explain_gallery.select(explain_sample, [sample_paths], [explain_file], api_visibility="private", **light)
        model.change(titled_toasts(on_model_change), [model], model_outputs, api_visibility="private", **light)
        model.change(titled_toasts(model_info), [model], info_outputs, api_name="model_info", **light)
        # page load: fill the Models and Monte Carlo tabs; a failure here becomes text, not an error popup
        demo.load(on_page_load(model_info, info_outputs), [model], info_outputs, api_visibility="private", **light)
        demo.load(on_page_load(on_model_change, model_outputs), [model], model_outputs,
                  api_visibility="private", **light)
        demo.load(on_page_load(montecarlo, mc_outputs), [mc_source, mc_metric], mc_outputs,
                  api_visibility="private", **light)
        demo.load(pipeline_choices, None, [pipeline_model], api_visibility="private", **light)

    demo.queue(default_concurrency_limit=MODEL_CONCURRENCY, max_size=64)
    return demo


demo = build_demo()


def _warm_up() -> None:
    for name, error in serving.warm_up().items():
        log.warning("model %s is unavailable: %s", name, error)


def main() -> None:
    """Serve the app: the server answers at once, then every configured model loads (requests wait for it).

    On ZeroGPU the models load first, in this process, as ZeroGPU expects them before any ``@spaces.GPU`` call.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    on_zero_gpu = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")
    if on_zero_gpu:
        _warm_up()
    demo.launch(prevent_thread_lock=True, **LAUNCH_OPTIONS)
    if not on_zero_gpu:
        _warm_up()
    demo.block_thread()


if __name__ == "__main__":
    main()
