"""EfficientNet-SE model family: architecture, loss, temperature, save/load, remote code, presets, `leuk info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import timm
import torch
import torch.nn.functional as F
from PIL import Image

from leuk.cli import main as cli_main
from leuk.errors import ModelNotFoundError
from leuk.models import ModelConfigError, count_parameters, create_model, list_models
from leuk.models.efficientnet_se import (
    EfficientNetSEConfig,
    EfficientNetSEForImageClassification,
    EfficientNetSEImageProcessor,
    focal_loss,
)

TINY = "efficientnet-se-test"
PAPER_PARAMETERS = 15.2e6


def _random_image(seed: int, size: tuple[int, int] = (90, 70), mode: str = "RGB") -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _trained_tiny_model(seed: int = 0) -> EfficientNetSEForImageClassification:
    """The tiny preset after two optimiser steps, so that weights and BatchNorm statistics are not at init."""
    torch.manual_seed(seed)
    model = create_model(TINY)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(2):
        out = model(torch.randn(4, 3, 64, 64), labels=torch.tensor([0, 1, 1, 0]))
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> tuple[Path, EfficientNetSEForImageClassification]:
    folder = tmp_path_factory.mktemp("tiny-efficientnet-se")
    model = _trained_tiny_model()
    model.config.temperature = 1.7
    model.save_pretrained(folder)
    EfficientNetSEImageProcessor.from_model_config(model.config).save_pretrained(folder)
    return folder, model


def test_paper_preset_matches_architecture_and_paper_size():
    model = create_model("efficientnet-se")
    config = model.config
    backbone_alone = timm.create_model(config.backbone, pretrained=False, num_classes=0, global_pool="")
    channels = backbone_alone.num_features
    squeezed = channels // config.se_reduction
    se = (channels * squeezed + squeezed) + (squeezed * channels + channels)
    widths = [channels, *config.head_hidden_sizes]
    head = sum(a * b + b + 2 * b for a, b in zip(widths, widths[1:])) + widths[-1] * config.num_labels + 2

    total = count_parameters(model)
    assert total == count_parameters(backbone_alone) + se + head
    assert abs(total - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.10
    assert count_parameters(model, trainable_only=True) == total
    assert (config.backbone, config.image_size) == ("tf_efficientnetv2_b3", 384)
    assert config.id2label == {0: "hem", 1: "all"}
    assert config.class_weights() == [0.75, 0.25]


def test_post_init_keeps_timm_initialisation_of_the_backbone():
    torch.manual_seed(3)
    model = create_model(TINY)
    torch.manual_seed(3)
    reference = timm.create_model(
        "test_efficientnet", pretrained=False, num_classes=0, global_pool="", drop_rate=0.3, drop_path_rate=0.2
    )
    ours, theirs = model.backbone.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_forward_interface_and_gradcam_layer():
    model = create_model(TINY).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(pixels)
        pooled = model.pool(features)
        raw = model.forward_head(pooled)
        out = model(pixels)
    assert features.ndim == 4 and features.shape[1] == model.num_features
    assert pooled.shape == (2, model.num_features)
    assert torch.equal(out.logits, raw / model.config.temperature)

    assert model.data_config["input_size"] == (3, 64, 64)


def _gradcam_map(model, pixels: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = model.get_gradcam_layer().register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        model.forward_features(pixels)
    handle.remove()
    return captured[0]


def test_gradcam_layer_is_the_final_map_unless_that_map_is_too_coarse():
    """At 128 px the tiny backbone's final map is 4 x 4 and Grad-CAM uses it; at 64 px it is 2 x 2, and Grad-CAM
    moves to the deepest map with ``gradcam_min_side`` (4) cells a side; a min side of 1 restores the final map."""
    torch.manual_seed(0)
    large = create_model(TINY, image_size=128).eval()
    pixels = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        final = large.forward_features(pixels)
    assert final.shape[-2:] == (4, 4) and torch.equal(_gradcam_map(large, pixels), final)

    small = create_model(TINY).eval()
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final = small.forward_features(pixels)
    cam_map = _gradcam_map(small, pixels)
    assert final.shape[-2:] == (2, 2) and cam_map.shape[-2:] == (4, 4)
    assert small.get_gradcam_layer() is small.backbone.get_submodule(small._gradcam_layer_name)
    assert not small._gradcam_layer_name.startswith(("conv_stem", "bn1")), "the deepest 4x4 map, not the stem"

    exact = create_model(TINY, gradcam_min_side=1).eval()
    assert torch.equal(_gradcam_map(exact, pixels), exact.forward_features(pixels).detach())
    with pytest.raises(ValueError, match="gradcam_min_side"):
        create_model(TINY, gradcam_min_side=0)


def test_focal_loss_matches_the_formula():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(16, 3)) * 3
    labels = rng.integers(0, 3, size=16)
    alpha = np.array([0.2, 0.5, 0.3])
    gamma = 2.0
    log_p = scipy.special.log_softmax(logits, axis=1)[np.arange(16), labels]
    expected = np.mean(-alpha[labels] * (1 - np.exp(log_p)) ** gamma * log_p)

    got = focal_loss(torch.tensor(logits), torch.tensor(labels), gamma=gamma, alpha=torch.tensor(alpha))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    plain = focal_loss(torch.tensor(logits), torch.tensor(labels), gamma=0.0)
    cross_entropy = F.cross_entropy(torch.tensor(logits), torch.tensor(labels))
    assert plain.item() == pytest.approx(cross_entropy.item(), rel=1e-6)


def test_model_loss_uses_raw_logits_and_temperature_only_scales_outputs():
    model = _trained_tiny_model(seed=5)
    pixels, labels = torch.randn(3, 3, 64, 64), torch.tensor([1, 0, 1])
    with torch.no_grad():
        before = model(pixels, labels=labels)
        model.config.temperature = 2.5
        after = model(pixels, labels=labels)
        raw = model.forward_head(model.pool(model.forward_features(pixels)))
    assert torch.equal(after.logits, raw / 2.5)
    assert torch.allclose(before.logits, raw)
    expected = focal_loss(raw, labels, gamma=2.0, alpha=torch.tensor([0.75, 0.25]))
    assert after.loss.item() == pytest.approx(expected.item()) == pytest.approx(before.loss.item())
    model.config.loss = "ce"
    with torch.no_grad():
        assert model(pixels, labels=labels).loss.item() == pytest.approx(F.cross_entropy(raw, labels).item())


def test_save_pretrained_round_trip_is_bit_identical(saved_tiny):
    from transformers import AutoModelForImageClassification

    folder, model = saved_tiny
    loaded = AutoModelForImageClassification.from_pretrained(folder).eval()
    assert type(loaded) is EfficientNetSEForImageClassification
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(pixels).logits, model(pixels).logits)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    assert loaded.config.temperature == 1.7


def test_loading_with_new_labels_reinitialises_only_the_last_layer(saved_tiny):
    from transformers import AutoModelForImageClassification

    folder, model = saved_tiny
    labels = {0: "Benign", 1: "Early", 2: "Pre"}
    loaded = AutoModelForImageClassification.from_pretrained(
        folder, id2label=labels, focal_alpha=None, ignore_mismatched_sizes=True
    )
    last = loaded.head[-1]
    bound = 1 / last.in_features**0.5  # PyTorch's default Linear initialisation range
    assert last.out_features == 3 and bool(torch.all(last.weight.abs() <= bound)) and last.weight.std() > 0
    last_prefix = f"head.{len(model.head) - 1}."
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith(last_prefix)}
    theirs = loaded.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in ours.items())


def test_saved_folder_carries_auto_map_and_remote_code(saved_tiny):
    folder, _ = saved_tiny
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_efficientnet_se.EfficientNetSEConfig",
        "AutoModelForImageClassification": "modeling_efficientnet_se.EfficientNetSEForImageClassification",
    }
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {
        "AutoImageProcessor": "image_processing_efficientnet_se.EfficientNetSEImageProcessor"
    }
    for name in ("configuration", "modeling", "image_processing"):
        lines = (folder / f"{name}_efficientnet_se.py").read_text().splitlines()
        imported = {line.split()[1].split(".")[0] for line in lines if line.startswith(("import ", "from "))}
        assert imported and "leuk" not in imported


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["leuk"] = None  # leuk must not be importable
    import json, torch
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    folder, pixels_file, image_file = sys.argv[1:4]
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        torch.save(model(torch.load(pixels_file)).logits, folder + "/remote_logits.pt")
    classify = pipeline("image-classification", model=folder, trust_remote_code=True)
    predictions = classify(Image.open(image_file), top_k=None)
    try:
        model.load_pretrained_backbone()
        offline_error = None
    except RuntimeError as err:
        offline_error = str(err)
    result = {"module": type(model).__module__, "predictions": predictions, "offline_error": offline_error}
    print(json.dumps(result))
    """
)


def test_saved_folder_loads_without_leuk_via_remote_code(saved_tiny, tmp_path):
    folder, model = saved_tiny
    pixels = torch.randn(2, 3, 64, 64)
    torch.save(pixels, tmp_path / "pixels.pt")
    _random_image(7).save(tmp_path / "cell.png")
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": "",
    }
    arguments = [str(folder), str(tmp_path / "pixels.pt"), str(tmp_path / "cell.png")]
    done = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, *arguments],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["module"].startswith("transformers_modules.")
    with torch.no_grad():
        assert torch.equal(torch.load(folder / "remote_logits.pt"), model(pixels).logits)
    predictions = result["predictions"]
    assert {p["label"] for p in predictions} == {"hem", "all"}
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-6)
    assert "--no-pretrained" in result["offline_error"]


def test_image_processor_resizes_rescales_and_normalises():
    config = EfficientNetSEConfig(image_size=64)
    processor = EfficientNetSEImageProcessor.from_model_config(config)
    image = _random_image(11, size=(90, 70))
    expected = np.asarray(image.resize((64, 64), Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
    expected = ((expected - config.image_mean) / config.image_std).transpose(2, 0, 1)

    pixels = processor(image)["pixel_values"]
    assert isinstance(pixels, torch.Tensor) and pixels.dtype == torch.float32 and pixels.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(pixels[0].numpy(), expected, atol=1e-5)
    batch = processor([_random_image(1, mode="L"), _random_image(2, mode="RGBA")])["pixel_values"]
    assert batch.shape == (2, 3, 64, 64)


@pytest.mark.parametrize("backbone", ["test_efficientnet", "test_resnet"])
def test_baselines_build_with_se_and_head_off(backbone):
    model = create_model(TINY, backbone=backbone, use_se=False, use_head=False, drop_path_rate=0.0).eval()
    assert model.se is None
    assert [type(layer) for layer in model.head] == [torch.nn.Linear]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).logits.shape == (2, 2)


def test_gradient_checkpointing_and_channels_last_keep_results():
    model = _trained_tiny_model(seed=2)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(pixels).logits
        channels_last = model.to(memory_format=torch.channels_last)(pixels.to(memory_format=torch.channels_last))
    assert torch.allclose(channels_last.logits, reference, atol=1e-5)

    def gradients() -> list[torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(0)
        model(pixels, labels=torch.tensor([0, 1])).loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    model.train()
    plain = gradients()
    model.activation_checkpointing_enable()  # the transformers API reaches timm's checkpointing
    assert model.backbone.grad_checkpointing
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, gradients()))


def test_load_pretrained_backbone_copies_weights(monkeypatch):
    real_create = timm.create_model

    def fake_create(name, pretrained=False, **options):
        model = real_create(name, pretrained=False, **options)
        if pretrained:
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.fill_(0.125)
        return model

    monkeypatch.setattr(timm, "create_model", fake_create)
    model = create_model(TINY, pretrained=True)
    assert all(torch.all(p == 0.125) for p in model.backbone.parameters())
    assert "test_efficientnet" in model.config.pretrained_backbone_source


def test_registry_errors_are_clear():
    assert {"efficientnet-se", "efficientnetv2-b3", "resnet50", "vgg16", TINY} <= set(list_models())
    with pytest.raises(ModelNotFoundError, match="did you mean efficientnet-se"):
        create_model("efficientnet-sse")
    with pytest.raises(ModelConfigError, match="use_sse"):
        create_model(TINY, use_sse=False)
    with pytest.raises(ModelConfigError, match="focal_alpha"):
        create_model(TINY, id2label={0: "Benign", 1: "Early", 2: "Pre", 3: "Pro"})
    four_classes = create_model(TINY, id2label={0: "Benign", 1: "Early", 2: "Pre", 3: "Pro"}, focal_alpha=None)
    assert four_classes.head[-1].out_features == 4


def test_cli_info_prints_the_exact_parameter_count(saved_tiny, capsys):
    folder, model = saved_tiny
    assert cli_main(["info", TINY]) == 0
    preset_output = capsys.readouterr().out
    assert f"{count_parameters(create_model(TINY)):,} total" in preset_output
    assert "test_efficientnet" in preset_output and "0=hem, 1=all" in preset_output

    assert cli_main(["info", str(folder), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["parameters"] == count_parameters(model) and facts["temperature"] == 1.7
    assert cli_main(["info", "no-such-model"]) == 1
