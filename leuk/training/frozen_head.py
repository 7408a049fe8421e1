"""EfficientNet-SE on a frozen ImageNet backbone: only the SE block and the MLP head are trained.

The backbone (e.g. EfficientNet-Lite0 with Google's ImageNet weights) is run once over every image, and its last
feature map is cached for the image and its two flips (:func:`feature_maps`); the paper's SE block, pooling and
MLP head then train on those maps with the model's own focal loss (:func:`fit_head`), each step drawing one of the
three views per image. A fold trains in seconds on a CPU where fine-tuning the backbone takes most of an hour, and
frozen ImageNet features carry no stain or subject of the training pool, only what ImageNet taught. The model
is an ordinary ``EfficientNetSEForImageClassification`` (its backbone weights are the ImageNet ones), saved,
loaded and served like any other; inference sees the image once (no flips).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["FrozenRecipe", "HeadFit", "VIEWS", "feature_maps", "fit_head", "head_logits"]

#: The views cached per image: as it is, flipped left-right, flipped top-bottom.
VIEWS = ("identity", "horizontal flip", "vertical flip")


@dataclass
class FrozenRecipe:
    """Every choice of a frozen-backbone EfficientNet-SE run (recorded as ``recipe`` in ``cross_subject.json``)."""

    model: str = "efficientnet-se-lite0"
    image_size: int = 320
    pretrained: bool = True
    pretrained_source: str = "auto"
    frozen_backbone: bool = True
    epochs: int = 40
    patience: int = 6
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    seed: int = 0
    dtype: str = "float16"
    dataset: str = "cnmc"
    data: str = ""
    out: str = ""

    def as_record(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("data", "out")}


@dataclass
class HeadFit:
    """A trained head: the model (backbone untouched), epochs run, best validation loss and the temperature
    fitted on the validation images (view 0, as inference sees them)."""

    model: Any
    epochs: int
    best_validation_loss: float
    temperature: float
    validation_logits: np.ndarray


@torch.no_grad()
def feature_maps(model: Any, processor: Any, images: Sequence[Any], *, batch_size: int = 32,
                 progress: bool = True) -> np.ndarray:
    """The backbone's last feature map of every image and its two flips, ``(n, 3, channels, h, w)`` float16,
    through the model's own processor, each image read by :func:`leuk.io.read_image` (as inference prepares it)."""
    from tqdm.auto import tqdm

    from leuk.io import read_image

    model.eval()
    out: np.ndarray | None = None
    for start in tqdm(range(0, len(images), batch_size), desc="feature maps", disable=not progress):
        batch = [read_image(image) for image in images[start:start + batch_size]]
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"]
        views = (pixels, torch.flip(pixels, [3]), torch.flip(pixels, [2]))
        maps = np.stack([model.forward_features(view).float().numpy() for view in views], axis=1)
        if out is None:
            out = np.zeros((len(images),) + maps.shape[1:], np.float16)
        out[start:start + len(batch)] = maps
    assert out is not None, "no images"
    return out


def head_logits(model: Any, maps: np.ndarray, rows: Sequence[int] | np.ndarray, *, view: int = 0,
                batch_size: int = 256) -> np.ndarray:
    """Raw logits (temperature 1) of the head on the cached maps of ``rows``, one view."""
    rows = np.asarray(rows)
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            part = torch.from_numpy(maps[rows[start:start + batch_size], view].astype(np.float32))
            chunks.append(model.forward_head(model.pool(part)).numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.num_labels), np.float32)


def fit_head(model: Any, maps: np.ndarray, labels: np.ndarray, train: Sequence[int], val: Sequence[int],
             recipe: FrozenRecipe) -> HeadFit:
    """Train ``model``'s SE block and head on the cached ``maps`` of the ``train`` rows (the backbone is frozen),
    keeping the epoch with the lowest focal loss on the ``val`` rows (all three views); then fit the temperature
    on the validation logits of view 0. The backbone's weights are not changed."""
    from leuk.metrics import fit_temperature

    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    for parameter in model.backbone.parameters():
        parameter.requires_grad = False
    trainable = [p for name, p in model.named_parameters() if not name.startswith("backbone.")]
    optimiser = torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=recipe.weight_decay)
    train, val = np.asarray(train), np.asarray(val)
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    val_maps = torch.from_numpy(maps[val].astype(np.float32))
    best_loss, best_state, epochs, stale = float("inf"), None, 0, 0
    for epoch in range(recipe.epochs):
        model.train()
        model.backbone.eval()
        order = rng.permutation(train)
        for start in range(0, len(order), recipe.batch_size):
            rows = order[start:start + recipe.batch_size]
            views = rng.integers(0, maps.shape[1], len(rows))
            batch = torch.from_numpy(maps[rows, views].astype(np.float32))
            loss = model.compute_loss(model.forward_head(model.pool(batch)), targets[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(np.mean([model.compute_loss(model.forward_head(model.pool(val_maps[:, v])),
                                                         targets[val]).item() for v in range(maps.shape[1])]))
        epochs = epoch + 1
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= recipe.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    logits = head_logits(model, maps, val)
    temperature = fit_temperature(logits, np.asarray(labels)[val])
    model.config.temperature = temperature
    return HeadFit(model=model, epochs=epochs, best_validation_loss=best_loss, temperature=temperature,
                   validation_logits=logits)
