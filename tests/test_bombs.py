"""Decompression bombs of every supported format are refused from their header, never decoded.

Each bomb is a tiny, real file of its format whose header claims 16000 x 16000 pixels (the TIFF is
a genuine 160-megapixel Group 4 image of 5 kB). Peak memory is measured in fresh processes.
"""

from __future__ import annotations

import io as _stdio
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

W = H = 16000
FORMATS = (
    "avif",
    "bmp",
    "exr",
    "gif",
    "hdr",
    "jp2",
    "jpg",
    "pfm",
    "pgm",
    "png",
    "ras",
    "tif",
    "webp",
)


def _encoded(fmt: str, **kwargs) -> bytearray:
    from PIL import Image

    buffer = _stdio.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buffer, format=fmt, **kwargs)
    return bytearray(buffer.getvalue())


def make_bombs(folder: Path) -> dict[str, Path]:
    """One bomb per format (see the module docstring)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    b = _encoded("WEBP", lossless=True)  # VP8L: 0x2f, then 14-bit width-1 and height-1
    i = b.find(b"VP8L") + 8
    bits = struct.unpack("<I", bytes(b[i + 1 : i + 5]))[0]
    b[i + 1 : i + 5] = struct.pack("<I", (bits & ~((1 << 28) - 1)) | (W - 1) | ((H - 1) << 14))
    files["webp"] = bytes(b)
    b = _encoded("GIF")  # logical screen and first image descriptor
    b[6:10] = struct.pack("<HH", W, H)
    j = b.find(b"\x2c")
    b[j + 5 : j + 9] = struct.pack("<HH", W, H)
    files["gif"] = bytes(b)
    files["pgm"] = b"P5\n16000 16000\n255\n" + bytes(1000)
    files["pfm"] = b"Pf\n16000 16000\n-1.0\n" + bytes(1000)
    files["ras"] = struct.pack(">8I", 0x59A66A95, W, H, 8, W * H, 1, 0, 0) + bytes(1000)
    b = _encoded("JPEG2000")
    k = b.find(b"ihdr") + 4
    b[k : k + 8] = struct.pack(">II", H, W)
    files["jp2"] = bytes(b)
    b = _encoded("AVIF")
    k = b.find(b"ispe") + 8
    b[k : k + 8] = struct.pack(">II", W, H)
    files["avif"] = bytes(b)
    files["hdr"] = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 16000 +X 16000\n" + bytes(1000)
    window = (
        b"dataWindow\0box2i\0" + struct.pack("<i", 16) + struct.pack("<iiii", 0, 0, W - 1, H - 1)
    )
    files["exr"] = b"\x76\x2f\x31\x01" + struct.pack("<I", 2) + window + b"\0" + bytes(1000)
    b = _encoded("PNG")
    b[16:24] = struct.pack(">II", W, H)
    files["png"] = bytes(b)
    b = _encoded("BMP")
    b[18:26] = struct.pack("<ii", W, H)
    files["bmp"] = bytes(b)
    b = _encoded("JPEG")
    k = b.find(b"\xff\xc0") + 5
    b[k : k + 4] = struct.pack(">HH", H, W)
    files["jpg"] = bytes(b)
    paths = {}
    for fmt, data in files.items():
        paths[fmt] = folder / f"bomb.{fmt}"
        paths[fmt].write_bytes(data)
    paths["tif"] = folder / "bomb.tif"
    Image.new("1", (16000, 10000), 0).save(paths["tif"], compression="group4")
    return paths


_READ_ALL = """
import json, resource, sys
import cv2
from xai import io
calls = []
real = cv2.imdecode
cv2.imdecode = lambda *a, **k: calls.append(1) or real(*a, **k)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
refused = {}
for path in sys.argv[1:]:
    try:
        io.read_image(path)
    except Exception as exc:
        refused[path] = str(exc)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"refused": refused, "decodes": len(calls), "growth_mib": growth}))
"""


def test_every_format_is_sized_from_its_header_and_refused_undecoded(tmp_path):
    bombs = make_bombs(tmp_path / "bombs")
    assert set(bombs) == set(FORMATS)
    assert max(p.stat().st_size for p in bombs.values()) < 6000  # tiny files
    out = subprocess.run(
        [sys.executable, "-c", _READ_ALL, *map(str, bombs.values())],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["refused"]) == {str(p) for p in bombs.values()}
    for path, message in result["refused"].items():
        assert "at most max_pixels=100,000,000 pixels" in message, (path, message)
        assert ("160,000,000" if path.endswith(".tif") else "256,000,000") in message
    assert result["decodes"] == 0  # sized from the header: the decoder never ran
    assert result["growth_mib"] < 64


_EXPORT = """
import json, resource, sys
import xai
s = xai.export(sys.argv[1], sys.argv[2], sys.argv[3], batch_size=4, progress=False)
print(json.dumps({"failed": s.failed, "ok": s.ok,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@pytest.mark.slow
def test_an_export_of_bombs_stays_at_the_memory_of_a_small_export(tmp_path):
    from xai import testing

    model = tmp_path / "cnn.keras"
    testing.functional_cnn((32, 32, 3)).save(model)
    bombs = make_bombs(tmp_path / "bombs")
    small = tmp_path / "small"
    small.mkdir()
    for k in range(len(bombs)):
        (small / f"img{k}.png").write_bytes(bytes(_encoded("PNG")))

    def run(folder: Path, out: str) -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", _EXPORT, str(model), str(folder), str(tmp_path / out)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(proc.stdout.strip().splitlines()[-1])

    bomb_run, small_run = run(bombs["png"].parent, "out_bombs"), run(small, "out_small")
    assert bomb_run["failed"] == len(bombs) and small_run["ok"] == len(bombs)
    assert bomb_run["peak_mib"] - small_run["peak_mib"] < 64, (bomb_run, small_run)
