"""The one image reader: formats, modes, orientation, limits, and fuzzed garbage."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from leuk.errors import ImageReadError
from leuk.io import read_image, read_rgb_array


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_reads_common_formats_as_rgb(rgb, fmt):
    out = read_image(_encode(rgb, fmt))
    assert out.mode == "RGB" and out.size == rgb.size
    if fmt != "JPEG":
        assert np.array_equal(np.asarray(out), np.asarray(rgb))


def test_grayscale_palette_rgba_and_16bit(rgb, tmp_path):
    assert read_image(_encode(rgb.convert("L"), "PNG")).mode == "RGB"
    assert read_image(_encode(rgb.convert("P"), "PNG")).mode == "RGB"
    rgba = rgb.convert("RGBA")
    alpha = np.zeros((24, 32), np.uint8)
    alpha[:, 16:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    out = np.asarray(read_image(_encode(rgba, "PNG")))
    assert (out[:, :16] == 0).all(), "transparent pixels become the black background"
    assert np.array_equal(out[:, 16:], np.asarray(rgb)[:, 16:])
    sixteen = Image.fromarray((np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80), mode="I;16")
    path = tmp_path / "deep.tif"
    sixteen.save(path)
    arr = read_rgb_array(path)
    assert arr.dtype == np.uint8 and arr.shape == (24, 32, 3)
    assert arr.max() > 200 and arr.min() == 0, "16-bit range is scaled, not clipped"


def test_exif_orientation_is_applied(rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = read_image(_encode(rgb, "JPEG", exif=exif))
    assert out.size == (24, 32)


def test_decompression_bomb_refused_before_decoding():
    big = Image.new("L", (3000, 3000))
    with pytest.raises(ImageReadError, match="limit"):
        read_image(_encode(big, "PNG"), max_pixels=1_000_000)


@pytest.mark.parametrize(
    "payload, message",
    [(b"", "empty"), (b"hello, I am text\n" * 10, "not a readable image")],
)
def test_bad_bytes_give_one_typed_error(payload, message):
    with pytest.raises(ImageReadError, match=message) as info:
        read_image(payload)
    assert "\n" not in str(info.value)


def test_errors_name_the_upload_not_upload():
    """Bytes and file objects are named by the caller's name (an upload's file name), else their own ``.name``."""
    with pytest.raises(ImageReadError, match=r"^broken\.png: not a readable image"):
        read_image(b"text, not a picture", name="broken.png")
    upload = io.BytesIO(b"text, not a picture")
    upload.name = "folder/scan.tif"
    with pytest.raises(ImageReadError, match=r"^scan\.tif: not a readable image"):
        read_image(upload)
    with pytest.raises(ImageReadError, match=r"^upload: "):
        read_image(b"")


def test_truncated_jpeg_and_missing_file(rgb, tmp_path):
    data = _encode(rgb.resize((256, 256)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_image(path)
    with pytest.raises(ImageReadError, match="no such file") as missing:
        read_image(tmp_path / "absent.png")
    assert str(missing.value).startswith(str(tmp_path / "absent.png"))  # the path as typed
    with pytest.raises(ImageReadError) as named:
        read_image(tmp_path / "absent.png", name="upload.png")
    assert str(named.value) == "upload.png: no such file"  # a caller's name comes first, as for every error


def _valid_images() -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw):
        w = draw(st.integers(1, 24))
        h = draw(st.integers(1, 24))
        mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1"]))
        fmt = draw(st.sampled_from(["PNG", "BMP", "JPEG", "TIFF", "GIF"]))
        if fmt == "JPEG" and mode in ("RGBA", "P", "1"):
            mode = "RGB"
        seed = draw(st.integers(0, 2**16))
        arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
        return _encode(Image.fromarray(arr).convert(mode), fmt)

    return build()


@st.composite
def _mutated_images(draw) -> bytes:
    data = bytearray(draw(_valid_images()))
    action = draw(st.sampled_from(["flip", "truncate", "splice", "prefix"]))
    if action == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif action == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif action == "splice":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(max_size=64))
    else:
        data = bytearray(draw(st.binary(max_size=16))) + data
    return bytes(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.one_of(_mutated_images(), st.binary(max_size=256), _valid_images()))
def test_fuzz_reader_only_returns_an_image_or_the_typed_error(data):
    try:
        img = read_image(data, max_pixels=1_000_000)
    except ImageReadError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert img.mode == "RGB" and img.width > 0 and img.height > 0
        np.asarray(img)
