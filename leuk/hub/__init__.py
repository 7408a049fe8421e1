"""Hugging Face Hub distribution: the one model loader, model cards, and pushing models and results.

Import what you need from here: ``from leuk.hub import load_model``.
"""

from leuk.hub.cards import build_model_card, build_results_card, eval_results_to_card
from leuk.hub.loader import (
    LoadedModel,
    ModelLoadError,
    ModelSpec,
    clear_model_cache,
    demo_models_dir,
    list_demo_models,
    load_model,
    mentions_synthetic_data,
    parse_model_spec,
    resolve_models_from_env,
)
from leuk.hub.push import PushResult, load_results, prepare_upload_folder, push_model, push_results

__all__ = [
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "PushResult",
    "build_model_card",
    "build_results_card",
    "clear_model_cache",
    "demo_models_dir",
    "eval_results_to_card",
    "list_demo_models",
    "load_model",
    "load_results",
    "mentions_synthetic_data",
    "parse_model_spec",
    "prepare_upload_folder",
    "push_model",
    "push_results",
    "resolve_models_from_env",
]
