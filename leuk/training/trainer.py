"""A transformers ``Trainer`` for image classifiers fed from the uint8 cache of :mod:`leuk.training.data`.

On the training device each batch is rescaled to [0, 1], augmented (training only, :class:`TrainAugment`),
normalised with the image processor's mean/std and put in channels-last layout. Optionally the training
sampler oversamples minority classes. Everything else (mixed precision, clipping, the scheduler,
distributed runs, checkpoints, best-model selection, early stopping, resuming) is the Trainer's own.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from transformers import EvalPrediction, Trainer

from leuk.metrics import classification_metrics, softmax
from leuk.training.data import ClassBalancedSampler

__all__ = ["ImageClassificationTrainer", "metrics_for_trainer"]


class ImageClassificationTrainer(Trainer):
    """``Trainer`` with on-device preprocessing/augmentation and optional class-balanced sampling.

    ``augment`` maps a float NCHW batch in [0, 1] to an augmented one (applied only while the model is in
    training mode); ``image_mean``/``image_std`` are the processor's normalisation; ``balanced_labels``
    (training labels) switches the training sampler to :class:`ClassBalancedSampler`;
    ``backbone_lr_scale`` multiplies the learning rate of the parameters under ``backbone_prefix`` (layer-wise
    rates for fine-tuning a pretrained backbone under a freshly initialised head; 1 keeps the Trainer's own
    optimiser). The scheduler scales every group's rate alike.
    """

    def __init__(
        self,
        *args: Any,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        balanced_labels: Sequence[int] | None = None,
        backbone_lr_scale: float = 1.0,
        backbone_prefix: str = "backbone.",
        **kwargs: Any,
    ) -> None:
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.backbone_prefix = backbone_prefix
        super().__init__(*args, **kwargs)
        self.image_mean = torch.tensor(image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.image_std = torch.tensor(image_std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment = augment
        self.balanced_labels = balanced_labels

    def create_optimizer(self, model=None):
        if self.optimizer is not None or self.backbone_lr_scale == 1.0:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups = []
        for in_backbone, scale in ((True, self.backbone_lr_scale), (False, 1.0)):
            for decayed in (True, False):
                params = [p for name, p in opt_model.named_parameters()
                          if p.requires_grad and name.startswith(self.backbone_prefix) == in_backbone
                          and (name in decay) == decayed]
                if params:
                    groups.append({"params": params, "lr": self.args.learning_rate * scale,
                                   "weight_decay": self.args.weight_decay if decayed else 0.0})
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        if self.balanced_labels is None:
            return super()._get_train_sampler(train_dataset)
        return ClassBalancedSampler(self.balanced_labels, seed=self.args.data_seed or self.args.seed)

    def model_inputs(self, pixel_values: torch.Tensor, *, training: bool) -> torch.Tensor:
        """uint8 NCHW pixels on the device -> augmented (if ``training``) and normalised float pixels."""
        if pixel_values.dtype != torch.uint8:
            return pixel_values  # already a model input
        batch = pixel_values.float().div_(255.0)
        if training and self.augment is not None:
            batch = self.augment(batch).clamp_(0.0, 1.0)
        mean = self.image_mean.to(batch.device)
        std = self.image_std.to(batch.device)
        return ((batch - mean) / std).contiguous(memory_format=torch.channels_last)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = {**inputs, "pixel_values": self.model_inputs(inputs["pixel_values"], training=model.training)}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        inputs = {**inputs, "pixel_values": self.model_inputs(inputs["pixel_values"], training=False)}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)


def prediction_logits(predictions: Any) -> np.ndarray:
    """The logits array of ``EvalPrediction.predictions`` (a tuple when the model returns more outputs)."""
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return np.asarray(predictions, dtype=np.float64)


def metrics_for_trainer(label_names: Sequence[str]) -> Callable[[EvalPrediction], dict[str, float]]:
    """``compute_metrics`` for the Trainer: the scalar figures of :func:`classification_metrics`."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        labels = np.asarray(prediction.label_ids).reshape(-1)
        metrics = classification_metrics(labels, softmax(prediction_logits(prediction.predictions)), label_names)
        return {key: value for key, value in metrics.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "n"}

    return compute
