"""The prediction engine's runtimes (eager, compile, cudagraphs, onnx) and ``leuk export``: same logits as the
plain PyTorch model, one clear error where a runtime cannot run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from leuk.cli import main
from leuk.errors import LeukError
from leuk.export import ExportError, export_onnx
from leuk.inference import RUNTIMES, InferenceRuntimeError, Predictor

BATCH_SIZE = 4
SIZE = 64  # efficientnet-se-test's input side
LOGIT_ATOL = 1e-4


def _with_nontrivial_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with BatchNorm affine weights and running statistics that make the logits depend on the image.

    A freshly initialised timm backbone zero-initialises the last BatchNorm of each residual block and keeps
    running_mean 0 / running_var 1, so every image gets nearly the same logits and a runtime that ignored its
    input would pass. Here the affine weights are random, the running statistics are those of a random batch
    (momentum None: their plain average) and the variances are then rescaled at random per channel.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.weight.uniform_(0.5, 1.5, generator=generator)
            norm.bias.normal_(0.0, 0.1, generator=generator)
        model.train()
        model(pixel_values=torch.randn(16, 3, SIZE, SIZE, generator=generator))
        for norm in norms:
            norm.running_var.mul_(torch.empty_like(norm.running_var).uniform_(0.7, 1.4, generator=generator))
            norm.running_mean.add_(torch.empty_like(norm.running_mean).normal_(0.0, 0.05, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from leuk.models import create_model

    torch.manual_seed(0)
    return _with_nontrivial_batchnorm(create_model("efficientnet-se-test", temperature=1.3))


@pytest.fixture(scope="module")
def processor(model):
    from leuk.models.efficientnet_se import EfficientNetSEImageProcessor

    return EfficientNetSEImageProcessor.from_model_config(model.config)


@pytest.fixture(scope="module")
def eager(model, processor) -> Predictor:
    return Predictor(model, processor, device="cpu", batch_size=BATCH_SIZE)


@pytest.fixture(scope="module")
def onnx_engine(model, processor) -> Predictor:
    return Predictor(model, processor, device="cpu", batch_size=BATCH_SIZE, runtime="onnx")


def _batch(rows: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_the_model_under_test_gives_each_image_its_own_logits(eager):
    logits = eager.logits(_batch(8, seed=1))
    assert float(logits.std(dim=0).min()) > 0.05
    assert len(set(logits.argmax(dim=1).tolist())) == 2  # both classes predicted


@pytest.mark.parametrize("rows", [1, 3, 2 * BATCH_SIZE + 1])
def test_onnx_runtime_matches_eager(eager, onnx_engine, rows):
    pixel_values = _batch(rows, seed=rows)
    expected, actual = eager.logits(pixel_values), onnx_engine.logits(pixel_values)
    assert actual.shape == expected.shape == (rows, 2)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, atol=LOGIT_ATOL, rtol=1e-4)
    np.testing.assert_allclose(onnx_engine.predict_proba(pixel_values), eager.predict_proba(pixel_values),
                               atol=1e-5)


@pytest.mark.slow
def test_compile_runtime_matches_eager_and_padding_changes_no_row(model, eager):
    compiled = Predictor(model, None, device="cpu", batch_size=BATCH_SIZE, runtime="compile")
    full = _batch(BATCH_SIZE, seed=7)
    full_logits = compiled.logits(full)  # compiles the one fixed shape (the first call takes about a minute)
    torch.testing.assert_close(full_logits, eager.logits(full), atol=LOGIT_ATOL, rtol=1e-4)

    partial = full[:3]  # padded with one zero image, whose row is dropped
    torch.testing.assert_close(compiled.logits(partial), full_logits[:3], atol=1e-6, rtol=1e-6)
    for row in range(3):  # each image alone, padded with three zero images, against itself unpadded in eager
        alone = compiled.logits(full[row:row + 1])
        assert alone.shape == (1, 2)
        torch.testing.assert_close(alone, eager.logits(full[row:row + 1]), atol=LOGIT_ATOL, rtol=1e-4)

    longer = _batch(2 * BATCH_SIZE + 1, seed=8)  # two full chunks and one padded chunk of a single row
    torch.testing.assert_close(compiled.logits(longer), eager.logits(longer), atol=LOGIT_ATOL, rtol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cudagraphs_without_cuda_is_one_clear_error(model):
    with pytest.raises(InferenceRuntimeError, match="needs a CUDA device") as caught:
        Predictor(model, None, runtime="cudagraphs")
    assert isinstance(caught.value, LeukError) and isinstance(caught.value, ValueError)
    assert "no CUDA" in str(caught.value)


def test_cudagraphs_on_the_cpu_device_is_refused(model):
    with pytest.raises(InferenceRuntimeError, match="needs a CUDA device"):
        Predictor(model, None, device="cpu", runtime="cudagraphs")


def test_unknown_runtime_lists_the_choices(model):
    with pytest.raises(InferenceRuntimeError) as caught:
        Predictor(model, None, device="cpu", runtime="tensorrt")
    message = str(caught.value)
    assert "'tensorrt'" in message and all(name in message for name in RUNTIMES)


def test_onnx_runtime_without_its_packages_names_them(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # what importlib sees when a package is not installed
    with pytest.raises(ExportError, match="pip install onnx onnxruntime onnxscript"):
        Predictor(model, None, device="cpu", runtime="onnx")


def test_bad_image_in_a_batch_gets_its_own_error_under_onnx(eager, onnx_engine, tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for index in range(3):
        path = tmp_path / f"cell{index}.png"
        Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(path)
        files.append(path)
    broken = tmp_path / "broken.png"
    broken.write_text("not a PNG\n")
    inputs = [files[0], broken, files[1], files[2]]

    predictions = onnx_engine.predict_images(inputs)
    reference = eager.predict_images(inputs)
    assert [p.ok for p in predictions] == [True, False, True, True]
    assert "broken.png" in predictions[1].error and predictions[1].label is None
    for got, expected in zip(predictions, reference):
        assert got.source == expected.source and got.label == expected.label
        if got.ok:
            assert got.probabilities.keys() == expected.probabilities.keys()
            assert np.allclose(list(got.probabilities.values()), list(expected.probabilities.values()), atol=1e-5)


@pytest.fixture(scope="module")
def model_dir(model, processor, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export_model")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_leuk_export_writes_a_file_onnxruntime_runs_with_the_models_logits(model, model_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "model.onnx"
    code = main(["export", "--model", str(model_dir), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.is_file() and str(out) in captured.out and "max |logit difference|" in captured.out

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (input_meta,), (output_meta,) = session.get_inputs(), session.get_outputs()
    assert input_meta.name == "pixel_values" and output_meta.name == "logits"
    assert isinstance(input_meta.shape[0], str) and input_meta.shape[1:] == [3, SIZE, SIZE]  # dynamic batch
    pixel_values = _batch(5, seed=11)
    (logits,) = session.run(None, {"pixel_values": pixel_values.numpy()})
    with torch.inference_mode():
        expected = model(pixel_values=pixel_values).logits
    np.testing.assert_allclose(logits, expected.numpy(), atol=LOGIT_ATOL, rtol=1e-4)


def test_export_onnx_reports_the_checked_difference_and_keeps_the_training_flag(model, tmp_path):
    model.train()
    try:
        report = export_onnx(model, tmp_path / "m.onnx", atol=LOGIT_ATOL)
        assert model.training
    finally:
        model.eval()
    assert report.path.is_file() and report.image_size == SIZE and report.opset >= 17
    assert report.max_abs_difference is not None and 0.0 <= report.max_abs_difference <= LOGIT_ATOL


def test_predict_cli_passes_the_runtime_and_reports_its_error_on_one_line(model_dir, tmp_path, capsys):
    image = tmp_path / "cell.png"
    Image.fromarray(np.full((64, 64, 3), 120, dtype=np.uint8)).save(image)
    code = main(["predict", "--model", str(model_dir), str(image), "--device", "cpu", "--runtime", "cudagraphs"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: runtime 'cudagraphs'")
