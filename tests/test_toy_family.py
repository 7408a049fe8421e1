"""Adding a model family is one folder's worth of code and one registry line: a toy family defined in this file
(a few hundred parameters) is registered through the public registry and goes through the house unchanged --
the loader, the prediction engine, ``leuk evaluate``, a Captum explanation, the training summary, the model card
and the ``leuk train`` target list. Nothing outside this file names it.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling
from transformers.modeling_outputs import ImageClassifierOutput

from leuk.models.family import ModelFamily

TOY_TYPE = "leuk_toy"
TOY_TITLE = "Toy-Net"
SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples" / "cnmc"


# ---- the family's own code: configuration, model, processor (what its Hub files would hold) ------------------
class ToyConfig(PretrainedConfig):
    model_type = TOY_TYPE

    def __init__(self, image_size: int = 16, width: int = 4, **kwargs: Any) -> None:
        kwargs.setdefault("id2label", {0: "hem", 1: "all"})
        kwargs.setdefault("label2id", {"hem": 0, "all": 1})
        super().__init__(**kwargs)
        self.image_size, self.width = image_size, width


class ToyModel(PreTrainedModel):
    config_class = ToyConfig
    main_input_name = "pixel_values"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.conv = nn.Conv2d(3, config.width, 3, padding=1)
        self.classifier = nn.Linear(config.width, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, std=0.5)
            nn.init.zeros_(module.bias)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(pixel_values))

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **_: Any) -> ImageClassifierOutput:
        logits = self.classifier(self.forward_features(pixel_values).mean(dim=(2, 3)))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


class ToyProcessor(PilBackend):
    model_input_names = ["pixel_values"]
    do_convert_rgb = True
    do_resize = True
    size = {"height": 16, "width": 16}
    resample = PILImageResampling.BILINEAR
    do_center_crop = False
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    return_tensors = "pt"

    @classmethod
    def from_model_config(cls, config: ToyConfig) -> "ToyProcessor":
        return cls(size={"height": config.image_size, "width": config.image_size})


# ---- its leuk contract: the one file a family adds beside its Hub files ---------------------------------------
class ToyFamily(ModelFamily):
    model_type = TOY_TYPE
    title = TOY_TITLE
    dataset = "cnmc"
    pooled_description = "global average of the one convolution's ReLU map"
    real_data = "real toy cells"
    synthetic_data = "synthetic toy cells"
    image_unit = "cells"
    card_dataset_name = "Toy cells"
    card_dataset_type = "toy-cells"
    card_tags = ("toy",)
    train_command = "tests.toy_train_command_that_is_not_installed"

    def processor_class(self) -> type:
        return ToyProcessor

    def forward_features(self, model: Any, pixel_values: Any) -> Any:
        return model.forward_features(pixel_values)

    def forward_head(self, model: Any, features: Any, *, pre_logits: bool = False) -> Any:
        pooled = features.mean(dim=(2, 3))
        return pooled if pre_logits else model.classifier(pooled)


def _toy_factory(*, pretrained: bool | str = False, **overrides: Any) -> ToyModel:
    return ToyModel(ToyConfig(**overrides))


@contextlib.contextmanager
def registered_toy() -> Iterator[ToyFamily]:
    """The toy family registered as any family registers itself (Auto classes, family, preset), removed after."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from leuk.models import register_family, register_preset, unregister_family, unregister_preset

    AutoConfig.register(TOY_TYPE, ToyConfig, exist_ok=True)
    AutoModelForImageClassification.register(ToyConfig, ToyModel, exist_ok=True)
    AutoImageProcessor.register(ToyConfig, image_processor_classes={"pil": ToyProcessor, "torchvision": ToyProcessor},
                                exist_ok=True)
    family = register_family(ToyFamily())  # the one registry line
    register_preset("toy-net", _toy_factory, description="toy family of the tests", family=family)
    try:
        yield family
    finally:
        unregister_preset("toy-net")
        unregister_family(TOY_TYPE)
        CONFIG_MAPPING._extra_content.pop(TOY_TYPE, None)


def test_registering_the_toy_is_undone():
    # first in the file, before the module fixture registers the toy for the tests below
    from leuk.models import FamilyError, get_family, list_families, list_models

    with registered_toy() as family:
        assert get_family(TOY_TYPE) is family and "toy-net" in list_models()
    assert "toy-net" not in list_models() and all(f.model_type != TOY_TYPE for f in list_families())
    with pytest.raises(FamilyError):
        get_family(TOY_TYPE)


@pytest.fixture(scope="module")
def toy_family():
    with registered_toy() as family:
        yield family


@pytest.fixture(scope="module")
def toy_folder(toy_family, tmp_path_factory) -> Path:
    """A saved toy model with its processor and an ``eval_results.json`` (real data, a patient split)."""
    from leuk.models import create_model
    from leuk.records import EVAL_RESULTS_FILE

    torch.manual_seed(0)
    model = create_model("toy-net")
    folder = tmp_path_factory.mktemp("toy") / "toy-net"
    model.save_pretrained(folder)
    toy_family.processor(model.config).save_pretrained(folder)
    record = {"accuracy": 0.5, "f1_weighted": 0.5, "n": 12, "synthetic": False,
              "split_sizes": {"train": {"n_images": 30}, "val": {"n_images": 6}}}
    (folder / EVAL_RESULTS_FILE).write_text(json.dumps(record), encoding="utf-8")
    return folder


def test_the_toy_is_small_and_registered(toy_family):
    from leuk.models import count_parameters, create_model, family_of, family_of_preset, list_families

    model = create_model("toy-net")
    assert count_parameters(model) < 500
    assert family_of(model) is toy_family and family_of_preset("toy-net") is toy_family
    assert toy_family in list_families() and toy_family.presets() == ["toy-net"]


def test_predict_through_the_loader_and_the_prediction_engine(toy_folder, toy_family):
    from leuk.hub import load_model
    from leuk.inference import Predictor

    loaded = load_model(str(toy_folder), device="cpu")
    assert loaded.family is toy_family and loaded.labels == ["hem", "all"]
    images = sorted(SAMPLES.glob("*.png"))
    predictions = Predictor.from_loaded(loaded, device="cpu").predict_images(images)
    assert len(predictions) == len(images) == 6
    for prediction in predictions:
        assert prediction.ok
        probabilities = np.array(list(prediction.probabilities.values()))
        assert probabilities.shape == (2,) and abs(probabilities.sum() - 1) < 1e-5
        assert prediction.label in ("hem", "all")
    features = Predictor(loaded.model, loaded.processor, device="cpu").features(
        torch.stack([Predictor(loaded.model, loaded.processor, device="cpu").preprocess(images[0])]))
    assert features.shape == (1, 4)  # the family's pooled_features


def test_evaluate_command_on_the_toy(toy_folder, cnmc_root, tmp_path):
    from leuk.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(toy_folder), "--data", str(cnmc_root), "--out", str(out),
                 "--split", "all", "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    flat = json.dumps(metrics)
    assert "roc_auc" in flat and "accuracy" in flat
    rows = (out / "predictions.csv").read_text(encoding="utf-8").strip().splitlines()
    assert len(rows) == 1 + 72  # a header and every image of the fixture


def test_explain_the_toy(toy_folder):
    from leuk.explain import explain
    from leuk.hub import load_model
    from leuk.io import read_image

    loaded = load_model(str(toy_folder), device="cpu")
    pixel_values = loaded.processor(images=read_image(sorted(SAMPLES.glob("*.png"))[0]),
                                    return_tensors="pt")["pixel_values"]
    explanation = explain(loaded.model, pixel_values, "integrated_gradients")
    assert tuple(explanation.attribution.shape) == (16, 16)
    assert np.isfinite(np.asarray(explanation.attribution)).all() and explanation.target in (0, 1)


def test_card_and_training_summary_of_the_toy(toy_folder):
    from leuk.hub import build_model_card, folder_training_summary

    card = str(build_model_card(toy_folder))
    assert f"# {TOY_TITLE} (`{toy_folder}`)" in card
    assert "- toy" in card and "Toy cells" in card and "36 cells" in card  # tags, dataset, training images
    assert "Parameters: **122**" in card and "Labels: hem, all." in card  # counted through the loader
    hub_card = str(build_model_card(toy_folder, repo_id="someone/toy-net", pinned_revision="abc"))
    assert "someone/toy-net" in hub_card and "image.png" in hub_card  # the family's example image
    summary = folder_training_summary(toy_folder)
    assert summary.text == f"{TOY_TITLE}: trained on real toy cells (36 cells)"


def test_train_lists_the_toy_target_even_when_its_command_is_missing(toy_family, capsys):
    from leuk.cli import build_parser
    from leuk.cli.train import train_targets

    assert train_targets()["leuk-toy"] == toy_family.train_command
    args = build_parser("train").parse_args(["train", "leuk-toy"])
    assert args.run_target(args) == 1
    assert "not available" in capsys.readouterr().err
