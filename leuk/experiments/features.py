"""Backbone features for Monte Carlo ``features`` mode: extracted once per model, cached on disk.

A model here is a preset name of :func:`leuk.models.create_model` (built with a seeded initialisation,
ImageNet weights only with ``pretrained=True``) or a model spec of :func:`leuk.hub.load_model` (a trained
model: Hub id, folder, ``demo:<name>``). Images are read with :func:`leuk.io.read_image` and prepared by the
model family's own image processor (the preprocessing of training and inference); the features are the
family's pooled feature vector (:meth:`leuk.models.family.ModelFamily.pooled_features`:
``forward_head(forward_features(x), pre_logits=True)``; EfficientNet-SE: SE + global average pool,
HybridCN-NAS: the fused vector of both branches on the cell mask, z-scored), one vector per image.

The cache is one ``.safetensors`` file per (model, data, preprocessing), named by a key that hashes the
model's configuration and initialisation (or its weight files), the processor's settings and the data, so
a changed dataset, preset or image size can never reuse stale features. The data part of the key is
:func:`data_fingerprint`: every row's file path, size, modification time, label and patient id (cheap to
compute; touching or replacing a file invalidates the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from leuk.io import atomic_output

#: Bumped whenever the extraction itself changes, so older caches are not reused.
FEATURES_VERSION = 1
#: Seconds between two looks for a cache file another process is writing.
CACHE_POLL_S = 2.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def slug(text: str) -> str:
    """A file-name-safe rendering of a model name or spec."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _sha256(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def data_fingerprint(dataset: Any) -> str:
    """Hash of a dataset's rows (path, file size, mtime, label, patient id), in row order."""
    digest = hashlib.sha256()
    columns = set(dataset.column_names)
    paths = dataset["path"] if "path" in columns else [None] * len(dataset)
    labels = dataset["label"]
    patients = dataset["patient_id"] if "patient_id" in columns else [None] * len(dataset)
    for index, (path, label, patient) in enumerate(zip(paths, labels, patients)):
        if path:
            stat = os.stat(path)
            identity = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        else:  # in-memory images: hash the pixels
            image = np.asarray(dataset[index]["image"])
            identity = hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()
        digest.update(f"{identity}|{label}|{patient}\n".encode())
    return digest.hexdigest()


@dataclass
class FeatureExtractor:
    """A model ready to turn batches of PIL images into feature vectors."""

    name: str
    model: Any
    preprocess: Callable[[list], Any]
    device: str
    identity: dict[str, Any] = field(default_factory=dict)

    def __call__(self, images: list) -> np.ndarray:
        import torch

        from leuk.models import family_of

        family = family_of(self.model)
        with torch.inference_mode():
            pixels = self.preprocess(images).to(self.device)
            return family.pooled_features(self.model, pixels).cpu().numpy()


def resize_and_normalize(image_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                         std: Sequence[float] = IMAGENET_STD) -> Callable[[list], Any]:
    """Fallback preprocessing for a model family without an image processor: bilinear resize to a square,
    scale to [0, 1], normalise."""
    import torch
    from PIL import Image

    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def preprocess(images: list) -> Any:
        arrays = [np.asarray(im.resize((image_size, image_size), Image.Resampling.BILINEAR), dtype=np.uint8)
                  for im in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        return (batch - mean_t) / std_t

    return preprocess


def is_preset(name: str) -> bool:
    """True when ``name`` is one of :func:`leuk.models.list_models` (else it is a model spec)."""
    from leuk.models import list_models

    return name in list_models()


def _processor_for(model: Any) -> tuple[Callable[[list], Any], dict[str, Any]]:
    """The model family's own image processor (the one preprocessing of training and inference) and its
    settings; a plain resize + normalisation for a model of no leuk family."""
    from leuk.models import FamilyError, family_of

    config = model.config
    try:
        processor = family_of(model).processor(config)
    except FamilyError:
        size = int(config.image_size)
        mean = tuple(getattr(config, "image_mean", IMAGENET_MEAN))
        std = tuple(getattr(config, "image_std", IMAGENET_STD))
        return resize_and_normalize(size, mean, std), {"resize": size, "mean": mean, "std": std}

    def preprocess(images: list) -> Any:
        return processor(images=images, return_tensors="pt")["pixel_values"]

    return preprocess, processor.to_dict()


def _weights_identity(path: Path) -> list[tuple[str, int, int]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(path).glob("*.safetensors"))


def build_extractor(name: str, *, image_size: int | None = None, pretrained: bool = False, init_seed: int = 0,
                    device: str = "cpu") -> FeatureExtractor:
    """A :class:`FeatureExtractor` for a preset (seeded random or ImageNet initialisation; ``image_size``
    None keeps the preset's own) or a model spec (its saved processor decides the size)."""
    import torch

    if is_preset(name):
        from leuk.models import create_model

        overrides = {"image_size": int(image_size)} if image_size else {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = create_model(name, pretrained=pretrained, **overrides)
        preprocess, settings = _processor_for(model)
        identity = {"preset": name, "pretrained": pretrained, "init_seed": None if pretrained else init_seed,
                    "config": model.config.to_dict(), "preprocessing": settings}
    else:
        from leuk.hub import load_model

        loaded = load_model(name, device=device)
        model = loaded.model
        processor = loaded.processor

        def preprocess(images: list) -> Any:
            return processor(images=images, return_tensors="pt")["pixel_values"]

        identity = {"spec": name, "revision": loaded.revision, "weights": _weights_identity(loaded.path),
                    "preprocessing": processor.to_dict()}
    model = model.to(device).eval()
    return FeatureExtractor(name=name, model=model, preprocess=preprocess, device=device, identity=identity)


def _read_images(dataset: Any, indices: Sequence[int]) -> list:
    from leuk.io import read_image

    if "path" in dataset.column_names:
        paths = dataset.select(indices).select_columns(["path"])["path"]
        if all(paths):
            return [read_image(path) for path in paths]
    return [read_image(dataset[int(i)]["image"]) for i in indices]


def extract_features(extractor: FeatureExtractor, dataset: Any, *, batch_size: int = 32,
                     progress: bool = True) -> np.ndarray:
    """Features of every row of ``dataset`` in row order, as a float32 ``(n_rows, dim)`` array."""
    from tqdm.auto import tqdm

    chunks = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc=f"features {extractor.name}", unit="batch", disable=not progress):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        chunks.append(extractor(_read_images(dataset, indices)))
    return np.ascontiguousarray(np.concatenate(chunks).astype(np.float32))


def cache_key(identity: dict[str, Any], data_hash: str) -> str:
    """The cache key of one model identity on one dataset."""
    return _sha256({"version": FEATURES_VERSION, "model": identity, "data": data_hash})


def cached_features(name: str, dataset: Any, cache_dir: str | os.PathLike, *, image_size: int | None = None,
                    batch_size: int = 32, pretrained: bool = False, init_seed: int = 0, device: str = "cpu",
                    data_hash: str | None = None, progress: bool = True,
                    wait_s: float | None = None) -> tuple[np.ndarray, Path, bool]:
    """Features of ``dataset`` under model ``name``: read from the cache or extracted and cached.

    Returns ``(features, cache_file, was_cached)``. The cache file is written atomically, so concurrent
    processes extracting the same features never see a half-written file. ``wait_s``: when the cache file
    is missing, wait up to that many seconds for another process to write it before extracting.
    """
    from safetensors.numpy import load_file, save_file

    data_hash = data_hash or data_fingerprint(dataset)
    extractor = build_extractor(name, image_size=image_size, pretrained=pretrained, init_seed=init_seed,
                                device=device)
    identity = extractor.identity
    key = cache_key(identity, data_hash)
    cache_file = Path(cache_dir) / f"{slug(name)}-{key[:24]}.safetensors"
    deadline = time.monotonic() + (wait_s or 0.0)
    while not cache_file.is_file() and time.monotonic() < deadline:
        time.sleep(min(CACHE_POLL_S, max(0.0, deadline - time.monotonic())))
    if cache_file.is_file():
        features = load_file(str(cache_file))["features"]
        if len(features) == len(dataset):
            return features, cache_file, True
    features = extract_features(extractor, dataset, batch_size=batch_size, progress=progress)
    metadata = {"model": name, "identity": json.dumps(identity, sort_keys=True, default=str),
                "data_hash": data_hash, "version": str(FEATURES_VERSION)}
    with atomic_output(cache_file) as temporary:
        save_file({"features": features}, str(temporary), metadata=metadata)
    return features, cache_file, False
