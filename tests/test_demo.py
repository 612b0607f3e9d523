"""The demo: shipped models and sample, `xai demo` end to end, every example and the notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import xai
from xai import cli, datasets, demo
from xai.audit import pointing_game

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.fixture(scope="module")
def clean_model():
    return keras.saving.load_model(demo.shipped_model_path("shapes_cnn.keras"))


@pytest.fixture(scope="module")
def shortcut_model():
    return keras.saving.load_model(demo.shipped_model_path("shortcut_cnn.keras"))


def test_sample_on_disk_equals_the_regenerated_sample(monkeypatch):
    on_disk = demo.load_sample()
    assert on_disk.source.endswith("shapes_sample")
    monkeypatch.setattr(demo, "SAMPLE_DIR", Path("/nonexistent"))
    regenerated = demo.load_sample()
    np.testing.assert_array_equal(on_disk.images, regenerated.images)
    np.testing.assert_array_equal(on_disk.labels, regenerated.labels)
    np.testing.assert_array_equal(on_disk.masks, regenerated.masks)


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--grid-rows", "4"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_images"] == 32 and manifest["accuracy"] >= 0.9
    assert manifest["layer"] == ["last_relu"]
    assert len(list((out / "overlays").rglob("*_gradcam.png"))) == 32
    assert len(list((out / "overlays").rglob("*_smoothgrad.png"))) == 32
    grid = xai.io.read_image(out / "grid.png")
    assert grid.shape[0] > grid.shape[1]  # 4 rows of 3 columns
    for name in manifest["files"]:
        assert (out / name).exists()
    text = capsys.readouterr().out
    assert "pointing game" in text and "grid.png" in text
    # One definition with the audit: within one feature-map cell, exact pixel named beside it.
    cell = manifest["pointing_game_tolerance_px"]
    assert (
        cell == 8 and f"within {cell} px = one feature-map cell" in text and "exact pixel" in text
    )
    audit = json.loads((out / "audit" / "report.json").read_text())
    assert audit["localisation"] is None or audit["localisation"]["tolerance_px"] == cell
    # the shipped ViT beside the CNN, on the same images
    vit = manifest["vit"]
    assert vit["accuracy"] >= 0.9 and vit["pointing_game_tolerance_px"] == 8
    assert vit["layers"]["gradcam"] == ["block2_attention:input"]
    assert vit["pointing_game"]["generic_attention"] >= 0.85
    assert len(list((out / "vit" / "overlays").rglob("*_generic_attention.png"))) == 32
    assert "generic attention" in text and "vit" in text


def test_the_default_output_folders_are_git_ignored():
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in ("xai-demo/manifest.json", "xai-output/x.png", "xai-audit/report.html"):
        check = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", folder])
        assert check.returncode == 0, folder


def test_no_module_cites_notes_outside_the_repository():
    root = Path(__file__).resolve().parents[1]
    cited = [p for p in (root / "xai").rglob("*.py") if "keras3-facts" in p.read_text("utf-8")]
    assert cited == []


def test_demo_bad_images_folder(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "o"), "--images", str(tmp_path)]) == 2
    assert "has no labels.csv" in capsys.readouterr().err


@pytest.mark.slow
def test_clean_model_accuracy_and_pointing_game(clean_model):
    """Grad-CAM's maximum lies on the object for >= 90 % of clean test images (exact pixels)."""
    test = datasets.make_shapes(500, seed=0, split="test")
    e = xai.explain(clean_model, test.images, "gradcam")
    assert (e.predictions == test.labels).mean() >= 0.95
    hits = pointing_game(e.heatmap, test.masks)
    assert hits.mean() >= 0.90, hits.mean()


@pytest.mark.slow
def test_shortcut_model_is_right_for_the_wrong_reason(shortcut_model):
    """It reads the marker: right with it, wrong when it lies; Grad-CAM points at it.

    The CAM of the 8x8 layer cannot localise finer than one cell (8 px), and its peak sits about
    one cell inside the corner marker, so the pointing game uses a one-cell tolerance.
    """
    consistent = datasets.make_shapes(200, seed=0, variant="shortcut", split="test")
    swapped = datasets.make_shapes(200, seed=0, variant="shortcut", split="swapped")
    explainer = xai.Explainer(shortcut_model)
    e = explainer.explain(consistent.images, "gradcam")
    assert (e.predictions == consistent.labels).mean() >= 0.9
    assert (
        explainer.explain(swapped.images, "gradcam").predictions == swapped.labels
    ).mean() <= 0.3
    cell = 64 // e.attributions.shape[1]
    on_marker = pointing_game(e.heatmap, consistent.marker_masks, tolerance=cell)
    on_object = pointing_game(e.heatmap, consistent.masks, tolerance=cell)
    assert on_marker.mean() >= 0.8, on_marker.mean()
    assert on_object.mean() <= 0.3


def _run(args, **kw):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=600, **kw
    )


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    result = _run([str(script)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("text/html" in o.get("data", {}) for o in outputs)  # the inline overlays
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figures
    streams = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "TqdmWarning" not in streams and "IProgress" not in streams  # bars degrade quietly
