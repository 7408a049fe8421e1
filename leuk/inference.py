"""The one prediction engine: images in, calibrated class probabilities out.

Used by ``leuk predict``, ``leuk evaluate``, the training engine's final test evaluation and the apps, so
that every figure leuk reports comes from the same decoding, preprocessing and forward pass.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from leuk.errors import ImageReadError, LeukError
from leuk.io import ImageSource, read_image

__all__ = ["Engine", "Prediction", "Predictor", "default_device"]


@dataclass
class Prediction:
    """The outcome for one input: a label with its probabilities, or the reason the input failed."""

    source: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    top_probability: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the input was read and classified."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _source_name(src: Any, index: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return f"image {index}"


class Predictor:
    """Batched, thread-fed inference for a Hugging Face image classifier and its image processor.

    Probabilities are the softmax of the model's logits, which the leuk models already divide by their
    fitted ``config.temperature``. Inputs that cannot be read or preprocessed get their own error and
    never stop the rest of the batch.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        num_threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.device = torch.device(device) if device is not None else default_device()
        self.processor = processor
        self.batch_size = batch_size
        self.num_threads = num_threads or min(8, os.cpu_count() or 1)
        parameter = next(model.parameters(), None)
        if self.device.type != "cuda" and parameter is not None and parameter.dtype in (torch.float16, torch.bfloat16):
            model = model.float()  # half-precision weights (``--dtype float16``) run in float32 off the GPU
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
        self.label_names: list[str] = [str(id2label[i]) for i in sorted(id2label, key=int)]

    # -- preprocessing ---------------------------------------------------------------------------

    def preprocess(self, src: ImageSource) -> torch.Tensor:
        """Decode one input with :func:`leuk.io.read_image` and run the image processor: a CHW float tensor."""
        image = read_image(src)
        try:
            pixel_values = self.processor(images=image, return_tensors="pt")["pixel_values"]
        except Exception as err:  # a processor failure is this input's failure, not the batch's
            raise ImageReadError(f"{Path(str(src)).name if isinstance(src, (str, os.PathLike)) else 'upload'}: "
                                 f"cannot preprocess image ({err})") from err
        return pixel_values[0]

    def _preprocess_safely(self, src: ImageSource) -> torch.Tensor | str:
        try:
            return self.preprocess(src)
        except LeukError as err:
            return str(err)

    # -- forward ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Model logits (temperature-scaled by the model) of a preprocessed NCHW batch, as float32 on CPU."""
        batch = pixel_values.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        dtype = next(self.model.parameters()).dtype
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            output = self.model(pixel_values=batch.to(dtype))
        logits = output.logits if hasattr(output, "logits") else output[0]
        return logits.float().cpu()

    def predict_proba(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Class probabilities (softmax of the logits) of a preprocessed NCHW batch."""
        return torch.softmax(self.logits(pixel_values), dim=1).numpy()

    # -- public entry point ------------------------------------------------------------------------

    def predict_images(
        self, images: Sequence[ImageSource], *, names: Sequence[str] | None = None, progress: bool = False
    ) -> list[Prediction]:
        """Classify paths, bytes, PIL images or arrays; one :class:`Prediction` per input, in order."""
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
        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            def submit(start: int) -> list[Future]:
                return [pool.submit(self._preprocess_safely, src) for src in images[start:start + self.batch_size]]

            pending = submit(0) if images else []
            for start in starts:
                current = [future.result() for future in pending]
                next_start = start + self.batch_size
                pending = submit(next_start) if next_start < len(images) else []  # decode ahead of the forward
                results.extend(self._classify_chunk(current, names[start:start + self.batch_size]))
                if bar is not None:
                    bar.update(len(current))
        if bar is not None:
            bar.close()
        return results

    def _classify_chunk(self, items: list[torch.Tensor | str], names: list[str]) -> list[Prediction]:
        good = [i for i, item in enumerate(items) if isinstance(item, torch.Tensor)]
        chunk = [Prediction(source=name, error=item) if isinstance(item, str) else Prediction(source=name)
                 for name, item in zip(names, items)]
        if not good:
            return chunk
        probabilities = self.predict_proba(torch.stack([items[i] for i in good]))
        label_names = self.label_names or [str(k) for k in range(probabilities.shape[1])]
        for row, index in zip(probabilities, good):
            top = int(row.argmax())
            prediction = chunk[index]
            prediction.label = label_names[top]
            prediction.top_probability = float(row[top])
            prediction.probabilities = {name: float(p) for name, p in zip(label_names, row)}
        return chunk

    # Architecture-document name of the same call.
    def predict(self, images: Iterable[ImageSource], **kwargs: Any) -> list[Prediction]:
        """Alias of :meth:`predict_images`."""
        return self.predict_images(list(images), **kwargs)


#: The architecture document's name for the prediction engine.
Engine = Predictor
