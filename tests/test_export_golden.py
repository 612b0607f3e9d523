"""The export redesign is behaviour-preserving: a messy folder exports to the same bytes as before.

The reference is the code of ``REFERENCE_COMMIT`` (the last commit before the redesign of
``xai/export``), extracted with ``git archive`` and run in its own process on the same machine, so
the comparison does not depend on this machine's floating-point details.
"""

from __future__ import annotations

import io as _stdio
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from xai import testing

pytestmark = pytest.mark.slow

REFERENCE_COMMIT = "fe37df57b9993d9cc1afe5fff7effdb6c6ab1922"
REPO = Path(__file__).resolve().parents[1]
RUNS = {  # name -> keyword arguments of xai.export
    "gradcam": {"method": "gradcam", "batch_size": 4, "alpha": 0.5},
    "smoothgrad": {
        "method": "smoothgrad",
        "batch_size": 3,
        "formats": ["overlay", "raw"],
        "seed": 3,
        "params": {"num_samples": 3},
        "colormap": "viridis",
        "png_compression": 0,
    },
}


def _picture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(
            image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        )
    ok, buffer = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(buffer.tobytes())


def messy_folder(root: Path) -> Path:
    """Nested folders, odd names, same stems, grey/RGBA/16-bit images, faults and non-images."""
    base = _picture(40, 50, 7)
    _write(root / "cats/tom.jpg", base)
    _write(root / "cats/tom.png", _picture(30, 30, 1))
    _write(root / "cats/deep/deeper/grey.png", cv2.cvtColor(base, cv2.COLOR_RGB2GRAY))
    _write(root / "cats/rgba.png", np.dstack([base, np.full(base.shape[:2], 90, np.uint8)]))
    _write(root / "dogs/sixteen.png", base.astype(np.uint16) * 257)
    _write(root / "dogs/UPPER.PNG", _picture(21, 35, 2))
    _write(root / "dogs/tiny.bmp", _picture(3, 5, 3))
    _write(root / "names/ünïcödé 猫.png", _picture(20, 28, 4))
    _write(root / "names/with space.jpg", _picture(33, 17, 5))
    _write(root / "names/odd:name?.png", _picture(16, 16, 6))
    _write(root / "top.tif", _picture(64, 48, 8))
    (root / "bad").mkdir()
    (root / "bad/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (root / "bad/empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not a picture", encoding="utf-8")
    _write(root / ".hidden.png", base)
    return root


_SCRIPT = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, sys.argv[1])
import xai
assert xai.__file__.startswith(sys.argv[1]), xai.__file__
kwargs = json.loads(sys.argv[5])
xai.export(sys.argv[2], sys.argv[3], sys.argv[4], progress=False, **kwargs)
"""


# Changed on purpose after the reference (issue 15), so compared without them: keys added to the
# manifest and the settings, and the wording of decoding errors (files are now sized from their
# header before decoding, so an unreadable one gets xai's reason instead of OpenCV's).
NEW_KEYS = ("orientation",)
REWORDED = ("error",)


def _without_new_keys(name: str, data: bytes) -> bytes:
    import json

    if name == "manifest.jsonl":
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
        drop = NEW_KEYS + REWORDED
        return "\n".join(
            json.dumps({k: v for k, v in r.items() if k not in drop}, sort_keys=True) for r in rows
        ).encode()
    if name == ".xai-export.json":
        config = json.loads(data)
        config["settings"] = {k: v for k, v in config["settings"].items() if k not in NEW_KEYS}
        return json.dumps(config, sort_keys=True).encode()
    return data


def _export(code_root: Path, model: Path, src: Path, out: Path, kwargs: dict) -> dict[str, bytes]:
    import json

    subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            str(code_root),
            str(model),
            str(src),
            str(out),
            json.dumps(kwargs),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    skip = {"summary.json", ".xai-export.lock"}
    return {
        p.relative_to(out).as_posix(): _without_new_keys(p.name, p.read_bytes())
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def _reference_code(tmp: Path) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the project's git history (git archive of the reference commit)")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", REFERENCE_COMMIT, "xai"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.fail(f"git archive {REFERENCE_COMMIT} failed: {archive.stderr.decode()[:300]}")
    root = tmp / "reference"
    with tarfile.open(fileobj=_stdio.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    return root


def test_export_is_byte_identical_to_the_code_before_the_redesign(tmp_path):
    reference = _reference_code(tmp_path)
    src = messy_folder(tmp_path / "in")
    model = tmp_path / "cnn.keras"
    testing.functional_cnn((32, 32, 3)).save(model)
    for name, kwargs in RUNS.items():
        before = _export(reference, model, src, tmp_path / f"before_{name}", kwargs)
        after = _export(REPO, model, src, tmp_path / f"after_{name}", kwargs)
        assert sorted(before) == sorted(after), name
        assert len(before) > 20
        changed = [p for p in before if before[p] != after[p]]
        assert not changed, f"{name}: {changed}"
