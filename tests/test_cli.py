"""The command line: sub-commands in process, plus the real entry points once."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

import xai
from xai import cli, io, testing


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    testing.functional_cnn().save(path)
    return path


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for name in ("a cat.png", "ünïcode.jpg"):
        p = folder / name
        img = rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)  # not the model's size: resized
        io.write_png(p.with_suffix(".png"), img)
        if p.suffix == ".jpg":
            import cv2

            cv2.imwrite(str(p), img[..., ::-1])
        paths.append(p if p.exists() else p.with_suffix(".png"))
    return paths


def test_explain_writes_overlays(tmp_path, saved_model, image_files, capsys):
    out = tmp_path / "out"
    code = cli.main(
        ["explain", str(saved_model), *map(str, image_files), "--out", str(out), "--alpha", "0.6"]
    )
    assert code == 0
    for p in image_files:
        png = out / f"{p.stem}_gradcam.png"
        assert io.read_image(png).shape == (16, 16, 3)
        assert np.load(out / f"{p.stem}_gradcam.npy").shape == (16, 16)
    assert "gradcam.png" in capsys.readouterr().out


def test_explain_smoothgrad_params(tmp_path, saved_model, image_files):
    args = [
        "explain",
        str(saved_model),
        str(image_files[0]),
        "--method",
        "smoothgrad",
        "--seed",
        "3",
    ]
    assert cli.main([*args, "--num-samples", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*args, "--num-samples", "3", "--out", str(tmp_path / "b")]) == 0
    a = np.load(tmp_path / "a" / f"{image_files[0].stem}_smoothgrad.npy")
    b = np.load(tmp_path / "b" / f"{image_files[0].stem}_smoothgrad.npy")
    assert np.abs(a - b).max() > 0


def test_methods_lists_registry(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in xai.methods.available():
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["explain", "missing.keras", "x.png"], "MODEL must be an existing .keras or .h5 file"),
        (["explain", "{model}", "x.png", "--method", "gradcm"], "Did you mean 'gradcam'"),
        (
            ["explain", "{model}", "x.png", "--targets", "cat"],
            "--targets must be 'predicted' or a class index",
        ),
    ],
)
def test_usage_errors_exit_2(argv, message, saved_model, capsys):
    argv = [a.replace("{model}", str(saved_model)) for a in argv]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_unreadable_image_exits_1(tmp_path, saved_model, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert cli.main(["explain", str(saved_model), str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "broken.png: FAILED" in capsys.readouterr().err


def test_lambda_model_needs_unsafe(tmp_path):
    inputs = keras.Input((4,))
    out = keras.layers.Dense(2)(keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, out).save(path)
    with pytest.raises(cli.UsageError, match="--unsafe"):
        cli.load_model(path)
    assert cli.load_model(path, unsafe=True) is not None


def test_entry_points():
    help_text = subprocess.run(
        [sys.executable, "-m", "xai", "explain", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "example:" in help_text and "--method" in help_text
    version = subprocess.run(
        [sys.executable, "-m", "xai", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"xai {xai.__version__}"


def test_explain_outputs_never_collide_and_a_manifest_records_the_run(tmp_path, saved_model):
    rng = np.random.default_rng(1)
    paths = [tmp_path / "a" / "cat.png", tmp_path / "a" / "cat.jpg", tmp_path / "b" / "cat.png"]
    for p in paths:
        p.parent.mkdir(exist_ok=True)
        import cv2

        cv2.imwrite(str(p), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    labels = tmp_path / "labels.txt"
    labels.write_text("zero\none\ntwo\nthree\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = [
        "explain",
        str(saved_model),
        *map(str, paths),
        "--out",
        str(out),
        "--labels",
        str(labels),
        "--targets",
        "two",
        "--method",
        "smoothgrad",
        "--param",
        "num_samples=2",
    ]
    assert cli.main(argv) == 0
    manifest = __import__("json").loads((out / "manifest.json").read_text(encoding="utf-8"))
    overlays = [r["overlay"] for r in manifest["files"]]
    assert len(set(overlays)) == 3 and all((out / o).exists() for o in overlays)
    assert overlays[1] == "cat_jpg_smoothgrad.png"
    assert overlays[0].startswith("cat_png~") and overlays[2].startswith("cat_png~")
    assert {r["target"] for r in manifest["files"]} == {2}
    assert manifest["params"]["num_samples"] == 2
    assert isinstance(manifest["seed"], int) and manifest["seed"] == manifest["params"]["seed"]
    assert manifest["class_names"] == ["zero", "one", "two", "three"]


def test_cli_is_not_imported_by_the_library():
    code = "import sys, xai; xai.explain; print('xai.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("command", ["demo", "methods", "explain", "export", "audit"])
def test_every_command_documents_its_exit_codes(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "exit status" in capsys.readouterr().out.lower()


def test_help_is_fast_because_it_imports_no_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "from xai import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_a_normal_run_prints_no_tensorflow_log_line(tmp_path, saved_model, image_files):
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    argv = [sys.executable, "-m", "xai", "explain", str(saved_model), str(image_files[0])]
    quiet = subprocess.run(
        [*argv, "--out", str(tmp_path / "q")], capture_output=True, text=True, env=env
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no oneDNN / CUDA / absl start-up lines
    loud = subprocess.run(
        [sys.executable, "-m", "xai", "--verbose", *argv[3:], "--out", str(tmp_path / "v")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert loud.returncode == 0 and "oneDNN" in loud.stderr  # --verbose shows them
