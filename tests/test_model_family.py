"""The ModelFamily contract: every family answers the same questions, and its answers match the model."""

from __future__ import annotations

import pytest
import torch

from leuk.models import (
    FamilyError,
    create_model,
    family_of,
    family_of_preset,
    get_family,
    list_families,
    list_models,
)

CASES = [("efficientnet-se-test", 64), ("hybridcn-nas-lite", 128)]


def test_every_preset_belongs_to_exactly_one_family():
    families = list_families()
    assert {f.model_type for f in families} == {"efficientnet_se", "hybridcn_nas"}
    listed = sorted(name for family in families for name in family.presets())
    assert listed == list_models()
    assert family_of_preset("hybridcn-nas-lite") is get_family("hybridcn_nas")
    for family in families:
        assert family.engine.startswith("leuk.training.") and family.title and family.dataset in ("cnmc", "aria")
    with pytest.raises(FamilyError):
        get_family("no-such-family")


@pytest.mark.parametrize("preset, size", CASES)
def test_forward_head_of_forward_features_is_the_models_logits(preset, size):
    from leuk.ood import pooled_features

    torch.manual_seed(0)
    model = create_model(preset).eval()
    family = family_of(model)
    assert family is family_of(model.config) is family_of(model.config.model_type)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = family.forward_head(model, family.forward_features(model, x))
        torch.testing.assert_close(raw / model.config.temperature, model(pixel_values=x).logits)
        pooled = family.pooled_features(model, x)
        torch.testing.assert_close(pooled, pooled_features(model, x))  # what the OOD detector compares
    assert pooled.shape[0] == 2 and pooled.dtype == torch.float32
    processor = family.processor(model.config)
    assert processor(images=[torch.zeros(3, size, size).numpy().transpose(1, 2, 0) + 0.5],
                     return_tensors="pt")["pixel_values"].shape[-1] == size


def test_branch_layers_and_classifier_view():
    hybrid = create_model("hybridcn-nas-lite").eval()
    family = family_of(hybrid)
    assert list(family.branch_layers(hybrid)) == [hybrid.config.branch_a, hybrid.config.branch_b]
    with torch.no_grad():
        view = family.classifier_view(hybrid, torch.rand(1, 3, 128, 128))
    assert view.inputs.shape == (1, hybrid.config.num_selected) and len(view.names) == hybrid.config.num_selected
    single = create_model("efficientnet-se-test")
    assert family_of(single).branch_layers(single) == {}
    with pytest.raises(FamilyError):
        family_of(single).classifier_view(single, torch.rand(1, 3, 64, 64))
    assert family_of(single).finetune_refusal() is None and "stages" in family.finetune_refusal()


@pytest.mark.parametrize("preset, size", CASES)
def test_what_a_family_says_of_its_phases_and_pooled_vector_holds_for_its_model(preset, size):
    model = create_model(preset)
    family = family_of(model)
    assert family.has_phases == callable(getattr(model, "stages", None))
    assert family.pooled_description


def test_the_segmenter_is_asked_of_the_family_and_its_mask_is_the_models_own():
    """The smear path asks the contract (issue #29): ``has_segmenter`` instead of probing attributes, and
    ``cell_mask`` thresholds the model's own probabilities, resized first, at its own ``mask_threshold``."""
    import cv2
    import numpy as np

    torch.manual_seed(0)
    hybrid = create_model("hybridcn-nas-lite").eval()
    family = family_of(hybrid)
    assert family.has_segmenter(hybrid)
    pixels = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        probability = hybrid.cell_probabilities(pixels)[0, 0].numpy()
    hybrid.config.mask_threshold = float(np.median(probability))  # a threshold that splits this random U-Net's map
    expected = cv2.resize(probability, (90, 70), interpolation=cv2.INTER_LINEAR) > hybrid.config.mask_threshold
    mask = family.cell_mask(hybrid, pixels, size=(70, 90))
    assert mask.dtype == bool and mask.shape == (70, 90) and 0 < mask.mean() < 1
    assert np.array_equal(mask, expected)
    assert family.cell_mask(hybrid, pixels).shape == (128, 128)
    hybrid.segmenter = None
    assert not family.has_segmenter(hybrid)
    with pytest.raises(FamilyError):
        family.cell_mask(hybrid, pixels)
    single = create_model("efficientnet-se-test")
    assert not family_of(single).has_segmenter(single)
    with pytest.raises(FamilyError):
        family_of(single).cell_mask(single, torch.rand(1, 3, 64, 64))
