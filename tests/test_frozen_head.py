"""EfficientNet-SE on a frozen backbone (leuk.training.frozen_head): cached feature maps of an image and its
flips, a head trained on them that leaves the backbone untouched, and a saved model that predicts the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from leuk.models import create_model, family_of
from leuk.training.frozen_head import FrozenRecipe, feature_maps, fit_head, head_logits


@pytest.fixture(scope="module")
def cells():
    """Two classes a head can tell apart: dark violet discs (label 1) and pale pink ones (label 0)."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(60):
        label = i % 2
        image = np.zeros((64, 64, 3), np.uint8)
        yy, xx = np.mgrid[:64, :64]
        r = rng.uniform(14, 24)
        disc = (xx - 32) ** 2 + (yy - 32) ** 2 <= r ** 2
        image[disc] = (90, 40, 150) if label else (220, 170, 190)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(image))
        labels.append(label)
    return images, np.asarray(labels)


def test_a_head_on_cached_maps_learns_and_leaves_the_backbone_as_it_was(cells, tmp_path):
    images, labels = cells
    torch.manual_seed(0)
    model = create_model("efficientnet-se-test", id2label={0: "hem", 1: "all"}, num_labels=2)
    processor = family_of(model).processor(model.config)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    maps = feature_maps(model, processor, images, batch_size=16, progress=False)
    assert maps.shape[:2] == (len(images), 3) and maps.dtype == np.float16
    # the second and third views are the flipped images' maps, not copies of the first
    assert not np.allclose(maps[:, 0], maps[:, 1])
    train, val = np.arange(0, 40), np.arange(40, 60)
    fit = fit_head(model, maps, labels, train, val, FrozenRecipe(epochs=40, patience=40, lr=3e-3, batch_size=8))
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key]), key
    assert fit.temperature > 0 and model.config.temperature == fit.temperature
    logits = head_logits(model, maps, val)
    accuracy = float((logits.argmax(1) == labels[val]).mean())
    assert accuracy >= 0.85, accuracy  # chance is 0.5
    # the whole model on the images gives the head's logits on the cached maps (view 0): one model, two paths
    with torch.no_grad():
        pixels = processor(images=[images[i] for i in val], return_tensors="pt")["pixel_values"]
        direct = model(pixel_values=pixels).logits.numpy() * model.config.temperature
    np.testing.assert_allclose(direct, logits, rtol=1e-3, atol=2e-3)
