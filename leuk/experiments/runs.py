"""A training run as ``leuk train`` starts it: the family's engine fits and saves, then the finishing step.

The engines (:mod:`leuk.training`) stop at a saved model folder. What every run does after that needs the
services floor, so it lives here, once, for every caller (``leuk train``, the ``train/`` scripts,
:mod:`leuk.experiments.cross_subject`):

- fit the out-of-distribution detector on the training images only (:func:`leuk.ood.fit_after_training`;
  its threshold from the validation images);
- score the saved folder through the one loader and :class:`leuk.inference.Predictor`, the path
  ``leuk evaluate`` and the apps take (:func:`predict_saved`);
- EfficientNet-SE: evaluate once on the test patients and write ``eval_results.json``. (The HybridCN-NAS
  engine scores its saved model on its own cached, preprocessed pixels.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


__all__ = ["predict_saved", "train_efficientnet_se", "train_hybridcn_nas"]


def predict_saved(output_dir: str | Path, paths: Sequence[str], options: Any = None, *,
                  batch_size: int | None = None, progress: bool | None = None) -> np.ndarray:
    """Calibrated class probabilities ``(len(paths), n_classes)`` of the model as saved in ``output_dir``,
    through the one loader and :meth:`leuk.inference.Predictor.probability_matrix`. ``options`` (a
    ``TrainOptions``) gives the batch size (``eval_batch_size`` or ``batch_size``) and ``progress`` unless they are
    passed."""
    from leuk.hub import load_model
    from leuk.inference import Predictor

    if batch_size is None:
        batch_size = (options.eval_batch_size or options.batch_size) if options is not None else 32
    if progress is None:
        progress = bool(options.progress) if options is not None else False
    loaded = load_model(str(Path(output_dir).resolve()))
    return Predictor(loaded.model, loaded.processor, batch_size=batch_size).probability_matrix(paths, progress=progress)


def train_efficientnet_se(options: Any = None, /, **fields: Any) -> Any:
    """Train, calibrate, save and test a model of the EfficientNet-SE family: the engine's
    :func:`leuk.training.efficientnet_se.train_and_save`, then (main process only) the detector, one test
    evaluation of the saved folder and ``eval_results.json``. Pass a ``TrainOptions`` or its fields as
    keywords (``data`` and ``out`` are required). Returns a ``TrainResult``."""
    from leuk.metrics import classification_metrics
    from leuk.training.efficientnet_se import train_and_save

    saved = train_and_save(options, **fields)
    test_metrics: dict[str, Any] = {}
    if saved.is_main_process:
        batch_size = saved.options.eval_batch_size or saved.options.batch_size
        if saved.options.fit_ood:
            from leuk.ood import fit_after_training

            fit_after_training(saved.output_dir, saved.data_root, batch_size=batch_size)
        probabilities = predict_saved(saved.output_dir, saved.test_paths, saved.options)
        test_metrics = classification_metrics(saved.test_labels, probabilities, saved.label_names)
    return saved.close(test_metrics)


def train_hybridcn_nas(data_dir: str | Path, out_dir: str | Path, options: Any = None, *,
                       work_dir: str | Path | None = None, restart: bool = False) -> Any:
    """Train HybridCN-NAS with its staged engine (:func:`leuk.training.hybridcn_nas.train_and_save`: save and
    one test evaluation), then fit its out-of-distribution detector on the training patients' images.
    Returns a ``HybridTrainResult``."""
    from leuk.ood import fit_after_training
    from leuk.training.hybridcn_nas import HybridTrainOptions, train_and_save

    options = (options or HybridTrainOptions()).resolved()
    result = train_and_save(data_dir, out_dir, options, work_dir=work_dir, restart=restart)
    # on the training patients' images only; the threshold from the validation images
    fit_after_training(result.output_dir, data_dir, batch_size=options.classifier_batch_size)
    return result
