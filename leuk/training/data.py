"""Training-side data: images decoded and resized once into a uint8 tensor cache, and a class-balancing sampler.

The cache holds what the image processor produces before rescaling and normalisation (resized RGB pixels,
``uint8``, NCHW). Rescaling to [0, 1], augmentation and normalisation happen on the training device
(:mod:`leuk.training.trainer`), so the CPU only decodes each file once per run.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from leuk.io import read_image

__all__ = ["ClassBalancedSampler", "ImageTensorDataset", "collate_image_batch", "processed_uint8"]

#: ``cache="auto"`` keeps decoded images in memory up to this many bytes, else decodes on the fly.
AUTO_CACHE_LIMIT_BYTES = 8 * 2**30


def processed_uint8(processor: Any, path: str) -> torch.Tensor:
    """One image file read with :func:`leuk.io.read_image` and resized by ``processor``: CHW ``uint8``."""
    image = read_image(path)
    pixels = processor(images=image, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][0]
    if pixels.dtype != np.uint8:  # rounding uint8 would go through slow float16 arithmetic for nothing
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(pixels))


class ImageTensorDataset(Dataset):
    """Image files with integer labels as ``{"pixel_values": uint8 CHW, "labels": int}`` items.

    With ``cache=True`` every image is decoded up front (in a thread pool, with a progress bar) into one
    ``uint8`` tensor; otherwise each item is decoded when asked for (use DataLoader workers then).
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        processor: Any,
        *,
        cache: bool = True,
        num_threads: int | None = None,
        progress: bool = True,
        description: str = "decode",
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [str(p) for p in paths]
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.processor = processor
        self.pixels: torch.Tensor | None = None
        if cache and self.paths:
            self.pixels = self._decode_all(num_threads or min(8, os.cpu_count() or 1), progress, description)

    def _decode_all(self, num_threads: int, progress: bool, description: str) -> torch.Tensor:
        from tqdm.auto import tqdm

        with ThreadPoolExecutor(max_workers=num_threads) as pool:
            tensors = list(tqdm(pool.map(lambda p: processed_uint8(self.processor, p), self.paths),
                                total=len(self.paths), desc=description, unit="img", disable=not progress))
        return torch.stack(tensors)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pixels = self.pixels[index] if self.pixels is not None else processed_uint8(self.processor, self.paths[index])
        return {"pixel_values": pixels, "labels": self.labels[index]}


def collate_image_batch(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items of :class:`ImageTensorDataset` into a batch (pixels stay ``uint8`` until on the device)."""
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in items]),
        "labels": torch.stack([torch.as_tensor(item["labels"]) for item in items]),
    }


def estimated_cache_bytes(n_images: int, image_size: int) -> int:
    """Memory an in-memory uint8 cache of ``n_images`` square RGB images needs."""
    return n_images * 3 * image_size * image_size


class ClassBalancedSampler(Sampler[int]):
    """Oversamples minority classes: each epoch holds every training image once, plus random repeats of
    minority-class images until each class has as many items as the largest one, shuffled.

    The order depends only on ``seed`` and the epoch (``set_epoch``, called by accelerate), so every
    process of a distributed run draws the same sequence and a resumed run continues it.
    """

    def __init__(self, labels: Sequence[int], seed: int) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seed = int(seed)
        self.epoch = 0
        self.classes, counts = np.unique(self.labels, return_counts=True)
        self.per_class = int(counts.max()) if len(counts) else 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffled order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_class * len(self.classes)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The indices drawn in ``epoch`` (before the distributed sharding accelerate applies)."""
        rng = np.random.default_rng([self.seed, epoch])
        chosen = []
        for label in self.classes:
            members = np.flatnonzero(self.labels == label)
            extra = rng.choice(members, size=self.per_class - len(members), replace=True)
            chosen.append(np.concatenate([members, extra]))
        return rng.permutation(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices(self.epoch).tolist())
