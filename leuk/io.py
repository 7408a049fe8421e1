"""The one image reader used everywhere (CLI, training, apps).

Reads PNG, JPEG, BMP, TIFF (8- and 16-bit), grayscale, RGBA, palette images, honours EXIF orientation,
refuses decompression bombs, and turns every failure into one :class:`~leuk.errors.ImageReadError`.

:func:`atomic_output` is the one way result files are written (a killed process never leaves half a file).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from leuk.errors import ImageReadError

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image, np.ndarray]

#: Largest image accepted, in pixels (about 8k x 8k). Larger files are refused before decoding.
MAX_PIXELS = 64_000_000
#: Largest file accepted, in bytes.
MAX_FILE_BYTES = 64 * 1024 * 1024


def _describe(src: ImageSource) -> str:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name
    filename = getattr(src, "name", None)  # an open file, or an upload object that keeps its file name
    if isinstance(filename, str) and filename.strip():
        return Path(filename).name
    return "upload"


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float images scaled to 8 bits by their value range, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        high = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / high * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L")
    return img


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA") and mode == "RGB":
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert(mode) if img.mode != mode else img


def read_image(src: ImageSource, *, max_pixels: int = MAX_PIXELS, mode: str = "RGB",
               name: str | None = None) -> Image.Image:
    """Read an image from a path, bytes, a file object, a PIL image or an array.

    Returns a fully decoded PIL image in ``mode`` (RGB by default; transparent areas become black,
    as the C-NMC background). Raises :class:`ImageReadError` with one clear message for a missing,
    empty, corrupt, truncated, oversized or non-image input. The message starts with ``name`` (e.g. an
    upload's file name) when given, else the file's name, else ``upload``.
    """
    given_name = name
    name = name or _describe(src)
    if isinstance(src, Image.Image):
        img = src
    elif isinstance(src, np.ndarray):
        if src.ndim not in (2, 3) or src.size == 0:
            raise ImageReadError(f"{name}: array of shape {src.shape} is not an image")
        arr = src
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
    else:
        try:
            if isinstance(src, (str, os.PathLike)):
                path = Path(src)
                if not path.is_file():
                    # the whole path helps a command-line user find the typo; an upload keeps its own name
                    raise ImageReadError(f"{given_name or os.fspath(src)}: no such file")
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise ImageReadError(f"{name}: file is larger than {MAX_FILE_BYTES // 2**20} MiB")
                data = path.read_bytes()
            elif isinstance(src, bytes):
                data = src
            else:
                data = src.read(MAX_FILE_BYTES + 1)
        except OSError as err:
            raise ImageReadError(f"{name}: cannot read file ({err.strerror or err})") from err
        if not data:
            raise ImageReadError(f"{name}: file is empty")
        if len(data) > MAX_FILE_BYTES:
            raise ImageReadError(f"{name}: file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL's notes on odd metadata are not the user's problem
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                width, height = img.size
                if width <= 0 or height <= 0:
                    raise ImageReadError(f"{name}: image has no pixels")
                if width * height > max_pixels:
                    raise ImageReadError(
                        f"{name}: image is {width}x{height} pixels, more than the limit of {max_pixels:,}"
                    )
                img.load()
        except ImageReadError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageReadError(f"{name}: not a readable image ({type(err).__name__})") from err
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                ZeroDivisionError, MemoryError, struct.error) as err:
            raise ImageReadError(f"{name}: corrupt or truncated image ({err})") from err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = ImageOps.exif_transpose(img)
            return _to_mode(img, mode)
    except Exception as err:  # any decoder failure surfaces here as the typed error
        raise ImageReadError(f"{name}: cannot convert image ({err})") from err


def read_rgb_array(src: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """:func:`read_image` as an ``H x W x 3`` uint8 array."""
    return np.asarray(read_image(src, max_pixels=max_pixels), dtype=np.uint8)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one atomic step.

    A process killed while writing leaves only a hidden ``.*.tmp`` file, never a half-written ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
