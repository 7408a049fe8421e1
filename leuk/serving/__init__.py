"""What the Gradio Space (``app.py``) and the Streamlit dashboard share, so that no logic is written twice.

- models: :class:`ModelRegistry` / :func:`get_registry` (``LEUK_MODELS`` or the bundled demos, loaded once on
  CUDA when present, bf16 autocast there), :func:`warm_up`, :func:`model_info`, :func:`banner_for`;
- predictions: :func:`classify` (per-image rows, patient-level aggregate, the one uncertainty verdict of
  :mod:`leuk.verdict` with the model's out-of-distribution check), :func:`explain_image` (attribution overlay,
  faithfulness and the same verdict), :func:`pipeline_stages` (HybridCN-NAS, with the verdict),
  :func:`classify_smears` (every white cell of a smear found, cut out C-NMC-style and classified: the two models
  as one workflow, :mod:`leuk.serving.cells`; the apps' :data:`MODES`, :data:`SEGMENTER_CHOICES` and the cell model
  a smear view uses, :func:`cell_model_for`);
- results: :func:`montecarlo_report` (bundled runs, folders or dataset repos: chart data, tests, leakage gap);
- texts: :data:`NOT_A_MEDICAL_DEVICE`, :func:`banner_for` / :func:`model_banner` (what a model's records say it was
  trained on, :func:`training_summary_for`); samples: :func:`list_samples`, :func:`samples_description`.

Importing this package is cheap (no torch); functions that touch the GPU carry ``@spaces.GPU`` on ZeroGPU.
"""

from leuk.serving import runtime  # noqa: F401  (imports `spaces` before torch, as ZeroGPU requires)
from leuk.serving.classify import (
    MAX_APP_PIXELS,
    MAX_IMAGES,
    UNCERTAIN_BELOW,
    ClassifyResult,
    ImageResult,
    PatientAggregate,
    aggregate,
    classify,
)
from leuk.verdict import HELP_MARKDOWN as UNCERTAINTY_HELP
from leuk.verdict import rule_text as uncertainty_rule
from leuk.verdict import Verdict
from leuk.serving.explanations import (
    BASELINE_METHODS,
    EXPLAIN_BASELINES,
    EXPLAIN_METHODS,
    IG_STEPS_CHOICES,
    IG_STEPS_METHODS,
    METHOD_TITLES,
    ExplainResult,
    explain_baseline_choices,
    explain_image,
    explain_method_choices,
    ig_steps_choices,
)
from leuk.serving.model_info import (
    ModelInfo,
    banner_for,
    from_pretrained_snippet,
    model_info,
    model_labels,
    sample_task,
    samples_for_model,
    training_summary_for,
)
from leuk.serving.montecarlo import (
    LEAKAGE_COLUMNS,
    PVALUE_TITLES,
    MonteCarloData,
    MonteCarloReport,
    bundled_runs,
    load_montecarlo,
    montecarlo_choices,
    montecarlo_report,
    montecarlo_sources,
    pvalue_display,
    source_label,
)
from leuk.serving.notices import NO_MODEL_HELP, NOT_A_MEDICAL_DEVICE, demo_banner, model_banner
from leuk.ood import ReferenceStatistics, image_statistics
from leuk.serving.pipeline import PipelineResult, pipeline_model_names, pipeline_stages
from leuk.serving.detection import SEGMENTER_CHOICES, SEGMENTER_LABELS
from leuk.serving.cells import (
    MODES,
    SmearResult,
    SmearsResult,
    cell_model_for,
    cell_model_names,
    classify_smears,
    classify_smears_gpu,
)
from leuk.serving.registry import ModelRegistry, get_registry, set_registry, warm_up
from leuk.serving.runtime import choose_device, gpu
from leuk.serving.samples import (
    ChosenInput,
    Sample,
    choose_input,
    list_samples,
    one_per_class,
    samples_description,
    without_sample,
)

__all__ = [
    "BASELINE_METHODS",
    "EXPLAIN_BASELINES",
    "EXPLAIN_METHODS",
    "LEAKAGE_COLUMNS",
    "PVALUE_TITLES",
    "MAX_APP_PIXELS",
    "MAX_IMAGES",
    "IG_STEPS_CHOICES",
    "IG_STEPS_METHODS",
    "METHOD_TITLES",
    "NOT_A_MEDICAL_DEVICE",
    "NO_MODEL_HELP",
    "UNCERTAINTY_HELP",
    "uncertainty_rule",
    "UNCERTAIN_BELOW",
    "Verdict",
    "ClassifyResult",
    "ExplainResult",
    "ImageResult",
    "ModelInfo",
    "ModelRegistry",
    "MonteCarloData",
    "MonteCarloReport",
    "PatientAggregate",
    "PipelineResult",
    "ReferenceStatistics",
    "ChosenInput",
    "Sample",
    "SmearResult",
    "SmearsResult",
    "aggregate",
    "banner_for",
    "bundled_runs",
    "choose_device",
    "cell_model_for",
    "cell_model_names",
    "MODES",
    "choose_input",
    "classify",
    "classify_smears",
    "classify_smears_gpu",
    "demo_banner",
    "explain_image",
    "SEGMENTER_CHOICES",
    "SEGMENTER_LABELS",
    "explain_baseline_choices",
    "explain_method_choices",
    "from_pretrained_snippet",
    "ig_steps_choices",
    "get_registry",
    "gpu",
    "image_statistics",
    "list_samples",
    "one_per_class",
    "load_montecarlo",
    "model_info",
    "model_banner",
    "model_labels",
    "montecarlo_choices",
    "montecarlo_report",
    "montecarlo_sources",
    "pipeline_model_names",
    "pvalue_display",
    "pipeline_stages",
    "samples_description",
    "sample_task",
    "samples_for_model",
    "source_label",
    "set_registry",
    "training_summary_for",
    "warm_up",
    "without_sample",
]
