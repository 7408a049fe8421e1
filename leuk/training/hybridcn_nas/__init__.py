"""Training engine of HybridCN-NAS: staged, resumable, patient-wise.

Stages (each writes its result under ``<out>/stages`` and is skipped when that result exists):

1. ``split``: patient-grouped train/val/test split (``leuk.data.splits``);
2. ``images``: every image read once and resized to the model's ``image_size`` (uint8 cache);
3. ``stain``: the Reinhard target = mean Lab (or RGB) statistics of the TRAINING images;
4. ``preprocessed``: the phase-1 steps applied to every image (uint8 cache) -- the same code the image
   processor runs at inference time;
5. ``segmenter``: the Attention U-Net trained with Dice + BCE on the training masks (``Masks/``, or weak
   masks derived from ``Segmented/``), best epoch by validation Dice; Dice/IoU measured on the test patients;
6. ``extractor``: branches, self-attention, projections, fusion and factorised projection trained end to end
   on masked training images through a temporary linear classifier on the fused features (so no layer stays
   random), best epoch by validation loss;
7. ``features``: the feature vector of every image (float32 cache, reused by ``leuk ablate``);
8. ``head``: z-score + mRMR fitted on the training rows only, the token-attention classifier trained on
   them (early stopping on validation loss) and the temperature fitted on validation logits.

Then the assembled model is saved (weights, processor, remote code), reloaded from disk and evaluated ONCE
on the test patients: ``eval_results.json`` (:func:`train_and_save`). The whole run as ``leuk train
hybridcn-nas`` starts it, with the out-of-distribution detector fitted on the training images at the end, is
:func:`leuk.experiments.runs.train_hybridcn_nas` (a floor above the engines).

The package is split by stage: :mod:`.options` (presets and every knob), :mod:`.data` (rows, masks, pixel
bank, stain target), :mod:`.cache` (the stage files), :mod:`.optim` (small training helpers),
:mod:`.stages` (stages 1-7), :mod:`.head` (stage 8), :mod:`.engine` (the whole run and its records). The
ablation study (``leuk ablate``) lives in :mod:`leuk.experiments.ablation` (a floor above the engines).
"""

from __future__ import annotations

from leuk.records import EVAL_RESULTS_FILE, SPLIT_FILE
from leuk.training.hybridcn_nas.cache import StageCache
from leuk.training.hybridcn_nas.data import AriaTable, PixelBank, fit_stain_target, load_table, read_mask
from leuk.training.hybridcn_nas.engine import HybridTrainResult, train_and_save
from leuk.training.hybridcn_nas.head import HeadFit, fit_head
from leuk.training.hybridcn_nas.optim import make_optimizer
from leuk.training.hybridcn_nas.options import (
    OPTIMIZERS,
    PRESET_ALIASES,
    PRESET_DEFAULTS,
    PRESETS,
    STAGES_DIR,
    HybridTrainOptions,
)
from leuk.training.hybridcn_nas.stages import FeatureStages, run_feature_stages

__all__ = [
    "EVAL_RESULTS_FILE",
    "OPTIMIZERS",
    "PRESETS",
    "PRESET_ALIASES",
    "PRESET_DEFAULTS",
    "SPLIT_FILE",
    "STAGES_DIR",
    "AriaTable",
    "FeatureStages",
    "HeadFit",
    "HybridTrainOptions",
    "HybridTrainResult",
    "PixelBank",
    "StageCache",
    "fit_head",
    "fit_stain_target",
    "load_table",
    "make_optimizer",
    "read_mask",
    "run_feature_stages",
    "train_and_save",
]
