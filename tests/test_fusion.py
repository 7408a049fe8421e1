"""BatchNorm folding (leuk.models.fusion) and the folded twin that explanations run on: the same function,
checked against the unfolded model as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from leuk.explain import explain
from leuk.explain.attribution import attribution_twin
from leuk.models import create_model
from leuk.models.fusion import ActivationOfBatchNorm, conv_batchnorm_pairs, fold_batchnorm


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters: a freshly built BatchNorm is the identity,
    which any folding bug would survive."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.3, 0.3, generator=generator)
    return model.eval()


def _logits(output):
    return output.logits if hasattr(output, "logits") else output


def _input_gradient(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(_logits(model(x))[:, target].sum(), x)[0]


@pytest.mark.parametrize("build", [
    lambda: create_model("efficientnet-se-test"),
    lambda: timm.create_model("resnet18", pretrained=False, num_classes=2),
], ids=["efficientnet-se-test", "timm-resnet18"])
def test_folded_copy_has_the_same_logits_and_input_gradients(build):
    torch.manual_seed(0)
    model = _randomise_batchnorm(build())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    folded, report = fold_batchnorm(model, x)

    assert report.ok and folded is not model and report.folded == len(report.pairs) > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for name, m in folded.named_modules()
                   if name in {norm for _, norm in report.pairs})
    with torch.no_grad():
        expected, actual = _logits(model(x)), _logits(folded(x))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    reference = _input_gradient(model, x, 1)
    torch.testing.assert_close(_input_gradient(folded, x, 1), reference, rtol=1e-3,
                               atol=1e-4 * float(reference.abs().max()))
    # the original is untouched
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_timm_batchnorm_act_keeps_its_activation_module():
    model = _randomise_batchnorm(create_model("efficientnet-se-test"))
    folded, report = fold_batchnorm(model, torch.randn(1, 3, 64, 64))
    remains = [folded.get_submodule(norm) for _, norm in report.pairs]
    assert all(isinstance(m, ActivationOfBatchNorm) for m in remains)
    assert sum(isinstance(m.act, nn.SiLU) for m in remains) > 0  # Guided Backprop still finds them


class _SharedConvOutput(nn.Module):
    """The convolution's output feeds the BatchNorm AND a skip path: folding would change the skip path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x)
        return self.head((self.norm(y) + y).mean(dim=(2, 3)))


def test_a_fold_that_changes_the_function_is_refused():
    model = _randomise_batchnorm(_SharedConvOutput())
    x = torch.randn(2, 3, 16, 16)
    assert conv_batchnorm_pairs(model, x) == [("conv", "norm")]
    result, report = fold_batchnorm(model, x)
    assert result is model and not report.ok and "differs" in report.reason


def test_a_model_without_batchnorm_is_returned_as_is():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(1, 3, 8, 8)
    model(x)
    result, report = fold_batchnorm(model, x)
    assert result is model and report.folded == 0 and report.reason


def test_explanations_on_the_twin_equal_those_of_the_model():
    torch.manual_seed(0)
    model = _randomise_batchnorm(create_model("efficientnet-se-test"))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    twin, report = attribution_twin(model, x)
    assert report.ok and twin is not model
    assert attribution_twin(model, x)[0] is twin  # cached while the weights stay the same
    for method, options in (("integrated_gradients", {"n_steps": 8}), ("gradcam", {}), ("guided_gradcam", {})):
        plain = explain(model, x, method, target=1, faithfulness=False, fold_batchnorm=False, **options).attribution
        folded = explain(model, x, method, target=1, faithfulness=False, **options).attribution
        scale = float(np.abs(plain).max()) or 1.0
        np.testing.assert_allclose(folded, plain, rtol=0, atol=1e-3 * scale, err_msg=method)
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # an in-place update (an optimiser step) invalidates the twin
    assert attribution_twin(model, x)[0] is not twin


def test_a_half_precision_model_is_explained_in_float32():
    model = _randomise_batchnorm(create_model("efficientnet-se-test")).half()
    x = torch.randn(1, 3, 64, 64)
    twin, _ = attribution_twin(model, x)
    assert next(twin.parameters()).dtype == torch.float32
    assert next(model.parameters()).dtype == torch.float16
    exp = explain(model, x, "integrated_gradients", n_steps=4, faithfulness=False)
    assert exp.attribution.dtype == np.float32 and np.isfinite(exp.attribution).all()


@pytest.mark.slow
def test_compiled_hookless_methods_equal_eager():
    """torch_compile=True runs IG through torch.compile of the twin: the same attributions."""
    torch.manual_seed(0)
    model = _randomise_batchnorm(create_model("efficientnet-se-test"))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    eager = explain(model, x, "integrated_gradients", target=1, n_steps=8, internal_batch_size=4,
                    faithfulness=False).attribution
    compiled = explain(model, x, "integrated_gradients", target=1, n_steps=8, internal_batch_size=4,
                       faithfulness=False, torch_compile=True).attribution
    np.testing.assert_allclose(compiled, eager, rtol=0, atol=1e-4 * float(np.abs(eager).max()))
