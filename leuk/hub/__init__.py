"""Hugging Face Hub distribution: the one model loader, model cards, and pushing models and results.

Import what you need from here: ``from leuk.hub import load_model``. What a saved model was trained on:
:func:`training_summary` (:mod:`leuk.hub.provenance`); its card: :func:`write_model_card`.
"""

from leuk.hub.cards import build_model_card, build_results_card, eval_results_to_card, write_demo_cards, write_model_card
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
from leuk.hub.provenance import TrainingSummary, folder_training_summary, training_summary
from leuk.hub.push import PushResult, load_results, prepare_upload_folder, push_model, push_results

__all__ = [
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "PushResult",
    "TrainingSummary",
    "build_model_card",
    "build_results_card",
    "clear_model_cache",
    "demo_models_dir",
    "eval_results_to_card",
    "folder_training_summary",
    "list_demo_models",
    "load_model",
    "load_results",
    "mentions_synthetic_data",
    "parse_model_spec",
    "prepare_upload_folder",
    "push_model",
    "push_results",
    "resolve_models_from_env",
    "training_summary",
    "write_demo_cards",
    "write_model_card",
]
