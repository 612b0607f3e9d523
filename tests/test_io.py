"""Tests of xai.io: reading images as RGB, and atomic writes.

Channel order is checked against OpenCV's raw decoder (which returns BGR) and, where available,
against Pillow (which returns RGB), so a BGR/RGB swap anywhere shows up.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import xai.io as xio
from xai.errors import XaiTypeError, XaiValueError
from xai.io import (
    atomic_write_bytes,
    atomic_write_text,
    encode_png,
    read_image,
    write_json,
    write_npy,
    write_png,
)


def encode(ext: str, array: np.ndarray, params: list[int] | None = None) -> bytes:
    """Raw OpenCV encoding (``array`` in OpenCV's own BGR/BGRA order)."""
    ok, buffer = cv2.imencode(ext, array, params or [])
    assert ok
    return buffer.tobytes()


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def red_marked_image() -> np.ndarray:
    """A (3, 4, 3) RGB image with a pure red pixel at row 1, column 2."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    image[1, 2] = (255, 0, 0)
    return image


# ------------------------------------------------------------------------------------- reading


def test_png_rgb_round_trip_keeps_red_red(tmp_path):
    image = red_marked_image()
    path = write_png(tmp_path / "red.png", image)
    assert path == tmp_path / "red.png"
    back = read_image(path)
    assert back.dtype == np.uint8 and back.shape == (3, 4, 3)
    np.testing.assert_array_equal(back, image)
    np.testing.assert_array_equal(back[1, 2], [255, 0, 0])
    # On disk the file is a normal PNG: OpenCV's raw decode is BGR, so red is (0, 0, 255) there.
    raw = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw[1, 2], [0, 0, 255])


def test_encode_png_bytes_are_a_standard_png():
    image = red_marked_image()
    data = encode_png(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    raw = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw[..., ::-1], image)  # BGR on OpenCV's side


@pytest.mark.parametrize("compression", [None, 0, 1, 9])
def test_png_compression_levels_keep_the_pixels(tmp_path, compression):
    rng = np.random.default_rng(3)
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, axis=0)
    image = np.concatenate([smooth, smooth[:, ::-1], smooth // 2], axis=2)
    image[::7, ::5] = rng.integers(0, 256, image[::7, ::5].shape, dtype=np.uint8)
    grey16 = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    for array in (image, grey16):
        data = encode_png(array, compression)
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(raw[..., ::-1] if array.ndim == 3 else raw, array)
    path = write_png(tmp_path / "c.png", image, compression)
    np.testing.assert_array_equal(read_image(path), image)


def test_png_compression_zero_stores_and_nine_is_smallest():
    image = np.repeat(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], 128, axis=0)
    image = np.repeat(image, 3, axis=2)
    sizes = {c: len(encode_png(image, c)) for c in (0, None, 9)}
    # Level 0 stores every byte (3 x 128 x 256 pixels, plus filter bytes and headers).
    assert sizes[0] >= image.size
    assert sizes[9] <= sizes[None] < sizes[0] / 4


@pytest.mark.parametrize("bad", [-1, 10, 1.5, "fast", True])
def test_png_compression_out_of_range_is_refused(bad):
    with pytest.raises((XaiValueError, XaiTypeError), match="png_compression.*0 .*9"):
        encode_png(red_marked_image(), bad)


def test_png_written_is_rgb_for_pillow(tmp_path):
    pil_image = pytest.importorskip("PIL.Image")
    image = red_marked_image()
    write_png(tmp_path / "red.png", image)
    with pil_image.open(tmp_path / "red.png") as opened:
        np.testing.assert_array_equal(np.asarray(opened.convert("RGB")), image)


def test_uint16_grey_png_round_trip_raw_and_scaled(tmp_path):
    values = np.array([[0, 128, 129, 257], [1000, 32896, 65407, 65535]], dtype=np.uint16)
    path = write_png(tmp_path / "depth.png", values)
    raw = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, values)
    # read_image: round(x / 257): 128/257=0.498 -> 0, 129/257=0.502 -> 1, 1000/257=3.89 -> 4,
    # 32896/257=128.0, 65407/257=254.502 -> 255, 65535 -> 255.
    expected = np.array([[0, 0, 1, 1], [4, 128, 255, 255]], dtype=np.uint8)
    back = read_image(path)
    assert back.shape == (2, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(back[..., channel], expected)


def test_uint16_colour_png_is_scaled_and_flipped(tmp_path):
    bgr16 = np.zeros((1, 2, 3), dtype=np.uint16)
    bgr16[0, 0] = (0, 0, 65535)  # red in BGR order
    bgr16[0, 1] = (257 * 10, 257 * 20, 257 * 30)
    (tmp_path / "c16.png").write_bytes(encode(".png", bgr16))
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), [[[255, 0, 0], [30, 20, 10]]])


def test_grey_png_and_jpeg_are_read_as_rgb(tmp_path):
    grey = np.full((6, 8), 77, dtype=np.uint8)
    grey[0, 0] = 200
    write_png(tmp_path / "grey.png", grey)
    back = read_image(tmp_path / "grey.png")
    assert back.shape == (6, 8, 3)
    np.testing.assert_array_equal(back, np.repeat(grey[..., None], 3, axis=2))

    (tmp_path / "grey.jpg").write_bytes(encode(".jpg", np.full((8, 8), 77, np.uint8)))
    jpeg = read_image(tmp_path / "grey.jpg")
    assert jpeg.shape == (8, 8, 3) and jpeg.dtype == np.uint8
    assert (jpeg[..., 0] == jpeg[..., 1]).all() and (jpeg[..., 1] == jpeg[..., 2]).all()
    assert np.abs(jpeg.astype(int) - 77).max() <= 2


def test_colour_jpeg_is_rgb(tmp_path):
    bgr = np.zeros((16, 16, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # pure red, in OpenCV's BGR order
    (tmp_path / "red.jpg").write_bytes(encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100]))
    image = read_image(tmp_path / "red.jpg")
    assert image[..., 0].min() > 240 and image[..., 1:].max() < 15


def test_rgba_and_grey_alpha_drop_alpha(tmp_path):
    bgra = np.zeros((2, 3, 4), dtype=np.uint8)
    bgra[0, 0] = (10, 20, 30, 0)  # B, G, R, A
    bgra[1, 2] = (0, 0, 255, 128)
    (tmp_path / "rgba.png").write_bytes(encode(".png", bgra))
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (2, 3, 3)
    np.testing.assert_array_equal(image[0, 0], [30, 20, 10])
    np.testing.assert_array_equal(image[1, 2], [255, 0, 0])

    pil_image = pytest.importorskip("PIL.Image")
    grey_alpha = np.zeros((2, 3, 2), dtype=np.uint8)
    grey_alpha[..., 0] = 7
    grey_alpha[..., 1] = 200
    pil_image.fromarray(grey_alpha, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), np.full((2, 3, 3), 7))


@pytest.mark.parametrize("name", ["with space.png", "ünïcödé 图像.png", "dir with space/ß.png"])
def test_unicode_and_space_paths(tmp_path, name):
    image = red_marked_image()
    path = write_png(tmp_path / name, image)
    assert path.exists()
    np.testing.assert_array_equal(read_image(str(path)), image)


def test_bad_files_raise_naming_the_path(tmp_path):
    good = encode(".png", red_marked_image())
    cases = {
        "zero bytes.png": (b"", r"empty \(zero bytes\)"),
        "truncated.png": (good[: len(good) // 2], r"truncated or corrupt"),
        "garbage.png": (b"this is not an image at all" * 10, r"not an image"),
        "truncated.jpg": (encode(".jpg", np.zeros((32, 32, 3), np.uint8))[:200], r"decode"),
    }
    for name, (data, why) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(XaiValueError, match=re.escape(str(path))) as info:
            read_image(path)
        assert re.search(why, str(info.value)), str(info.value)
    with pytest.raises(XaiValueError, match=r"missing\.png.*does not exist"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(XaiValueError, match=r"directory"):
        read_image(tmp_path)


def test_max_pixels_checked_from_header_before_decoding(tmp_path, monkeypatch):
    write_png(tmp_path / "big.png", np.zeros((10, 20), dtype=np.uint8))
    (tmp_path / "big.jpg").write_bytes(encode(".jpg", np.zeros((10, 20, 3), np.uint8)))

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded before the size check")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    for name in ("big.png", "big.jpg"):
        with pytest.raises(XaiValueError, match=r"10 x 20 = 200 pixels.*max_pixels="):
            read_image(tmp_path / name, max_pixels=199)
    monkeypatch.setattr(xio, "MAX_PIXELS", 150)  # the module default is read at call time
    with pytest.raises(XaiValueError, match=r"max_pixels=150"):
        read_image(tmp_path / "big.png")


def test_max_pixels_after_decoding_for_other_formats(tmp_path):
    (tmp_path / "big.tiff").write_bytes(encode(".tiff", np.zeros((10, 20, 3), np.uint8)))
    assert read_image(tmp_path / "big.tiff", max_pixels=200).shape == (10, 20, 3)
    with pytest.raises(XaiValueError, match=r"200 pixels"):
        read_image(tmp_path / "big.tiff", max_pixels=199)


def test_header_size_parsers():
    assert xio._header_size(encode(".png", np.zeros((10, 20), np.uint8))) == (10, 20)
    assert xio._header_size(encode(".jpg", np.zeros((11, 21, 3), np.uint8))) == (11, 21)
    assert xio._header_size(encode(".bmp", np.zeros((12, 22, 3), np.uint8))) == (12, 22)
    assert xio._header_size(b"GIF89a....") is None
    pil_image = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()  # progressive JPEG (SOF2) with an EXIF segment before the frame
    exif = pil_image.Exif()
    exif[0x0112] = 1
    pil_image.new("RGB", (23, 13)).save(buffer, "JPEG", progressive=True, exif=exif)
    assert xio._header_size(buffer.getvalue()) == (13, 23)


def test_float_tiff_is_an_unsupported_layout(tmp_path):
    (tmp_path / "f.tiff").write_bytes(encode(".tiff", np.full((3, 4), 0.5, np.float32)))
    with pytest.raises(XaiValueError, match=r"f\.tiff.*float32 pixels"):
        read_image(tmp_path / "f.tiff")


# ------------------------------------------------------------------------------------- writing


def test_write_json_sorted_indented_with_numpy(tmp_path):
    obj = {
        "b": np.float32(0.5),
        "a": np.arange(3),
        "c": {"z": np.int64(3), 2: np.bool_(True)},
        "p": Path("x") / "y.png",
        "t": (1, "two"),
    }
    path = write_json(tmp_path / "sub" / "m.json", obj)
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "a": [\n    0,')
    assert text.endswith("}\n")
    assert json.loads(text) == {
        "a": [0, 1, 2],
        "b": 0.5,
        "c": {"2": True, "z": 3},
        "p": str(Path("x") / "y.png"),
        "t": [1, "two"],
    }
    assert list(json.loads(text)) == ["a", "b", "c", "p", "t"]


def test_text_bytes_npy_writers_create_parents_and_overwrite(tmp_path):
    text_path = atomic_write_text(tmp_path / "a" / "b" / "note.txt", "héllo\n")
    assert text_path.read_bytes() == "héllo\n".encode()
    atomic_write_bytes(text_path, b"second")
    assert text_path.read_bytes() == b"second"
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    npy = write_npy(tmp_path / "maps" / "raw", array)
    assert npy.name == "raw"  # no suffix added
    loaded = np.load(npy)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array)
    assert not [n for n in files_in(tmp_path / "maps") if n.endswith(".tmp")]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_written_files_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "perm.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _fail(*args, **kwargs):
    raise OSError("disk on fire")


def test_failed_replace_leaves_target_untouched_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")
    monkeypatch.setattr(os, "replace", _fail)
    with pytest.raises(OSError, match="disk on fire"):
        write_json(target, {"new": 1})
    assert target.read_text() == "old"
    assert files_in(tmp_path) == ["out.json"]


def test_failed_encoder_leaves_target_untouched(tmp_path, monkeypatch):
    target = tmp_path / "img.png"
    target.write_bytes(b"old")
    monkeypatch.setattr(cv2, "imencode", _fail)
    with pytest.raises(OSError):
        write_png(target, np.zeros((2, 2, 3), np.uint8))
    assert target.read_bytes() == b"old"
    assert files_in(tmp_path) == ["img.png"]


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_failure_mid_write_removes_temp(tmp_path, monkeypatch, error):
    target = tmp_path / "a.npy"
    write_npy(target, np.zeros(3))
    seen = []

    def half_save(handle, *args, **kwargs):
        handle.write(b"\x93NUMPY partial")
        seen.extend(p.name for p in tmp_path.iterdir())
        raise error("interrupted")

    monkeypatch.setattr(np, "save", half_save)
    with pytest.raises(error):
        write_npy(target, np.ones(3))
    assert any(n.startswith(".a.npy.") and n.endswith(".tmp") for n in seen)  # temp was used
    np.testing.assert_array_equal(np.load(target), np.zeros(3))
    assert files_in(tmp_path) == ["a.npy"]


# -------------------------------------------------------------------------------------- errors

ERROR_ROWS = [
    (
        "png-float",
        lambda p: write_png(p / "x.png", np.zeros((2, 2, 3))),
        XaiValueError,
        r"to_display",
    ),
    (
        "png-rgba",
        lambda p: write_png(p / "x.png", np.zeros((2, 2, 4), np.uint8)),
        XaiValueError,
        r"uint8 RGB \(H, W, 3\)",
    ),
    (
        "png-rgb16",
        lambda p: write_png(p / "x.png", np.zeros((2, 2, 3), np.uint16)),
        XaiValueError,
        r"uint16 grey \(H, W\)",
    ),
    (
        "png-grey-channel",
        lambda p: write_png(p / "x.png", np.zeros((2, 2, 1), np.uint8)),
        XaiValueError,
        r"image\[\.\.\., 0\]",
    ),
    (
        "png-empty",
        lambda p: write_png(p / "x.png", np.zeros((0, 2), np.uint8)),
        XaiValueError,
        r"shape \(0, 2\)",
    ),
    (
        "bytes-str",
        lambda p: atomic_write_bytes(p / "x", "text"),
        XaiTypeError,
        r"`data` must be bytes",
    ),
    (
        "text-bytes",
        lambda p: atomic_write_text(p / "x", b"raw"),
        XaiTypeError,
        r"`text` must be a str",
    ),
    (
        "json-set",
        lambda p: write_json(p / "x.json", {"a": [1, {2, 3}]}),
        XaiTypeError,
        r"obj\['a'\]\[1\]",
    ),
    ("json-key", lambda p: write_json(p / "x.json", {(1, 2): 3}), XaiTypeError, r"key"),
    (
        "npy-object",
        lambda p: write_npy(p / "x.npy", np.array([{}, 1], dtype=object)),
        XaiValueError,
        r"pickling",
    ),
    ("write-to-dir", lambda p: atomic_write_text(p, "x"), XaiValueError, r"not a directory"),
    ("path-type", lambda p: read_image(b"x.png"), XaiTypeError, r"str or os\.PathLike"),
    (
        "path-none",
        lambda p: write_png(None, np.zeros((2, 2), np.uint8)),
        XaiTypeError,
        r"`path` must be",
    ),
    (
        "max-pixels",
        lambda p: read_image(p / "x.png", max_pixels=0),
        XaiValueError,
        r"positive integer",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [row[1:] for row in ERROR_ROWS],
    ids=[row[0] for row in ERROR_ROWS],
)
def test_errors(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path)
    assert not [n for n in files_in(tmp_path) if n.endswith(".tmp")]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_is_found_in_every_format_that_carries_it(fmt):
    from PIL import Image

    from xai.io import exif_orientation

    image = Image.fromarray(np.zeros((6, 10, 3), np.uint8) + 40)
    exif = image.getexif()
    exif[0x0112] = 6
    tagged, plain = io.BytesIO(), io.BytesIO()
    image.save(tagged, format=fmt, exif=exif)
    image.save(plain, format=fmt)
    assert exif_orientation(tagged.getvalue()) == 6
    assert exif_orientation(plain.getvalue()) == 1
