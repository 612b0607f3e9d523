"""Image reading (always RGB) and atomic file writes.

With :mod:`xai.viz`, this is the only module where OpenCV's BGR channel order appears: images come
out of :func:`read_image` and go into :func:`write_png` as RGB.

Every writer here is atomic: it writes a temporary file in the target's directory (named
``.<target name>.<random>.tmp``), flushes and fsyncs it, then renames it onto the target with
:func:`os.replace`. A reader never sees a half-written file, and if anything fails on the way the
temporary file is removed and an existing target is left untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import struct
import warnings
from collections.abc import Iterator, Mapping
from io import BytesIO as _BytesIO
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
from numpy.typing import ArrayLike

from xai.errors import XaiError, bad_type, bad_value

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .tif .tiff .webp .gif .pbm .pgm .ppm .pnm .pfm .sr "
    ".ras .jp2 .avif .exr .hdr .pic".split()
)
"""File suffixes treated as images (case-insensitive); other files are listed as skipped."""


__all__ = [
    "MAX_PIXELS",
    "atomic_write_bytes",
    "atomic_write_text",
    "encode_png",
    "png_params",
    "read_image",
    "resize_image",
    "write_json",
    "write_npy",
    "write_png",
]

MAX_PIXELS: int = 100_000_000
"""Largest image (height * width) that :func:`read_image` accepts by default.

A guard against decompression bombs and accidental huge reads: every file is sized from its header
before it is decoded (a file whose header cannot be read is not decoded at all), so a small file
that claims a huge picture never allocates it. Pass ``max_pixels=`` to :func:`read_image` to change
it for one call.
"""

PathLike = str | os.PathLike


def _as_path(path: Any, param: str = "path") -> Path:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise bad_type(param, "a file path (str or os.PathLike)", path)
    return Path(os.fspath(path))


# --------------------------------------------------------------------------------------- reading


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from the file's header, read without decoding; None if unknown.

    PNG, JPEG and BMP are parsed here; Radiance HDR and OpenEXR too; every other format Pillow
    knows (TIFF, WebP, GIF, PNM/PFM, Sun raster, JPEG 2000, AVIF, ...) is sized by Pillow, which
    reads only the header.
    """
    size = _own_header_size(data)
    if size is None:
        size = _radiance_size(data) or _exr_size(data) or _pillow_size(data)
    return size


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(_BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError as error:  # Pillow's own guard: far too large
            found = re.search(r"\((\d+) pixels\)", str(error))
            return (int(found.group(1)) if found else 2**40), 1
        except Exception:  # noqa: BLE001 - not a format Pillow can size
            return None
    return int(height), int(width)


def _radiance_size(data: bytes) -> tuple[int, int] | None:
    """Radiance HDR (``.hdr``, ``.pic``): header lines, a blank line, then ``-Y H +X W``."""
    if not data.startswith((b"#?RADIANCE", b"#?RGBE")):
        return None
    head = data[:4096]
    end = head.find(b"\n\n")
    if end < 0:
        return None
    line = head[end + 2 :].split(b"\n", 1)[0].decode("ascii", "replace").split()
    if len(line) == 4 and line[0][1:] == "Y" and line[2][1:] == "X":
        with contextlib.suppress(ValueError):
            return int(line[1]), int(line[3])
    return None


def _exr_size(data: bytes) -> tuple[int, int] | None:
    """OpenEXR: the ``dataWindow`` attribute (box2i) of the header."""
    if data[:4] != b"\x76\x2f\x31\x01":
        return None
    pos = 8
    while pos < min(len(data), 65536):
        name_end = data.find(b"\0", pos)
        if name_end <= pos:
            return None
        type_end = data.find(b"\0", name_end + 1)
        if type_end < 0 or type_end + 5 > len(data):
            return None
        (length,) = struct.unpack("<i", data[type_end + 1 : type_end + 5])
        value = data[type_end + 5 : type_end + 5 + length]
        if data[pos:name_end] == b"dataWindow" and len(value) == 16:
            x0, y0, x1, y1 = struct.unpack("<iiii", value)
            return y1 - y0 + 1, x1 - x0 + 1
        pos = type_end + 5 + length
    return None


def _own_header_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a PNG, JPEG or BMP header, or None if unknown/unparseable."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(height), abs(width)
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers, no length
                pos += 2
                continue
            if marker in (0xD9, 0xDA):  # end of image / start of scan: no frame header found
                return None
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            is_sof = 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
            if is_sof and pos + 9 <= len(data):
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return height, width
            pos += 2 + length
    return None


def _check_pixels(path: Path, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise bad_value(
            "path",
            f"an image of at most max_pixels={max_pixels:,} pixels",
            str(path),
            f"The image is {height} x {width} = {height * width:,} pixels (H x W). Downscale it, "
            "or pass a larger max_pixels= to read_image() if you trust the file.",
        )


def _unreadable(path: Path, why: str) -> Exception:
    return bad_value(
        "path", "a readable image file (PNG, JPEG, BMP, TIFF, WebP, ...)", str(path), why
    )


def read_image(
    path: PathLike, *, max_pixels: int | None = None, orientation: str = "exif"
) -> np.ndarray:
    """Read an image file as uint8 RGB, upright as every image viewer shows it.

    The bytes are read with Python (so unicode and space-containing paths work on every platform)
    and decoded with ``cv2.imdecode(..., IMREAD_UNCHANGED)``. Conversions: grey -> RGB (channel
    repeated), grey+alpha and RGBA -> RGB (alpha dropped, not composited), 16-bit -> 8-bit as
    ``round(x / 257)``, OpenCV's BGR -> RGB. The EXIF orientation (a phone photo stored sideways
    with a "rotate 90" tag) is applied, unless ``orientation="stored"``.

    Args:
        path: Path of the image file.
        max_pixels: Largest accepted ``height * width``; None means :data:`MAX_PIXELS`. Checked
            from the header, before decoding.
        orientation: ``"exif"`` (default) to apply the file's EXIF orientation, ``"stored"`` to
            keep the pixels as stored (like ``tf.io.decode_image``).

    Returns:
        uint8 array of shape ``(H, W, 3)``, RGB.

    Raises:
        XaiValueError: Naming the path and the reason: missing file, a directory, unreadable, zero
            bytes, not a decodable image (garbage or truncated), too many pixels, or an
            unsupported layout (e.g. float TIFF/EXR, more than 4 channels).
        XaiTypeError: ``path`` is not a str or os.PathLike.
    """
    return read_image_oriented(path, max_pixels=max_pixels, orientation=orientation)[0]


ORIENTATIONS = ("exif", "stored")


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8; 1 = upright) of encoded image bytes, 1 when there is none.

    Read with Pillow from the header only (no decoding), and only where an EXIF block can be: a
    TIFF, a JPEG ``Exif`` segment or a PNG ``eXIf`` chunk near the start (or a PNG's end), a WebP
    whose ``VP8X`` header flags EXIF, an AVIF/HEIF ``Exif`` item. Looking everywhere would cost as
    much as decoding (Pillow finds a PNG's EXIF by walking all of its chunks).
    """
    if not _may_hold_exif(data):
        return 1
    from PIL import Image

    try:
        with Image.open(_BytesIO(data)) as image:
            value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - not an image Pillow knows, or no EXIF: as stored
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _may_hold_exif(data: bytes) -> bool:
    if data.startswith((b"II*\0", b"MM\0*")):  # TIFF: the orientation is a tag of its IFD
        return True
    if data.startswith(b"\xff\xd8"):  # JPEG: an APP1 "Exif" segment before the image data
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker in (0xD9, 0xDA):  # end of image / start of scan
                return False
            if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:
                pos += 1 if marker == 0xFF else 2
                continue
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\0\0":
                return True
            pos += 2 + length
        return False
    if data.startswith(b"\x89PNG"):  # walk the chunk headers (a few dozen), not the data
        pos = 8
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos : pos + 8])
            if kind == b"eXIf":
                return True
            if kind == b"IEND":
                return False
            pos += 12 + length
        return False
    if data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X":  # extended WebP: flag bit 3 = EXIF
        return len(data) > 20 and bool(data[20] & 0x08)
    if data[4:8] == b"ftyp":  # AVIF / HEIF: an Exif item in the meta box
        return b"Exif" in data[:131072]
    return False


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` (H, W, ...) turned upright for an EXIF orientation value (1-8)."""
    if orientation == 2:
        out = image[:, ::-1]
    elif orientation == 3:
        out = image[::-1, ::-1]
    elif orientation == 4:
        out = image[::-1]
    elif orientation == 5:
        out = np.swapaxes(image, 0, 1)
    elif orientation == 6:
        out = np.rot90(image, -1)
    elif orientation == 7:
        out = np.swapaxes(image[::-1, ::-1], 0, 1)
    elif orientation == 8:
        out = np.rot90(image, 1)
    else:
        return image
    return np.ascontiguousarray(out)


def read_image_oriented(
    path: PathLike, *, max_pixels: int | None = None, orientation: str = "exif"
) -> tuple[np.ndarray, int]:
    """:func:`read_image` and the EXIF orientation tag the file holds (1 = upright or none)."""
    if orientation not in ORIENTATIONS:
        raise bad_value("orientation", "'exif' or 'stored'", orientation)
    target = _as_path(path)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise bad_value("max_pixels", "None or a positive integer", max_pixels)
    if not target.exists():
        raise _unreadable(target, "The file does not exist; check the path and working directory.")
    if target.is_dir():
        raise _unreadable(target, "It is a directory, not a file.")
    try:
        data = target.read_bytes()
    except OSError as error:
        raise _unreadable(target, f"It could not be read: {error}.") from error
    if not data:
        raise _unreadable(target, "The file is empty (zero bytes).")
    size = _header_size(data)
    if size is None:  # never decode what cannot be sized first (a decompression-bomb guard)
        raise _unreadable(
            target,
            "xai could not decode it: its size could not be read from its header (not an image "
            "in a supported format, or a corrupt header), and images are never decoded unsized.",
        )
    _check_pixels(target, *size, int(limit))
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise _unreadable(target, f"OpenCV could not decode it: {error}".strip()) from error
    if decoded is None:
        raise _unreadable(
            target,
            f"OpenCV could not decode its {len(data)} bytes: it is not an image in a supported "
            "format, or it is truncated or corrupt.",
        )
    _check_pixels(target, decoded.shape[0], decoded.shape[1], int(limit))
    rgb = _to_rgb8(target, decoded)
    tag = exif_orientation(data)
    return (apply_orientation(rgb, tag) if orientation == "exif" else rgb), tag


def _to_rgb8(path: Path, decoded: np.ndarray) -> np.ndarray:
    if decoded.ndim == 2:
        decoded = decoded[..., None]
    channels = decoded.shape[2] if decoded.ndim == 3 else 0
    if channels in (1, 2):  # grey, grey + alpha
        rgb = np.repeat(decoded[..., :1], 3, axis=2)
    elif channels == 3:  # BGR
        rgb = decoded[..., ::-1]
    elif channels == 4:  # BGRA
        rgb = decoded[..., 2::-1]
    else:
        raise _unreadable(
            path, f"Unsupported layout: decoded shape {decoded.shape}; expected 1 to 4 channels."
        )
    if rgb.dtype == np.uint16:
        # round(x / 257) in integers: floor((2x + 257) / 514); 65535 -> 255, 257 -> 1.
        rgb = ((rgb.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
    elif rgb.dtype != np.uint8:
        raise _unreadable(
            path,
            f"Unsupported layout: {rgb.dtype.name} pixels (only 8- and 16-bit images are read). "
            "Convert the file to 8-bit PNG or JPEG.",
        )
    return np.ascontiguousarray(rgb)


# --------------------------------------------------------------------------------------- writing


def _create_temp(target: Path) -> tuple[Path, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    stem = target.name[:100]
    for _ in range(100):
        temp = target.with_name(f".{stem}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 filtered by the umask: the final file gets the usual permissions (mkstemp's
            # 0o600 would leak onto the target).
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file next to {str(target)!r}.")


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable on POSIX; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_open(path: PathLike) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` atomically when the block ends without error."""
    target = _as_path(path)
    if target.is_dir():
        raise bad_value("path", "a file path, not a directory", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    temp, fd = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``).

    Args:
        path: Target file; parent directories are created.
        data: ``bytes``, ``bytearray`` or ``memoryview``.

    Returns:
        The target path.

    Raises:
        XaiTypeError: ``data`` is not bytes-like, or ``path`` is not a path.
        XaiValueError: ``path`` is a directory.
        OSError: The file system refused (the target is then untouched).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise bad_type(
            "data", "bytes", data, "Encode text first (or use atomic_write_text / write_json)."
        )
    target = _as_path(path)
    with _atomic_open(target) as handle:
        handle.write(data)
    return target


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, encoded as UTF-8 (no newline translation).

    Args:
        path: Target file; parent directories are created.
        text: The text.

    Returns:
        The target path.

    Raises:
        XaiTypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise bad_type("text", "a str", text, "Use atomic_write_bytes for bytes.")
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, np.generic):
        key = key.item()
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    raise bad_type(f"obj{where} key", "a str, number, bool or None", key)


def _to_jsonable(obj: Any, where: str = "") -> Any:
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, np.generic):
        return _to_jsonable(obj.item(), where)
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        return {
            _json_key(key, where): _to_jsonable(value, f"{where}[{key!r}]")
            for key, value in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(value, f"{where}[{i}]") for i, value in enumerate(obj)]
    raise bad_type(
        f"obj{where}",
        "JSON-serialisable (dict, list, tuple, str, number, bool, None, numpy scalar or array, "
        "path)",
        obj,
        "Convert it to one of these types first.",
    )


def write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON atomically: UTF-8, indent 2, sorted keys, trailing newline.

    numpy scalars become Python numbers, numpy arrays nested lists, paths strings, tuples lists;
    non-string keys (numbers, bools, None) become their JSON text. NaN and Inf are written as
    ``NaN``/``Infinity`` (Python's ``json`` reads them back; strict JSON parsers do not).

    Args:
        path: Target file; parent directories are created.
        obj: The object to write.

    Returns:
        The target path.

    Raises:
        XaiTypeError: Something in ``obj`` cannot be written; the message gives where.
    """
    text = json.dumps(_to_jsonable(obj), indent=2, sort_keys=True, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


_PNG_LEVELS = range(10)


def png_params(compression: int | None) -> list[int]:
    """OpenCV ``imencode`` parameters for a PNG compression level (validated).

    ``None`` keeps OpenCV's default (zlib level 1 with row filters: compact, about 1.5-2 ms for
    a 256x256 RGB image on one core). ``0`` stores the pixels without compression or row filters:
    about 10x faster to encode, files about 1.5-2x larger. ``1``-``9`` are zlib levels (9: smallest
    and slowest). Every level decodes to the same pixels.
    """
    if compression is None:
        return []
    if (
        isinstance(compression, bool)
        or not isinstance(compression, (int, np.integer))
        or int(compression) not in _PNG_LEVELS
    ):
        raise bad_value(
            "png_compression",
            "None (OpenCV's default) or an int from 0 (fastest, largest files) to 9 (smallest)",
            compression,
        )
    level = int(compression)
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if level == 0:  # filters only help the compressor; without one they are wasted time
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    return params


def encode_png(image: ArrayLike, compression: int | None = None) -> bytes:
    """Encode an RGB or grey image as PNG bytes (e.g. for HTML data URIs).

    Args:
        image: uint8 RGB ``(H, W, 3)``, uint8 grey ``(H, W)`` or uint16 grey ``(H, W)``.
        compression: ``None`` (OpenCV's default), or 0 (fastest, no compression) to 9 (smallest);
            see :func:`png_params`. The pixels are the same at every level.

    Returns:
        The PNG file's bytes (RGB in the file, as every PNG reader expects).

    Raises:
        XaiValueError: Any other dtype/shape (the message says how to convert).
    """
    array = np.asarray(image)
    ok_layout = array.ndim in (2, 3) and array.shape[0] > 0 and array.shape[1] > 0
    if array.ndim == 3:
        ok_layout = ok_layout and array.dtype == np.uint8 and array.shape[2] == 3
    elif array.ndim == 2:
        ok_layout = ok_layout and array.dtype in (np.uint8, np.uint16)
    if not ok_layout:
        raise bad_value(
            "image",
            "a uint8 RGB (H, W, 3), uint8 grey (H, W) or uint16 grey (H, W) array",
            image,
            "Convert float or other images with xai.viz.to_display(image, value_range=...); "
            "squeeze a single channel with image[..., 0].",
        )
    params = png_params(compression)
    encodable = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, buffer = cv2.imencode(".png", encodable, params)
    if not ok:
        raise XaiError(f"OpenCV could not encode an image of shape {array.shape} as PNG.")
    return buffer.tobytes()


def write_png(path: PathLike, image: ArrayLike, compression: int | None = None) -> Path:
    """Encode ``image`` as PNG (see :func:`encode_png`) and write it atomically.

    Args:
        path: Target file; parent directories are created.
        image: uint8 RGB ``(H, W, 3)``, uint8 grey ``(H, W)`` or uint16 grey ``(H, W)``.
        compression: ``None`` (OpenCV's default) or 0-9; see :func:`png_params`.

    Returns:
        The target path.

    Raises:
        XaiValueError: Any other dtype/shape (the message says how to convert).
    """
    target = _as_path(path)
    return atomic_write_bytes(target, encode_png(image, compression))


def write_npy(path: PathLike, array: ArrayLike) -> Path:
    """Write ``array`` in ``.npy`` format atomically (no pickling).

    The file is written at ``path`` exactly (no ``.npy`` suffix is added). Read it back with
    ``np.load(path)``.

    Args:
        path: Target file; parent directories are created.
        array: A numeric/bool/str array (not an object array).

    Returns:
        The target path.

    Raises:
        XaiValueError: An object array (it would need pickling).
    """
    data = np.asarray(array)
    if data.dtype.hasobject:
        raise bad_value(
            "array",
            "an array without Python objects (it would need pickling)",
            array,
            "Convert it to a numeric dtype, e.g. np.asarray(array, dtype=np.float32).",
        )
    target = _as_path(path)
    with _atomic_open(target) as handle:
        np.save(handle, data, allow_pickle=False)
    return target


def resize_image(image: ArrayLike, size: tuple[int, int]) -> np.ndarray:
    """Resize one RGB/grey image to ``size = (height, width)`` (area to shrink, else linear)."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise bad_value("image", "one image (H, W) or (H, W, C)", arr)
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise bad_value("size", "a positive (height, width)", size)
    if arr.shape[:2] == (height, width):
        return arr
    shrinking = height * width < arr.shape[0] * arr.shape[1]
    out = cv2.resize(
        arr, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    return out.reshape(height, width, *arr.shape[2:])
