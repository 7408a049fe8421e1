"""ONNX export of leuk's image classifiers, checked against the torch model.

:func:`export_onnx` writes a model as an ONNX file whose one input is ``pixel_values`` (``N x C x H x W``,
float32, any ``N``) and whose one output is ``logits`` (``N x classes``, already divided by the model's
temperature, like the torch model's ``.logits``). By default it then runs the file with onnxruntime on a
seeded random batch and raises :class:`ExportError` when its logits differ from the torch model's beyond
tolerance. :func:`onnx_session` exports in memory and opens an onnxruntime session: the ``"onnx"`` runtime
of :class:`leuk.inference.Predictor`.

Needs the optional packages ``onnx``, ``onnxruntime`` and ``onnxscript`` (``pip install 'leuk[onnx]'``).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from leuk.errors import LeukError
from leuk.models.outputs import LogitsOnly

__all__ = ["ExportError", "OnnxExport", "export_onnx", "onnx_session", "require_onnx", "run_session"]

#: what ``runtime="onnx"`` and ``leuk export`` need on top of leuk's own requirements
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
# batch of the example input the export traces: not 1, so that the batch dimension cannot be specialised
_EXAMPLE_BATCH = 2
_CHECK_BATCH = 3


class ExportError(LeukError, RuntimeError):
    """A model that cannot be exported to ONNX, an export whose logits differ from the model's, or missing
    ONNX packages."""


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and how closely it matches the torch model."""

    path: Path
    image_size: int
    opset: int
    #: largest absolute logit difference, onnxruntime against torch, on the check batch (None: not checked)
    max_abs_difference: float | None
    atol: float
    rtol: float


def require_onnx() -> None:
    """Raise :class:`ExportError` naming the pip packages when any of onnx, onnxruntime, onnxscript is missing."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"ONNX export needs the packages {', '.join(ONNX_PACKAGES)} (missing: {', '.join(missing)}): "
            f"pip install {' '.join(ONNX_PACKAGES)}   (or pip install 'leuk[onnx]')"
        )


def _image_size_of(model: nn.Module, image_size: int | None) -> int:
    size = image_size or getattr(getattr(model, "config", None), "image_size", None)
    if not isinstance(size, int) or size < 1:
        raise ExportError(f"{type(model).__name__} has no config.image_size: give the input side (image_size=...)")
    return size


def _channels_of(model: nn.Module) -> int:
    return int(getattr(getattr(model, "config", None), "num_channels", None) or 3)


def _cpu_float32(model: nn.Module) -> nn.Module:
    """``model`` itself when it already runs in float32 on the CPU, else such a copy (the export and its check
    compare float32 CPU arithmetic on both sides, free of bf16 or TF32 rounding)."""
    if all(t.device.type == "cpu" and t.dtype == torch.float32
           for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()):
        return model
    return copy.deepcopy(model).to("cpu", torch.float32)


@contextlib.contextmanager
def _in_eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _to_onnx_program(model: nn.Module, image_size: int, opset: int | None) -> Any:
    """The ``torch.onnx.ONNXProgram`` of the model's logits, eval mode, with a dynamic batch dimension."""
    require_onnx()
    example = torch.zeros(_EXAMPLE_BATCH, _channels_of(model), image_size, image_size)
    try:
        with _in_eval_mode(model):
            return torch.onnx.export(
                LogitsOnly(model).eval(), (example,), dynamo=True, opset_version=opset, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1)}},
            )
    except Exception as err:  # torch.export surfaces unsupported code as many exception types
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExportError(f"cannot export {type(model).__name__} to ONNX ({type(err).__name__}: {first_line})") from err


def _opset_of(program: Any) -> int:
    return next(int(entry.version) for entry in program.model_proto.opset_import if entry.domain in ("", "ai.onnx"))


def _session(source: bytes | str | Path, *, device: str | torch.device = "cpu", threads: int | None = None) -> Any:
    """An onnxruntime session on ``source`` (a serialised model or a file): CUDAExecutionProvider first when
    ``device`` is CUDA and the installed onnxruntime has it, else CPUExecutionProvider with ``threads``
    intra-op threads (default: torch's CPU thread count, so both runtimes use the CPUs alike)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return onnxruntime.InferenceSession(source if isinstance(source, bytes) else str(source), options,
                                        providers=providers)


def onnx_session(
    model: nn.Module,
    *,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    opset: int | None = None,
    threads: int | None = None,
) -> Any:
    """Export ``model`` in memory (float32, dynamic batch) and open an ``onnxruntime.InferenceSession`` on it.

    The session takes ``{"pixel_values": float32 array N x C x H x W}`` and returns ``[logits]``.
    """
    program = _to_onnx_program(_cpu_float32(model), _image_size_of(model, image_size), opset)
    return _session(program.model_proto.SerializeToString(), device=device, threads=threads)


def run_session(session: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """Float32 CPU logits of a NCHW batch through an onnxruntime session made by this module."""
    array = np.ascontiguousarray(pixel_values.detach().to("cpu", torch.float32).numpy())
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    image_size: int | None = None,
    opset: int | None = None,
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    seed: int = 0,
) -> OnnxExport:
    """Write ``model``'s logits as an ONNX file at ``path`` and (``check``) verify it with onnxruntime.

    Args:
        model: a leuk (or any Hugging Face) image classifier whose output has ``.logits``, or a module
            returning the logits tensor. Exported in eval mode, in float32 (a copy is made when the model
            lives elsewhere or in another dtype); its training flag is restored afterwards.
        path: the ``.onnx`` file to write (folders are created).
        image_size: square input side; default ``model.config.image_size``.
        opset: ONNX opset (default: torch's).
        check: run the file with onnxruntime (CPU) on a seeded random batch of 3 and compare with the torch
            model; raise :class:`ExportError` when ``|onnx - torch| > atol + rtol * |torch|`` anywhere.
        seed: seed of the check batch.

    Returns an :class:`OnnxExport` with the file, input side, opset and the largest logit difference.
    """
    reference = _cpu_float32(model)
    size = _image_size_of(model, image_size)
    program = _to_onnx_program(reference, size, opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    max_abs_difference = None
    if check:
        batch = torch.randn(_CHECK_BATCH, _channels_of(model), size, size,
                            generator=torch.Generator().manual_seed(seed))
        with _in_eval_mode(reference), torch.inference_mode():
            expected = LogitsOnly(reference)(batch).float()
        actual = run_session(_session(path), batch)
        difference = (actual - expected).abs()
        max_abs_difference = float(difference.max())
        if not bool((difference <= atol + rtol * expected.abs()).all()):
            raise ExportError(f"the ONNX file's logits differ from the model's by up to {max_abs_difference:.3g} "
                              f"(tolerance atol={atol:g}, rtol={rtol:g}); {path} was written but is not faithful")
    return OnnxExport(path=path, image_size=size, opset=_opset_of(program), max_abs_difference=max_abs_difference,
                      atol=atol, rtol=rtol)
