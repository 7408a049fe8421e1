"""The one prediction engine: images in, calibrated class probabilities out.

Used by ``leuk predict``, ``leuk evaluate``, the training engine's final test evaluation and the apps, so
that every figure leuk reports comes from the same decoding, preprocessing and forward pass.

The forward pass runs in one of :data:`RUNTIMES` (``Predictor(..., runtime=...)``), all computing the same
logits up to float rounding:

- ``"eager"`` (default): the PyTorch model as it is (channels_last; bf16 autocast on CUDA).
- ``"compile"``: ``torch.compile`` of the same forward, for one fixed batch shape: a partial batch is padded
  to ``batch_size`` rows and the padding dropped, so a single compiled graph serves every call. The first
  call compiles (seconds to minutes).
- ``"cudagraphs"``: the same with ``mode="reduce-overhead"``, which captures a CUDA graph of the fixed
  shape and replays it (what makes batch-1 latency launch-free). CUDA only.
- ``"onnx"``: the model exported once to ONNX (:mod:`leuk.export`, float32, dynamic batch) and run by
  onnxruntime: CPUExecutionProvider, CUDAExecutionProvider first when the device is CUDA and it is installed.
  Needs the optional packages onnx, onnxruntime and onnxscript.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch

from leuk.devices import choose_device
from leuk.errors import ImageReadError, LeukError
from leuk.io import ImageSource, read_image
from leuk.models.outputs import logits_of

if TYPE_CHECKING:
    from PIL import Image

    from leuk.verdict import Verdict

__all__ = ["Engine", "InferenceRuntimeError", "Prediction", "Predictor", "RUNTIMES", "default_device",
           "failed_prediction"]

#: the forward-pass runtimes :class:`Predictor` offers (see the module docstring)
RUNTIMES = ("eager", "compile", "cudagraphs", "onnx")
#: runtimes that compile one graph for one input shape: partial batches are padded to ``batch_size``
FIXED_BATCH_RUNTIMES = ("compile", "cudagraphs")


class InferenceRuntimeError(LeukError, ValueError):
    """A runtime that does not exist or cannot run here (``cudagraphs`` without a CUDA device)."""


@dataclass
class Prediction:
    """The outcome for one input: a label with its probabilities, or the reason the input failed."""

    source: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    top_probability: float | None = None
    error: str | None = None
    #: feature distance of the out-of-distribution detector (``None`` without one, see :mod:`leuk.ood`)
    ood_score: float | None = None
    ood_threshold: float | None = None
    #: largest |z| of the image statistics and its threshold (the detector's cheap gate)
    ood_stats_score: float | None = None
    ood_stats_threshold: float | None = None
    #: the verdict of :func:`leuk.verdict.image_verdict`, decided by :class:`Predictor` with the threshold in force
    uncertain: bool = False
    reasons: list[str] = field(default_factory=list)
    #: what the verdict did not check (no out-of-distribution detector); ``None`` when it checked everything
    note: str | None = None

    @property
    def ok(self) -> bool:
        """True when the input was read and classified."""
        return self.error is None

    @property
    def verdict(self) -> "Verdict":
        """This prediction's :class:`leuk.verdict.Verdict` (what every surface renders)."""
        from leuk.verdict import Verdict

        return Verdict.from_reasons(self.reasons, note=self.note)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``leuk predict --json`` writes; the verdict's ``note`` is left out, as in the
        records written before it was kept here)."""
        record = asdict(self)
        record.pop("note")
        return record


def failed_prediction(source: str, error: str) -> Prediction:
    """The prediction of an input that could not be read: the error and its verdict (unreadable, uncertain).
    For a surface that reads its inputs itself (the apps' pixel limit) and hands only the readable ones on."""
    from leuk.verdict import image_verdict

    prediction = Prediction(source=source, error=error)
    verdict = image_verdict(None, None, error)
    prediction.uncertain, prediction.reasons, prediction.note = verdict.uncertain, list(verdict.reasons), verdict.note
    return prediction


def default_device() -> torch.device:
    """CUDA when available, else CPU (:func:`leuk.devices.choose_device`)."""
    return torch.device(choose_device())


def _source_name(src: Any, index: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return f"image {index}"


def _pad_rows(batch: torch.Tensor, rows: int) -> torch.Tensor:
    """``batch`` with zero rows appended up to ``rows`` rows."""
    if len(batch) == rows:
        return batch
    return torch.cat([batch, batch.new_zeros((rows - len(batch), *batch.shape[1:]))])


def _marking_cuda_graph_steps(compiled: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``compiled`` (a CUDA-graph runtime) told before every call that the previous replay's output, already
    copied to the CPU, may be overwritten."""

    def replay(batch: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(batch)

    return replay


class Predictor:
    """Batched, thread-fed inference for a Hugging Face image classifier and its image processor.

    Probabilities are the softmax of the model's logits, which the leuk models already divide by their
    fitted ``config.temperature``. Inputs that cannot be read or preprocessed get their own error and
    never stop the rest of the batch. ``runtime`` picks how the forward pass runs (one of :data:`RUNTIMES`,
    see the module docstring); it raises :class:`InferenceRuntimeError` for an unknown runtime or
    ``"cudagraphs"`` off CUDA, and :class:`leuk.export.ExportError` for ``"onnx"`` without its packages or
    for a model that does not export.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        num_threads: int | None = None,
        runtime: str = "eager",
        detector: Any = None,
        uncertain_below: float | None = None,
        ood_note: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if runtime not in RUNTIMES:
            raise InferenceRuntimeError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        self.device = torch.device(device) if device is not None else default_device()
        if runtime == "cudagraphs" and self.device.type != "cuda":
            raise InferenceRuntimeError(
                "runtime 'cudagraphs' captures CUDA graphs and needs a CUDA device "
                f"(the device is {self.device}{'' if torch.cuda.is_available() else '; this machine has no CUDA'}); "
                "use 'compile' or 'onnx' on the CPU")
        self.runtime = runtime
        self.processor = processor
        self.batch_size = batch_size
        self.num_threads = num_threads or min(8, os.cpu_count() or 1)
        parameter = next(model.parameters(), None)
        if self.device.type != "cuda" and parameter is not None and parameter.dtype in (torch.float16, torch.bfloat16):
            model = model.float()  # half-precision weights (``--dtype float16``) run in float32 off the GPU
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
        self.label_names: list[str] = [str(id2label[i]) for i in sorted(id2label, key=int)]
        self._forward = self._build_forward(runtime)
        from leuk.verdict import UNCERTAIN_BELOW

        #: the out-of-distribution detector (:class:`leuk.ood.OODDetector`) every prediction is checked with
        self.detector = detector
        self.uncertain_below = UNCERTAIN_BELOW if uncertain_below is None else float(uncertain_below)
        self.ood_note = ood_note

    @classmethod
    def from_loaded(cls, loaded: Any, **options: Any) -> "Predictor":
        """The predictor of a :class:`leuk.hub.LoadedModel`: its stored out-of-distribution detector and its
        own verdict threshold (``calibration.json``), so every surface decides the verdict alike.
        ``options``: ``device``, ``batch_size``, ``runtime``... as for the constructor."""
        return cls(loaded.model, loaded.processor, detector=loaded.ood_detector, ood_note=loaded.ood_note,
                   uncertain_below=loaded.uncertain_below, **options)

    def _build_forward(self, runtime: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """The runtime's forward: a CPU NCHW batch in, float32 CPU logits out."""
        if runtime == "onnx":
            from leuk.export import onnx_session, run_session

            session = onnx_session(self.model, device=self.device)
            return lambda pixel_values: run_session(session, pixel_values)
        if runtime == "compile":
            model_logits = torch.compile(self._model_logits, dynamic=False)
        elif runtime == "cudagraphs":
            model_logits = _marking_cuda_graph_steps(
                torch.compile(self._model_logits, mode="reduce-overhead", dynamic=False))
        else:
            model_logits = self._model_logits
        dtype = next(self.model.parameters()).dtype

        def torch_forward(pixel_values: torch.Tensor) -> torch.Tensor:
            batch = pixel_values.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            return model_logits(batch.to(dtype)).float().cpu()

        return torch_forward

    def _model_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The PyTorch model's logits of a batch already on the device (bf16 autocast on CUDA)."""
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            output = self.model(pixel_values=batch)
        return logits_of(output)

    # -- preprocessing ---------------------------------------------------------------------------

    def preprocess(self, src: ImageSource) -> torch.Tensor:
        """Decode one input with :func:`leuk.io.read_image` and run the image processor: a CHW float tensor."""
        return self._process(read_image(src), src)

    def _process(self, image: "Image.Image", src: ImageSource) -> torch.Tensor:
        """The image processor on an image already decoded from ``src`` (named in the error)."""
        try:
            pixel_values = self.processor(images=image, return_tensors="pt")["pixel_values"]
        except Exception as err:  # a processor failure is this input's failure, not the batch's
            raise ImageReadError(f"{Path(str(src)).name if isinstance(src, (str, os.PathLike)) else 'upload'}: "
                                 f"cannot preprocess image ({err})") from err
        return pixel_values[0]

    def _decode(self, src: ImageSource, statistics: bool) -> tuple[torch.Tensor, np.ndarray | None]:
        """:meth:`preprocess`, and the image statistics of :func:`leuk.ood.image_statistics` when asked, of the
        one decoding of ``src``."""
        image = read_image(src)
        if not statistics:
            return self._process(image, src), None
        from leuk.ood.statistics import image_statistics

        return self._process(image, src), image_statistics(image)

    def _preprocess_safely(self, src: ImageSource, statistics: bool = False
                           ) -> tuple[torch.Tensor, np.ndarray | None] | str:
        try:
            return self._decode(src, statistics)
        except LeukError as err:
            return str(err)

    # -- forward ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Model logits (temperature-scaled by the model) of a preprocessed NCHW batch, as float32 on CPU.

        Fixed-shape runtimes (:data:`FIXED_BATCH_RUNTIMES`) run ``batch_size`` rows at a time, the last chunk
        padded with zero images whose logits are dropped; the others run the batch whole.
        """
        if self.runtime not in FIXED_BATCH_RUNTIMES:
            return self._forward(pixel_values)
        chunks = [pixel_values[start:start + self.batch_size]
                  for start in range(0, max(len(pixel_values), 1), self.batch_size)]
        return torch.cat([self._forward(_pad_rows(chunk, self.batch_size))[:len(chunk)] for chunk in chunks])

    @torch.inference_mode()
    def features(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Pooled features ``(N, D)`` of a preprocessed NCHW batch (:func:`leuk.ood.pooled_features`), float32,
        from the eager model whatever the runtime (bf16 autocast on CUDA, as the logits)."""
        from leuk.ood.features import pooled_features

        dtype = next(self.model.parameters()).dtype
        batch = pixel_values.to(self.device).contiguous(memory_format=torch.channels_last).to(dtype)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return pooled_features(self.model, batch).float().cpu().numpy()

    def features_and_statistics(self, images: Sequence[ImageSource], *, progress: bool = False
                                ) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """Pooled features ``(N, D)`` and image statistics ``(N, 10)`` of the readable ``images`` (in order),
        and ``{index: error}`` for the others: what :func:`leuk.ood.fit_detector` fits on."""
        images = list(images)
        features: list[np.ndarray] = []
        stats: list[np.ndarray] = []
        errors: dict[int, str] = {}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), desc="features", unit="img")
        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            for start in range(0, len(images), self.batch_size):
                decoded = list(pool.map(lambda src: self._preprocess_safely(src, True),
                                        images[start:start + self.batch_size]))
                good = [item for item in decoded if not isinstance(item, str)]
                errors.update({start + i: item for i, item in enumerate(decoded) if isinstance(item, str)})
                if good:
                    features.append(self.features(torch.stack([item[0] for item in good])))
                    stats.extend(item[1] for item in good)
                if bar is not None:
                    bar.update(len(decoded))
        if bar is not None:
            bar.close()
        width = features[0].shape[1] if features else 0
        return (np.concatenate(features) if features else np.zeros((0, width), np.float32),
                np.asarray(stats, dtype=np.float64).reshape(-1, 10), errors)

    def predict_proba(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Class probabilities (softmax of the logits) of a preprocessed NCHW batch."""
        return torch.softmax(self.logits(pixel_values), dim=1).numpy()

    # -- public entry point ------------------------------------------------------------------------

    def predict_images(
        self, images: Sequence[ImageSource], *, names: Sequence[str] | None = None, progress: bool = False,
        uncertain_below: float | None = None,
    ) -> list[Prediction]:
        """Classify paths, bytes, PIL images or arrays; one :class:`Prediction` per input, in order, each with its
        verdict (:func:`leuk.verdict.image_verdict`). ``uncertain_below`` is the verdict threshold in force for
        this call (``None``: the predictor's own, :attr:`uncertain_below`): the one place the verdict is decided."""
        threshold = self.uncertain_below if uncertain_below is None else float(uncertain_below)
        images = list(images)
        names = list(names) if names is not None else [_source_name(src, i) for i, src in enumerate(images)]
        if len(names) != len(images):
            raise ValueError(f"{len(names)} names for {len(images)} images")
        results: list[Prediction] = []
        starts = range(0, len(images), self.batch_size)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), desc="predict", unit="img")
        statistics = self.detector is not None and getattr(self.detector, "statistics", None) is not None
        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            def submit(start: int) -> list[Future]:
                return [pool.submit(self._preprocess_safely, src, statistics)
                        for src in images[start:start + self.batch_size]]

            pending = submit(0) if images else []
            for start in starts:
                current = [future.result() for future in pending]
                next_start = start + self.batch_size
                pending = submit(next_start) if next_start < len(images) else []  # decode ahead of the forward
                results.extend(self._classify_chunk(current, names[start:start + self.batch_size], threshold))
                if bar is not None:
                    bar.update(len(current))
        if bar is not None:
            bar.close()
        return results

    def _classify_chunk(self, items: list[tuple[torch.Tensor, np.ndarray | None] | str],
                        names: list[str], threshold: float) -> list[Prediction]:
        from leuk.verdict import image_verdict

        good = [i for i, item in enumerate(items) if not isinstance(item, str)]
        chunk = [Prediction(source=name, error=item) if isinstance(item, str) else Prediction(source=name)
                 for name, item in zip(names, items)]
        checks: list[Any] = [None] * len(items)
        if good:
            batch = torch.stack([items[i][0] for i in good])
            probabilities = self.predict_proba(batch)
            label_names = self.label_names or [str(k) for k in range(probabilities.shape[1])]
            if self.detector is not None:
                stats = [items[i][1] for i in good]
                results = self.detector.assess(self.features(batch), None if any(s is None for s in stats)
                                               else np.stack(stats))
                for index, result in zip(good, results):
                    checks[index] = result
            for row, index in zip(probabilities, good):
                top = int(row.argmax())
                prediction = chunk[index]
                prediction.label = label_names[top]
                prediction.top_probability = float(row[top])
                prediction.probabilities = {name: float(p) for name, p in zip(label_names, row)}
                check = checks[index]
                if check is not None:
                    prediction.ood_score, prediction.ood_threshold = check.score, check.threshold
                    prediction.ood_stats_score, prediction.ood_stats_threshold = check.stats_score, check.stats_threshold
        for prediction, check in zip(chunk, checks):
            verdict = image_verdict(prediction.top_probability, check, prediction.error,
                                    threshold=threshold, ood_note=self.ood_note)
            prediction.uncertain, prediction.reasons = verdict.uncertain, list(verdict.reasons)
            prediction.note = verdict.note
        return chunk

    def probability_matrix(self, images: Sequence[ImageSource], *, progress: bool = False) -> np.ndarray:
        """Calibrated class probabilities ``(len(images), n_classes)``, columns in :attr:`label_names` order, for
        scoring a model on a labelled set. One image that cannot be read refuses the call (``ImageReadError``):
        a score over fewer images than asked would be a different score."""
        predictions = self.predict_images(images, progress=progress)
        failed = [p for p in predictions if not p.ok]
        if failed:
            raise ImageReadError(f"{len(failed)} image(s) could not be read, e.g. {failed[0].error}")
        return np.asarray([[p.probabilities[name] for name in self.label_names] for p in predictions])

    # Architecture-document name of the same call.
    def predict(self, images: Iterable[ImageSource], **kwargs: Any) -> list[Prediction]:
        """Alias of :meth:`predict_images`."""
        return self.predict_images(list(images), **kwargs)


#: The architecture document's name for the prediction engine.
Engine = Predictor
