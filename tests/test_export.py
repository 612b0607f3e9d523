"""``xai export``: folder walking, faults, outputs, manifest, resuming, safety, CLI and Python API.

Every folder is built here in a temporary directory; the model is a tiny seeded CNN (32x32 input).
"""

from __future__ import annotations

import contextlib
import importlib
import io as _stdio
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

import xai
from xai import cli, io, postprocess, testing
from xai.errors import XaiValueError
from xai.export import CONFIG_NAME, FORMATS, ExportSummary, output_stem
from xai.preprocessing import PRESETS, get_preprocess

MODEL_SHAPE = (32, 32, 3)
ROW_KEYS = {
    "path",
    "status",
    "error",
    "height",
    "width",
    "predicted",
    "predicted_label",
    "probability",
    "target",
    "target_label",
    "target_probability",
    "score",
    "method",
    "params",
    "layer",
    "outputs",
    "orientation",
}


# ----------------------------------------------------------------------------------- helpers


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish random RGB picture (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def write_rgb(path: Path, image: np.ndarray, params: list[int] | None = None) -> Path:
    """Write an RGB (or grey, or RGBA) image with OpenCV, whatever the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(path.suffix, image, params or [])
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


def make_folder(root: Path, n: int, *, nested: bool = True, size=(24, 30)) -> Path:
    for i in range(n):
        sub = root / (f"class{i % 2}" if nested else "")
        write_rgb(sub / f"img{i:03d}.png", rgb(size[0] + i % 3, size[1], seed=i))
    return root


def read_manifest(out: Path) -> list[dict]:
    return [
        json.loads(line)
        for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def by_path(out: Path) -> dict[str, dict]:
    return {r["path"]: r for r in read_manifest(out)}


def output_files(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` except the run's timing summary and its lock."""
    skip = {"summary.json", ".xai-export.lock"}
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = _stdio.StringIO(), _stdio.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def png_bomb(path: Path, height: int = 12_000, width: int = 10_000) -> Path:
    """A valid 8-bit grey PNG of height x width zero pixels (120 MP), about 120 kB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + zero pixels
    block = row * 100
    parts = [compressor.compress(block) for _ in range(height // 100)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    testing.functional_cnn(MODEL_SHAPE).save(path)
    return path


@pytest.fixture(scope="module")
def explainer(model_path):
    """Built once: its compiled steps are reused by every Python-API export below."""
    return xai.Explainer(keras.saving.load_model(model_path))


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("small"), 6)


GOOD = [
    "good/rgb.png",
    "good/grey.png",
    "good/grey.jpg",
    "good/rgba.png",
    "good/grey_alpha.png",
    "good/deep16.png",
    "good/grey16.png",
    "good/cmyk.jpg",
    "good/progressive.jpg",
    "good/palette.png",
    "good/deep16.tif",
    "names/ünïcödé 猫.png",
    "names/with space.jpg",
    "names/odd:name?.png",
]
FAULTS = {  # path -> (status, reason pattern)
    "bad/corrupt.png": ("error", "could not decode"),
    "bad/empty.png": ("error", "empty"),
    "bad/text.jpg": ("error", "could not decode"),
    "bad/truncated.jpg": ("error", "truncated or corrupt"),
    "bad/truncated.png": ("error", "truncated or corrupt"),
    "bomb.png": ("error", "at most max_pixels=100,000,000 pixels.*12000 x 10000"),
    "unreadable.png": ("error", "could not be read.*[Pp]ermission"),
    "broken.png": ("error", "Broken symbolic link"),
    "notes.txt": ("skipped", "Not an image file name"),
    ".hidden.png": ("skipped", "Hidden"),
    "loop": ("skipped", "already visited"),
    "self.png": ("skipped", "loop"),
}


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory, model_path):
    """One CLI export over a folder holding every kind of fault (and good odd images)."""
    from PIL import Image

    src = tmp_path_factory.mktemp("faults") / "in"
    base = rgb(40, 50, seed=7)
    write_rgb(src / "good/rgb.png", base)
    write_rgb(src / "good/grey.png", cv2.cvtColor(base, cv2.COLOR_RGB2GRAY))
    write_rgb(src / "good/grey.jpg", cv2.cvtColor(base, cv2.COLOR_RGB2GRAY))
    write_rgb(src / "good/rgba.png", np.dstack([base, np.full(base.shape[:2], 128, np.uint8)]))
    Image.fromarray(base).convert("LA").save(src / "good/grey_alpha.png")
    write_rgb(src / "good/deep16.png", base.astype(np.uint16) * 257)
    write_rgb(
        src / "good/grey16.png", cv2.cvtColor(base, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    )
    Image.fromarray(base).convert("CMYK").save(src / "good/cmyk.jpg", quality=95)
    Image.fromarray(base).save(src / "good/progressive.jpg", progressive=True, quality=95)
    Image.fromarray(base).convert("P").save(src / "good/palette.png")
    write_rgb(src / "good/deep16.tif", base.astype(np.uint16) * 257)
    write_rgb(src / "names/ünïcödé 猫.png", rgb(20, 28, seed=1))
    write_rgb(src / "names/with space.jpg", rgb(33, 17, seed=2))
    write_rgb(src / "names/odd:name?.png", rgb(16, 16, seed=3))
    (src / "bad").mkdir()
    (src / "bad/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    (src / "bad/empty.png").write_bytes(b"")
    (src / "bad/text.jpg").write_text("this is not a picture", encoding="utf-8")
    jpg = write_rgb(src / "full.jpg", base).read_bytes()
    (src / "bad/truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    png = write_rgb(src / "full.png", base).read_bytes()
    (src / "bad/truncated.png").write_bytes(png[: len(png) // 2])
    (src / "full.jpg").unlink()
    (src / "full.png").unlink()
    png_bomb(src / "bomb.png")
    write_rgb(src / "unreadable.png", base)
    (src / "notes.txt").write_text("a text file", encoding="utf-8")
    write_rgb(src / ".hidden.png", base)
    os.symlink(src, src / "loop")  # a folder link back to the root: a loop
    os.symlink("self.png", src / "self.png")  # a link to itself
    os.symlink("missing.png", src / "broken.png")

    out = src.parent / "out"
    with pytest.MonkeyPatch.context() as mp:
        if os.geteuid() == 0:  # root reads anything: simulate the refusal where read_image reads
            real = Path.read_bytes

            def read_bytes(self):
                if self.name == "unreadable.png":
                    raise PermissionError(13, "Permission denied", str(self))
                return real(self)

            mp.setattr(Path, "read_bytes", read_bytes)
        else:
            (src / "unreadable.png").chmod(0)
        try:
            code, stdout, stderr = run_cli(
                "export", model_path, src, out, "--batch-size", "4", "--alpha", "0", "-q"
            )
        finally:
            (src / "unreadable.png").chmod(0o644)
    return {"code": code, "stdout": stdout, "stderr": stderr, "src": src, "out": out}


# ----------------------------------------------------------------------------------- faults


def test_faults_exit_1_with_a_summary(fault_run):
    assert fault_run["code"] == 1
    err = fault_run["stderr"]
    assert "image(s) failed" in err and "bad/empty.png" in err and "manifest.jsonl" in err


@pytest.mark.parametrize("path", sorted(FAULTS))
def test_each_fault_is_a_manifest_row_with_its_reason(fault_run, path):
    rows = by_path(fault_run["out"])
    status, pattern = FAULTS[path]
    assert rows[path]["status"] == status
    assert rows[path]["error"] is not None
    import re

    assert re.search(pattern, rows[path]["error"]), rows[path]["error"]
    assert rows[path]["outputs"] == {}


@pytest.mark.parametrize("path", GOOD)
def test_odd_but_valid_images_are_explained_over_the_original(fault_run, path):
    """Grey, RGBA, 16-bit, CMYK, palette, progressive, TIFF, unicode/space names: all explained.

    The run used alpha=0, so each overlay must be exactly the original picture as read_image
    decodes it (RGB, original size): the overlay is drawn on the original, not the resized input.
    """
    out, src = fault_run["out"], fault_run["src"]
    row = by_path(out)[path]
    assert row["status"] == "ok", row["error"]
    original = io.read_image(src / path)
    assert (row["height"], row["width"]) == original.shape[:2]
    overlay = io.read_image(out / row["outputs"]["overlay"])
    np.testing.assert_array_equal(overlay, original)
    heat = cv2.imread(str(out / row["outputs"]["heatmap"]), cv2.IMREAD_UNCHANGED)
    assert heat.dtype == np.uint16 and heat.shape == original.shape[:2]
    raw = np.load(out / row["outputs"]["raw"])
    assert raw.shape == MODEL_SHAPE[:2] and raw.dtype == np.float32  # last_conv, native resolution


def test_sixteen_bit_and_grey_files_decode_like_their_8bit_twins(fault_run):
    out = fault_run["out"]
    rows = by_path(out)
    same = [
        ("good/rgb.png", "good/deep16.png"),
        ("good/rgb.png", "good/deep16.tif"),
        ("good/grey.png", "good/grey16.png"),
    ]
    for a, b in same:
        assert rows[a]["predicted"] == rows[b]["predicted"]
        assert rows[a]["score"] == pytest.approx(rows[b]["score"], abs=1e-5)
        np.testing.assert_array_equal(
            np.load(out / rows[a]["outputs"]["raw"]), np.load(out / rows[b]["outputs"]["raw"])
        )


def test_manifest_has_one_full_row_per_input_in_walk_order(fault_run):
    rows = read_manifest(fault_run["out"])
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == len(GOOD) + len(FAULTS)
    assert set(paths) == set(GOOD) | set(FAULTS)
    assert all(set(r) == ROW_KEYS for r in rows)
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["method"] == "gradcam" and r["layer"] == ["last_conv"] for r in ok)
    assert all(0.0 <= r["probability"] <= 1.0 and r["target"] == r["predicted"] for r in ok)
    assert all(r["target_probability"] == r["probability"] for r in ok)
    summary = json.loads((fault_run["out"] / "summary.json").read_text())
    assert (summary["ok"], summary["failed"]) == (
        len(GOOD),
        sum(s == "error" for s, _ in FAULTS.values()),
    )
    assert summary["skipped"] == sum(s == "skipped" for s, _ in FAULTS.values())


def test_names_are_mirrored_and_sanitised_inside_the_output(fault_run):
    out = fault_run["out"]
    rows = by_path(out)
    assert rows["names/ünïcödé 猫.png"]["outputs"]["overlay"] == "overlay/names/ünïcödé 猫.png.png"
    assert rows["names/with space.jpg"]["outputs"]["raw"] == "raw/names/with space.jpg.npy"
    odd = rows["names/odd:name?.png"]["outputs"]["overlay"]
    assert odd.startswith("overlay/names/odd_name_.png~") and ":" not in odd and "?" not in odd
    root = out.resolve()
    for row in rows.values():
        for rel in row["outputs"].values():
            assert (out / rel).resolve().is_relative_to(root)
    # the symlink loop was not followed: no output under overlay/loop
    assert not (out / "overlay" / "loop").exists()


def test_output_names_never_collide():
    names = [
        "a?b.png",
        "a_b.png",
        "a:b.png",
        "sub/x.png",
        "sub:x.png",
        "CON.png",
        "..png",
        "a.png",
        "a.jpg",
    ]
    stems = [output_stem(n) for n in names]
    assert len(set(stems)) == len(stems)
    assert output_stem("cats/tom.jpg") == "cats/tom.jpg"  # clean names are kept as they are
    assert all(".." not in s.split("/") and not s.startswith("/") for s in stems)
    long = output_stem("x" * 300 + ".png")
    assert len(long.encode()) <= 220


# ----------------------------------------------------------------------------- exit codes, CLI


def test_cli_all_ok_exits_0_and_prints_a_summary(tmp_path, model_path, small_folder):
    code, stdout, stderr = run_cli(
        "export", model_path, small_folder, tmp_path / "out", "--batch-size", "4"
    )
    assert code == 0, stderr
    assert "6 of 6 files explained (0 failed" in stdout
    assert "img/s" in stderr  # the tqdm bar reports images per second
    assert len(read_manifest(tmp_path / "out")) == 6


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["export", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text and "xai export model.keras" in text and "--overwrite" in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--formats", "overlay,heatmpa"], "Did you mean 'heatmap'"),
        (["--preprocess", "tourch"], "Did you mean 'torch'"),
        (["--preprocess", "no_such_module_xyz:f"], "importing 'no_such_module_xyz' failed"),
        (["--method", "gradcm"], "Did you mean 'gradcam'"),
        (["--param", "num_sample=3", "--method", "smoothgrad"], "Did you mean 'num_samples'"),
        (["--image-size", "abc"], "'HxW'"),
        (["--batch-size", "0"], "`batch_size` must be a positive int"),
        (["--colormap", "jett"], "Did you mean 'jet'"),
        (["--png-compression", "12"], "`png_compression` must be None"),
    ],
)
def test_usage_errors_exit_2_before_loading_the_model(tmp_path, small_folder, extra, message):
    code, _, err = run_cli(
        "export", tmp_path / "missing.keras", small_folder, tmp_path / "o", *extra
    )
    assert code == 2
    assert message in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "setup, extra, message",
    [
        (
            "missing_model",
            [],
            "MODEL must be an existing .keras or .h5 file or a TensorFlow SavedModel",
        ),
        ("missing_input", [], "`input_dir` must be an existing folder"),
        ("model", ["--image-size", "64x64"], "the model's input size 32x32"),
        ("model", ["--targets", "9"], "class indices in [0, 3]"),
        ("model", ["--targets", "cat"], "Class names need --labels"),
        ("labels3", [], "4 names, one per class"),
        ("model", ["--layer", "last_cnv"], "Did you mean 'last_conv'"),
    ],
)
def test_usage_errors_exit_2(tmp_path, model_path, small_folder, setup, extra, message):
    model = tmp_path / "nope.keras" if setup == "missing_model" else model_path
    src = tmp_path / "no_such_dir" if setup == "missing_input" else small_folder
    if setup == "labels3":
        (tmp_path / "classes.txt").write_text("a\nb\nc\n")
        extra = ["--labels", str(tmp_path / "classes.txt")]
    code, _, err = run_cli("export", model, src, tmp_path / "o", *extra)
    assert code == 2
    assert message in err


def test_lambda_model_is_refused_unless_unsafe(tmp_path, small_folder):
    inputs = keras.Input(MODEL_SHAPE)
    x = keras.layers.Lambda(lambda t: t * 1.0)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, out).save(path)
    code, _, err = run_cli("export", path, small_folder, tmp_path / "o")
    assert code == 2 and "--unsafe" in err and "Lambda" in err
    code, _, err = run_cli("export", path, small_folder, tmp_path / "o", "--unsafe", "-q")
    assert code == 0, err


def test_h5_model_file(tmp_path, small_folder):
    path = tmp_path / "cnn.h5"
    testing.functional_cnn(MODEL_SHAPE).save(path)
    code, _, err = run_cli("export", path, small_folder, tmp_path / "o", "-q", "--formats", "raw")
    assert code == 0, err


def test_saved_model_gradient_methods_work_and_cams_fail_with_the_reason(tmp_path, small_folder):
    folder = tmp_path / "saved"
    testing.functional_cnn(MODEL_SHAPE).export(folder, verbose=False)
    code, _, err = run_cli(
        "export", folder, small_folder, tmp_path / "o", "--method", "saliency", "-q"
    )
    assert code == 0, err
    rows = read_manifest(tmp_path / "o")
    assert all(r["status"] == "ok" and r["layer"] is None for r in rows)
    assert np.load(tmp_path / "o" / rows[0]["outputs"]["raw"]).shape == MODEL_SHAPE
    code, _, err = run_cli("export", folder, small_folder, tmp_path / "o2", "--method", "gradcam")
    assert code == 2
    assert "SavedModel" in err and "no Keras layers inside to tap" in err and "saliency" in err


# ----------------------------------------------------------------------------------- resuming


def test_rerun_skips_done_images(tmp_path, explainer, small_folder):
    out = tmp_path / "out"
    first = xai.export(explainer, small_folder, out, batch_size=4, progress=False)
    assert isinstance(first, ExportSummary) and first.exit_code == 0
    assert (first.ok, first.processed, first.already_done) == (6, 6, 0)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    before = output_files(out)
    second = xai.export(explainer, small_folder, out, batch_size=4, progress=False)
    assert (second.ok, second.processed, second.already_done) == (6, 0, 6)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps  # nothing rewritten
    assert output_files(out) == before


def test_interrupted_run_resumes_to_identical_bytes(tmp_path, explainer, monkeypatch):
    """An exception mid-run (like Ctrl-C) keeps what was written; the resumed run matches."""
    core = importlib.import_module("xai.export.core")  # BatchExplainer.explain runs each batch

    src = make_folder(tmp_path / "in", 13)
    ref = tmp_path / "ref"
    xai.export(explainer, src, ref, batch_size=4, progress=False)

    real = core.BatchExplainer.explain
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(core.BatchExplainer, "explain", flaky)
    with pytest.raises(KeyboardInterrupt):
        xai.export(explainer, src, out, batch_size=4, progress=False)
    assert len([r for r in read_manifest(out) if r["status"] == "ok"]) == 8  # two batches committed
    monkeypatch.setattr(core.BatchExplainer, "explain", real)
    # a partial last line, as a kill during the append leaves, and a stale temporary file
    with open(out / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"path": "class0/img0')
    (out / "overlay" / "class0" / ".img000.png.png.0123abcd.tmp").write_bytes(b"partial")
    resumed = xai.export(explainer, src, out, batch_size=4, progress=False)
    assert (resumed.ok, resumed.already_done, resumed.processed) == (13, 8, 5)
    assert output_files(out) == output_files(ref)


def test_failed_images_are_retried(tmp_path, explainer):
    src = make_folder(tmp_path / "in", 5, nested=False)
    (src / "late.png").write_bytes(b"")
    out = tmp_path / "out"
    assert xai.export(explainer, src, out, batch_size=2, progress=False).failed == 1
    write_rgb(src / "late.png", rgb(20, 20))
    again = xai.export(explainer, src, out, batch_size=2, progress=False)
    assert (again.failed, again.ok, again.already_done) == (0, 6, 5)
    assert by_path(out)["late.png"]["status"] == "ok"
    assert len(read_manifest(out)) == 6  # compacted: one line per input


@pytest.mark.slow
def test_sigkill_mid_run_leaves_no_partial_files_and_resumes_byte_identical(tmp_path, model_path):
    src = make_folder(tmp_path / "in", 120, size=(16, 20))
    slow = tmp_path / "slow_pre.py"
    slow.write_text("import time\n\ndef slow(x):\n    time.sleep(0.03)\n    return x / 255.0\n")
    out, ref = tmp_path / "out", tmp_path / "ref"
    opts = ["--batch-size", "4", "--preprocess", f"{slow}:slow", "-q"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "xai", "export", str(model_path), str(src), str(out), *opts],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists():
            done = manifest.read_bytes().count(b'"status": "ok"')
            if done >= 30:
                break
        time.sleep(0.005)
    assert proc.poll() is None, (
        f"the run ended before it could be killed: {proc.stderr.read()[-2000:]!r}"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_ok = manifest.read_bytes().count(b'"status": "ok"')
    assert 30 <= killed_ok < 120
    for path in out.rglob("*"):  # every final file is whole: only hidden temporaries may be partial
        if path.is_file() and path.suffix == ".png" and not path.name.startswith("."):
            assert (
                cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
                is not None
            ), path
        elif path.is_file() and path.suffix == ".npy" and not path.name.startswith("."):
            assert np.load(path).shape == (32, 32)

    code, _, err = run_cli("export", model_path, src, out, *opts)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["already_done"] >= killed_ok and summary["ok"] == 120
    assert not [p for p in out.rglob("*.tmp")]
    code, _, err = run_cli("export", model_path, src, ref, *opts)
    assert code == 0, err
    assert output_files(out) == output_files(ref)


# ----------------------------------------------------------------------------------- output folder


def test_refuses_an_export_with_other_settings_unless_overwrite(tmp_path, explainer, small_folder):
    out = tmp_path / "out"
    xai.export(explainer, small_folder, out, batch_size=4, progress=False)
    for changed in (
        {"method": "saliency"},
        {"alpha": 0.7},
        {"formats": ["overlay"]},
        {"preprocess": "unit"},
    ):
        with pytest.raises(XaiValueError, match="other settings.*--overwrite"):
            xai.export(explainer, small_folder, out, progress=False, **changed)
    fresh = xai.export(
        explainer,
        small_folder,
        out,
        method="saliency",
        formats=["raw"],
        overwrite=True,
        progress=False,
    )
    assert (fresh.ok, fresh.already_done) == (6, 0)
    assert not (out / "overlay").exists() or not list(
        (out / "overlay").rglob("*.png")
    )  # old outputs gone
    rows = read_manifest(out)
    assert all(r["method"] == "saliency" and set(r["outputs"]) == {"raw"} for r in rows)


def test_refuses_a_foreign_non_empty_folder(tmp_path, explainer, small_folder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(XaiValueError, match="not empty and holds no xai export"):
        xai.export(explainer, small_folder, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]  # nothing was written
    xai.export(explainer, small_folder, out, overwrite=True, progress=False)
    assert (out / "holiday.jpg").read_bytes() == b"precious"  # other files are left alone


def test_cli_refusal_exits_2(tmp_path, model_path, small_folder):
    out = tmp_path / "out"
    assert run_cli("export", model_path, small_folder, out, "-q", "--formats", "raw")[0] == 0
    code, _, err = run_cli("export", model_path, small_folder, out, "-q", "--formats", "overlay")
    assert code == 2 and "--overwrite" in err and "formats" in err


def test_never_writes_outside_the_output_folder(tmp_path, explainer, small_folder):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "overlay")  # a trap: overlay/ points elsewhere
    summary = xai.export(explainer, small_folder, out, overwrite=True, progress=False)
    assert list(outside.iterdir()) == []
    assert summary.failed == 6 and summary.exit_code == 1
    assert all("outside the output folder" in r["error"] for r in read_manifest(out))


def test_output_folder_inside_the_input_folder_is_not_walked(tmp_path, explainer):
    src = make_folder(tmp_path / "in", 4)
    out = src / "explanations"
    assert xai.export(explainer, src, out, progress=False).ok == 4
    again = xai.export(explainer, src, out, progress=False)
    assert (again.total, again.already_done) == (4, 4)
    with pytest.raises(XaiValueError, match="other than input_dir"):
        xai.export(explainer, src, src, progress=False)


def test_a_second_concurrent_export_is_refused(tmp_path, explainer, small_folder):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".xai-export.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(XaiValueError, match="Another xai export is writing"):
            xai.export(explainer, small_folder, out, progress=False)


# ----------------------------------------------------------------------------------- parameters


def test_outputs_agree_with_each_other(tmp_path, explainer, small_folder):
    """The 16-bit heatmap is the raw map's heatmap at the original size; alpha=1 overlay is its
    colours."""
    from xai import viz

    out = tmp_path / "out"
    xai.export(explainer, small_folder, out, alpha=1.0, colormap="viridis", progress=False)
    for row in read_manifest(out):
        raw = np.load(out / row["outputs"]["raw"])
        size = (row["height"], row["width"])
        expected = postprocess.heatmap(raw[None], size, postprocess.Display())[0]
        heat16 = cv2.imread(str(out / row["outputs"]["heatmap"]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(heat16, np.floor(expected * 65535 + 0.5).astype(np.uint16))
        overlay = io.read_image(out / row["outputs"]["overlay"])
        np.testing.assert_array_equal(overlay, viz.colorize(expected, "viridis"))


@pytest.mark.parametrize(
    "change",
    [
        {"alpha": 0.8},
        {"colormap": "turbo"},
        {"preprocess": "symmetric"},
        {"layer": "conv1"},
        {"method": "gradcam_plus_plus"},
    ],
)
def test_each_parameter_changes_the_overlays(tmp_path, model_path, explainer, small_folder, change):
    base = tmp_path / "base"
    xai.export(explainer, small_folder, base, formats="overlay", progress=False)
    other = tmp_path / "other"
    model = (
        xai.Explainer(explainer.model, layer=change.pop("layer"))
        if "layer" in change
        else explainer
    )
    xai.export(model, small_folder, other, formats="overlay", progress=False, **change)
    a, b = output_files(base), output_files(other)
    pngs = [k for k in a if k.endswith(".png")]
    assert pngs and any(a[k] != b[k] for k in pngs)


def test_png_compression_changes_the_file_sizes_not_the_pixels(tmp_path, model_path, small_folder):
    default, stored = tmp_path / "default", tmp_path / "stored"
    xai.export(model_path, small_folder, default, formats="overlay,heatmap", progress=False)
    code, _, err = run_cli(
        "export",
        model_path,
        small_folder,
        stored,
        "-q",
        "--formats",
        "overlay,heatmap",
        "--png-compression",
        "0",
    )
    assert code == 0, err
    a, b = output_files(default), output_files(stored)
    pngs = sorted(k for k in a if k.endswith(".png"))
    assert len(pngs) == 12 and sorted(k for k in b if k.endswith(".png")) == pngs
    for k in pngs:
        pixels = [cv2.imdecode(np.frombuffer(f[k], np.uint8), cv2.IMREAD_UNCHANGED) for f in (a, b)]
        np.testing.assert_array_equal(*pixels)
        # Level 0 stores every pixel byte (RGB overlays, 16-bit grey heatmaps).
        assert len(b[k]) >= pixels[0].nbytes, (k, len(b[k]), pixels[0].shape)
    assert sum(map(len, b.values())) > sum(map(len, a.values()))
    config = json.loads((stored / CONFIG_NAME).read_text())
    assert config["settings"]["png_compression"] == 0
    with pytest.raises(XaiValueError, match="png_compression: 0 there, null now"):
        xai.export(model_path, small_folder, stored, formats="overlay,heatmap", progress=False)


def test_export_from_before_a_new_setting_still_resumes(tmp_path, explainer, small_folder):
    """A folder whose config lacks a setting added later (default None) resumes, not refuses."""
    out = tmp_path / "out"
    xai.export(explainer, small_folder, out, formats="raw", progress=False)
    config_path = out / CONFIG_NAME
    config = json.loads(config_path.read_text())
    del config["settings"]["png_compression"]
    config_path.write_text(json.dumps(config))
    again = xai.export(explainer, small_folder, out, formats="raw", progress=False)
    assert (again.already_done, again.processed) == (6, 0)


def test_formats_choose_the_outputs(tmp_path, explainer, small_folder):
    out = tmp_path / "out"
    xai.export(explainer, small_folder, out, formats="raw,heatmap", progress=False)
    assert not (out / "overlay").exists()
    assert (
        len(list((out / "heatmap").rglob("*.png"))) == len(list((out / "raw").rglob("*.npy"))) == 6
    )


def test_batch_size_does_not_change_results_beyond_rounding(tmp_path, explainer, small_folder):
    one, eight = tmp_path / "one", tmp_path / "eight"
    xai.export(explainer, small_folder, one, batch_size=1, formats="raw", progress=False)
    xai.export(explainer, small_folder, eight, batch_size=8, formats="raw", progress=False)
    for rel in (p.relative_to(one) for p in one.rglob("*.npy")):
        np.testing.assert_allclose(np.load(one / rel), np.load(eight / rel), rtol=1e-5, atol=1e-6)


def test_targets_int_csv_and_class_names(tmp_path, explainer, small_folder):
    labels = tmp_path / "classes.txt"
    labels.write_text("circle\nsquare\nstar\ntriangle\n")
    out = tmp_path / "int"
    xai.export(
        explainer, small_folder, out, targets=2, class_names=labels, formats="raw", progress=False
    )
    rows = read_manifest(out)
    assert all(r["target"] == 2 and r["target_label"] == "star" for r in rows)
    assert all(
        r["predicted_label"] == ["circle", "square", "star", "triangle"][r["predicted"]]
        for r in rows
    )

    # CSV paths relative to the CSV's folder ("in/...") or to the input folder; names or indices
    src = make_folder(tmp_path / "in", 6)
    csv_path = tmp_path / "labels.csv"
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    lines = ["file,label"] + [
        f"{'in/' if i < 3 else ''}{f},{['square', 3][i % 2]}" for i, f in enumerate(files[:-1])
    ]
    csv_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "csv"
    summary = xai.export(
        explainer, src, out, targets=csv_path, class_names=labels, formats="raw", progress=False
    )
    rows = by_path(out)
    for i, f in enumerate(files[:-1]):
        assert rows[f]["target"] == [1, 3][i % 2]
    assert rows[files[-1]]["status"] == "error" and "no row" in rows[files[-1]]["error"]
    assert summary.failed == 1

    (tmp_path / "bad.csv").write_text("name,value\na.png,1\n")
    with pytest.raises(XaiValueError, match="path column"):
        xai.export(
            explainer, small_folder, tmp_path / "bad", targets=tmp_path / "bad.csv", progress=False
        )


def test_models_of_any_size_need_image_size_and_grey_models_get_grey(tmp_path, small_folder):
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, out)
    with pytest.raises(XaiValueError, match="--image-size"):
        xai.export(model, small_folder, tmp_path / "a", progress=False)
    summary = xai.export(model, small_folder, tmp_path / "b", image_size="20x24", progress=False)
    assert summary.ok == 6
    row = read_manifest(tmp_path / "b")[0]
    assert np.load(tmp_path / "b" / row["outputs"]["raw"]).shape == (18, 22)  # valid conv on 20x24
    assert io.read_image(tmp_path / "b" / row["outputs"]["overlay"]).shape[:2] == (
        row["height"],
        row["width"],
    )


def test_one_device_mirrored_strategy(tmp_path, model_path, small_folder):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    summary = xai.export(
        model_path, small_folder, tmp_path / "o", strategy=strategy, formats="raw", progress=False
    )
    assert summary.ok == 6


@pytest.mark.slow
def test_two_device_mirrored_strategy_matches_one_device(tmp_path, model_path, small_folder):
    code = f"""
import tensorflow as tf, numpy as np, pathlib
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import xai
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
a = xai.export({str(model_path)!r}, {str(small_folder)!r}, {str(tmp_path / "multi")!r}, \
strategy=strategy,
               batch_size=5, formats="raw", progress=False)
b = xai.export({str(model_path)!r}, {str(small_folder)!r}, {str(tmp_path / "single")!r}, \
batch_size=5,
               formats="raw", progress=False)
assert a.ok == b.ok == 6, (a, b)
for p in pathlib.Path({str(tmp_path / "single")!r}).rglob("*.npy"):
    q = pathlib.Path({str(tmp_path / "multi")!r}) / p.relative_to({str(tmp_path / "single")!r})
    np.testing.assert_allclose(np.load(p), np.load(q), rtol=1e-5, atol=1e-6)
print("OK")
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


# ----------------------------------------------------------------------------------- preprocessing


def test_presets_map_known_values():
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    np.testing.assert_allclose(get_preprocess("none")(x), x)
    np.testing.assert_allclose(get_preprocess("unit")(x), x / 255)
    np.testing.assert_allclose(get_preprocess("symmetric")(x), [[[[-1.0, 0.0, 1.0]]]])
    np.testing.assert_allclose(
        get_preprocess("caffe")(x), [[[[255 - 103.939, 127.5 - 116.779, 0 - 123.68]]]], rtol=1e-6
    )
    expected = (np.array([0.0, 0.5, 1.0]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(get_preprocess("torch")(x)[0, 0, 0], expected, rtol=1e-6)
    assert set(PRESETS) == {"none", "unit", "symmetric", "caffe", "torch"}


def test_presets_match_keras_applications():
    from keras.applications import imagenet_utils

    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 5, 3)).astype(np.float32)
    for preset, mode in (("caffe", "caffe"), ("symmetric", "tf"), ("torch", "torch")):
        expected = imagenet_utils.preprocess_input(x.copy(), mode=mode, data_format="channels_last")
        np.testing.assert_allclose(
            get_preprocess(preset)(x), np.asarray(expected), rtol=1e-5, atol=1e-4
        )


def test_user_preprocess_functions(tmp_path):
    file = tmp_path / "my_pre.py"
    file.write_text("def halve(x):\n    return x / 2\n")
    p = get_preprocess(f"{file}:halve")
    np.testing.assert_allclose(p(np.full((1, 2, 2, 3), 8.0, np.float32)), 4.0)
    assert get_preprocess("keras.applications.resnet50:preprocess_input").spec.endswith(
        ":preprocess_input"
    )
    assert get_preprocess(lambda x: x).spec.endswith("<lambda>")
    with pytest.raises(XaiValueError, match="no attribute 'halv'.*Did you mean 'halve'"):
        get_preprocess(f"{file}:halv")
    with pytest.raises(XaiValueError, match="existing file"):
        get_preprocess(f"{tmp_path / 'nope.py'}:f")
    with pytest.raises(XaiValueError, match="Did you mean 'symmetric'"):
        get_preprocess("symetric")


def test_preprocess_that_changes_the_shape_is_refused(tmp_path, explainer, small_folder):
    with pytest.raises(XaiValueError, match="keeps the batch shape"):
        xai.export(
            explainer, small_folder, tmp_path / "o", preprocess=lambda x: x[:, ::2], progress=False
        )


def test_formats_constant_is_public():
    assert FORMATS == ("overlay", "heatmap", "raw")


def test_tuple_parameters_resume(tmp_path, explainer, small_folder):
    """Settings are compared as they read back from JSON: a tuple parameter still resumes."""
    kwargs = dict(method="occlusion", params={"window": (8, 8)}, formats="raw", progress=False)
    assert xai.export(explainer, small_folder, tmp_path / "o", **kwargs).ok == 6
    again = xai.export(explainer, small_folder, tmp_path / "o", **kwargs)
    assert (again.already_done, again.processed) == (6, 0)
    assert read_manifest(tmp_path / "o")[0]["params"]["window"] == [8, 8]


# ------------------------------------------------------------------ commits (group commit)


def _committer(tmp_path, monkeypatch, flush_s: float, max_writes: int = 2):
    export_mod = importlib.import_module("xai.export.writer")  # the committer and its flush
    syncs: list[float] = []

    def slow_sync(path):
        def flush() -> None:
            time.sleep(flush_s)
            syncs.append(time.perf_counter())

        return flush

    monkeypatch.setattr(export_mod, "_filesystem_sync", slow_sync)
    manifest = export_mod._Manifest(tmp_path / "manifest.jsonl")
    committer = export_mod._Committer(manifest, tmp_path, max_writes=max_writes)
    committer.start()
    return committer, manifest, syncs


def _done(rows):
    from concurrent.futures import Future

    f = Future()
    f.set_result(rows)
    return f


def _rows(i: int) -> list[dict]:
    return [{"path": f"b{i}/img{j}.png", "status": "ok"} for j in range(3)]


def test_slow_disk_flush_groups_batches_instead_of_stalling(tmp_path, monkeypatch):
    """A 0.2 s flush must not cost 0.2 s per batch: batches queued meanwhile share the next one."""
    committer, manifest, syncs = _committer(tmp_path, monkeypatch, flush_s=0.2)
    t0 = time.perf_counter()
    for i in range(20):
        committer.submit([], _done(_rows(i)))
        time.sleep(0.01)  # a batch of compute
    submitting = time.perf_counter() - t0
    committer.close()
    manifest.close()
    paths = [
        json.loads(line)["path"] for line in (tmp_path / "manifest.jsonl").read_text().splitlines()
    ]
    assert paths == [r["path"] for i in range(20) for r in _rows(i)]  # all rows, in batch order
    assert 1 <= len(syncs) <= 5  # grouped: one flush per ~0.2 s, not one per batch
    assert submitting < 1.0  # 20 flushes in a row would have taken 4 s


def test_committer_bounds_batches_being_written(tmp_path, monkeypatch):
    """submit() waits while max_writes batches are still being written (bounded memory)."""
    import threading
    from concurrent.futures import Future

    committer, manifest, _ = _committer(tmp_path, monkeypatch, flush_s=0.0, max_writes=2)
    pending = [Future(), Future()]
    for f in pending:
        committer.submit([], f)
    third = threading.Thread(target=committer.submit, args=([], _done(_rows(2))))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # blocked: two batches are still being written
    pending[0].set_result(_rows(0))
    third.join(2.0)
    assert not third.is_alive()
    pending[1].set_result(_rows(1))
    committer.close()
    manifest.close()
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x)["path"] for x in lines] == [r["path"] for i in range(3) for r in _rows(i)]


def test_pipeline_does_not_autotune(tmp_path):
    """Destroying an autotuned iterator waits for the autotuner's next wake-up (seconds)."""
    export_mod = importlib.import_module("xai.export.loader")
    make_folder(tmp_path / "in", 3, nested=False)
    paths = sorted(str(p) for p in (tmp_path / "in").rglob("*.png"))
    loader = export_mod._Loader((16, 16), 3, False, get_preprocess("unit"), True, None)
    ds = loader.dataset(paths, [0, 1, 2], batch_size=2, prefetch=2)
    assert ds.options().autotune.enabled is False
    batches = [[t.numpy() for t in b] for b in ds]
    assert [len(b[0]) for b in batches] == [2, 1] and all(b[4].all() for b in batches)
    assert batches[0][1].shape == (2, 16, 16, 3) and sorted(loader.originals) == [0, 1, 2]


# ----------------------------------------------------------------- careful-user faults (issue 15)
def test_a_folder_holding_an_export_is_not_re_ingested(tmp_path, explainer):
    src = make_folder(tmp_path / "in", 4)
    xai.export(explainer, src, src / "old_export", batch_size=4, progress=False)  # inside INPUT
    old = xai.export(explainer, src, tmp_path / "out", batch_size=4, progress=False)
    rows = by_path(tmp_path / "out")
    assert rows["old_export"]["status"] == "skipped"
    assert "Holds an xai export" in rows["old_export"]["error"]
    assert not any(p.startswith("old_export/") for p in rows)
    assert old.ok == 4


_KILL_DURING_SETTINGS = """
import os, signal, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import xai
from xai import io
real = os.replace
def replace(src, dst):
    if str(dst).endswith(".xai-export.json"):
        os.kill(os.getpid(), signal.SIGKILL)  # the temporary is written and synced, not renamed
    return real(src, dst)
os.replace = replace
xai.export(sys.argv[1], sys.argv[2], sys.argv[3], batch_size=4, progress=False)
"""


def test_sigkill_while_the_settings_are_written_then_the_same_command_resumes(tmp_path, model_path):
    src = make_folder(tmp_path / "in", 5)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_DURING_SETTINGS, str(model_path), str(src), str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in out.iterdir())
    assert any(n.startswith("..xai-export.json.") and n.endswith(".tmp") for n in left), left
    code, stdout, stderr = run_cli("export", model_path, src, out, "--batch-size", "4", "-q")
    assert code == 0, stderr
    ref = tmp_path / "ref"
    assert run_cli("export", model_path, src, ref, "--batch-size", "4", "-q")[0] == 0
    assert output_files(out) == output_files(ref)


def test_a_file_and_a_folder_never_share_an_output(tmp_path, explainer):
    """``x.png`` -> ``overlay/x.png.png``, which is also where a folder ``x.png.png/`` goes."""
    src = tmp_path / "in"
    write_rgb(src / "x.png", rgb(20, 20, seed=1))
    write_rgb(src / "x.png.png" / "inner.png", rgb(20, 20, seed=2))
    write_rgb(src / "X.PNG.npy" / "raw.png", rgb(20, 20, seed=3))  # case-insensitive clash
    summary = xai.export(explainer, src, tmp_path / "out", batch_size=4, progress=False)
    assert (summary.ok, summary.failed) == (3, 0)
    rows = by_path(tmp_path / "out")
    outs = rows["x.png"]["outputs"]
    assert outs["overlay"].startswith("overlay/x.png~") and outs["overlay"].endswith(".png")
    assert rows["x.png.png/inner.png"]["outputs"]["overlay"] == "overlay/x.png.png/inner.png.png"
    every = [o for r in rows.values() for o in (r["outputs"] or {}).values()]
    assert len(set(every)) == len(every) and all((tmp_path / "out" / o).is_file() for o in every)


def test_exif_orientation_is_applied_and_recorded(tmp_path, model_path):
    """A phone photo stored sideways with EXIF orientation 6 is explained and drawn upright."""
    from PIL import Image, ImageOps

    src = tmp_path / "in"
    src.mkdir()
    stored = rgb(24, 40, seed=5)  # stored 24 x 40 (landscape); shown 40 x 24 (portrait)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(src / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(src / "phone.jpg")).convert("RGB"))
    assert upright.shape[:2] == (40, 24)
    np.testing.assert_array_equal(io.read_image(src / "phone.jpg"), upright)  # Pillow agrees
    for extra, shape in (((), (40, 24)), (("--keep-orientation",), (24, 40))):
        out = tmp_path / f"out{len(extra)}"
        code, _, err = run_cli("export", model_path, src, out, "--alpha", "1", "-q", *extra)
        assert code == 0, err
        row = by_path(out)["phone.jpg"]
        assert row["orientation"] == 6 and (row["height"], row["width"]) == shape
        assert io.read_image(out / row["outputs"]["overlay"]).shape[:2] == shape


# ----------------------------------------------------------------- the output folder fails
def _enospc(path):
    return OSError(28, "No space left on device", str(path))


def _assert_complete_manifest(out: Path) -> list[dict]:
    text = (
        (out / "manifest.jsonl").read_text(encoding="utf-8")
        if (out / "manifest.jsonl").exists()
        else ""
    )
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line parses


def test_a_disk_full_during_the_image_writes_exits_3_and_resumes(tmp_path, model_path, monkeypatch):
    writer_mod = importlib.import_module("xai.export.writer")
    src = make_folder(tmp_path / "in", 11)
    out = tmp_path / "out"
    real, count = writer_mod._write_file, [0]

    def full_after_some(target, data):
        count[0] += 1
        if count[0] > 10:  # the disk fills up in the middle of the run
            raise _enospc(target)
        return real(target, data)

    monkeypatch.setattr(writer_mod, "_write_file", full_after_some)
    code, stdout, stderr = run_cli("export", model_path, src, out, "--batch-size", "4", "-q")
    assert code == 3, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0] and str(out) in lines[0]
    assert "Traceback" not in stderr
    rows = _assert_complete_manifest(out)
    assert all(r["status"] == "ok" for r in rows)  # nothing recorded as a per-image failure
    monkeypatch.setattr(writer_mod, "_write_file", real)
    assert run_cli("export", model_path, src, out, "--batch-size", "4", "-q")[0] == 0
    ref = tmp_path / "ref"
    assert run_cli("export", model_path, src, ref, "--batch-size", "4", "-q")[0] == 0
    assert output_files(out) == output_files(ref)


def test_a_disk_full_while_the_manifest_is_appended_leaves_only_whole_lines(
    tmp_path, model_path, monkeypatch
):
    journal = importlib.import_module("xai.export.journal")
    src = make_folder(tmp_path / "in", 9)
    out = tmp_path / "out"
    real, calls = journal._os_write, [0]

    def half_then_full(fd, data):
        calls[0] += 1
        if calls[0] == 2:  # the second append: half of it reaches the disk, then it is full
            real(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(journal, "_os_write", half_then_full)
    code, _, stderr = run_cli("export", model_path, src, out, "--batch-size", "4", "-q")
    assert code == 3 and "No space left on device" in stderr and "manifest.jsonl" in stderr
    _assert_complete_manifest(out)
    monkeypatch.setattr(journal, "_os_write", real)
    assert run_cli("export", model_path, src, out, "--batch-size", "4", "-q")[0] == 0
    ref = tmp_path / "ref"
    assert run_cli("export", model_path, src, ref, "--batch-size", "4", "-q")[0] == 0
    assert output_files(out) == output_files(ref)


@pytest.mark.parametrize("fault", ["full_before_start", "read_only", "under_a_file"])
def test_output_folder_faults_exit_3_with_one_line(tmp_path, model_path, monkeypatch, fault):
    src = make_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    if fault == "under_a_file":
        (tmp_path / "file.txt").write_text("x", encoding="utf-8")
        out = tmp_path / "file.txt" / "out"
    elif fault == "full_before_start":
        real = io.atomic_write_text

        def full(path, text):
            raise _enospc(path)

        monkeypatch.setattr(io, "atomic_write_text", full)
    else:
        real_mkdir = Path.mkdir

        def read_only(self, *args, **kwargs):
            if self == out:
                raise OSError(30, "Read-only file system", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, stderr = run_cli("export", model_path, src, out, "-q")
    assert code == 3, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xai export: error: Cannot write")
    assert "Traceback" not in stderr
    if fault == "full_before_start":
        monkeypatch.setattr(io, "atomic_write_text", real)
        assert run_cli("export", model_path, src, out, "-q")[0] == 0  # the same command resumes
