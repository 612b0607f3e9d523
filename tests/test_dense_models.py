"""Two-object scenes and the shipped dense demo models: region and box maps land on their object."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import xai
from xai import boxes
from xai.audit import region_localisation
from xai.audit.localisation import pointing_game
from xai.scenes import SEGMENTATION_CLASSES, make_scenes

ASSETS = Path(xai.__file__).parent / "assets"


def test_scenes_are_seeded_with_two_disjoint_objects_of_different_classes():
    a, b = make_scenes(12, seed=4), make_scenes(12, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(make_scenes(5, seed=4).images, a.images[:5])
    assert not np.array_equal(a.images, make_scenes(12, seed=5).images)
    assert not np.array_equal(a.images, make_scenes(12, seed=4, split="test").images)
    assert (a.object_classes[:, 0] != a.object_classes[:, 1]).all()
    assert not (a.object_masks[:, 0] & a.object_masks[:, 1]).any()
    assert a.object_masks.sum(axis=(2, 3)).min() > 50
    for i in range(len(a)):
        for k in (0, 1):
            assert (a.labels[i][a.object_masks[i, k]] == a.object_classes[i, k]).all()
            ys, xs = np.nonzero(a.object_masks[i, k])
            np.testing.assert_array_equal(
                a.boxes[i, k], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            )
    assert ((a.labels > 0) == a.object_masks.any(axis=1)).all()
    assert a.class_names == SEGMENTATION_CLASSES and len(SEGMENTATION_CLASSES) == 5


@pytest.mark.parametrize(
    "key, file", [("segmenter", "shapes_segmenter.keras"), ("detector", "shapes_detector.keras")]
)
def test_shipped_dense_models_are_recorded(key, file):
    record = json.loads((ASSETS / "models.json").read_text())["models"][key]
    path = ASSETS / file
    assert record["file"] == file and record["file_bytes"] == path.stat().st_size < 500_000
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["command"].startswith("python datasets/train_dense_models.py")
    if key == "segmenter":
        assert record["test"]["mean_iou"] > 0.8
    else:
        assert record["test"]["class_accuracy_best_anchor"] > 0.85


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(100, seed=0, split="test")


def _on_a_not_b(heat, a, b):
    return pointing_game(heat, a) & ~pointing_game(heat, b)


@pytest.mark.parametrize(
    "method, params",
    [("gradcam", {"layer": "features_relu"}), ("smoothgrad", {"seed": 0, "num_samples": 10})],
)
def test_segmenter_region_maps_peak_on_the_object_of_their_class(scenes, method, params):
    """For each image and each of its two objects A (B the other), the map of region(class A)
    peaks on A and not on B in >= 90 % of the 200 maps (bench/bench_targets.py: 25 samples)."""
    model = keras.saving.load_model(ASSETS / "shapes_segmenter.keras")
    x = np.asarray(scenes.images, np.float32)
    r = region_localisation(
        model, x, scenes.object_masks, scenes.object_classes, method=method, **params
    )
    assert r["maps"] == 200 and r["on_object_not_other"] >= 0.9
    assert r["energy_inside"] > 3 * r["energy_inside_others"]
    # the same, by hand, for the first object: its maps peak on it and not on the other one
    e = xai.explain(
        model, x, method, targets=xai.targets.region(scenes.object_classes[:, 0]), **params
    )
    assert e.target == {
        "kind": "region",
        "class_index": scenes.object_classes[:, 0].tolist(),
        "mask": "predicted",
    }
    hits = _on_a_not_b(e.heatmap, scenes.object_masks[:, 0], scenes.object_masks[:, 1])
    np.testing.assert_array_equal(
        hits, r["per_object"]["pointing_game"][:, 0] & ~r["per_object"]["on_other_object"][:, 0]
    )


def _box_masks(b):
    m = np.zeros((len(b), 64, 64), bool)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(b).astype(int)):
        m[i, y0:y1, x0:x1] = True
    return m


def test_detector_box_maps_peak_on_their_own_box(scenes):
    """Explaining box 1 and box 2 of the same image: each map peaks inside its own box and not the
    other's (saliency on the raw per-anchor class logits)."""
    model = keras.saving.load_model(ASSETS / "shapes_detector.keras")
    x = np.asarray(scenes.images[:40], np.float32)
    anchors = boxes.shapes_anchors()
    heats = []
    for k in (0, 1):
        target = xai.targets.box(
            scenes.boxes[:40, k], scenes.object_classes[:40, k] - 1, anchors=anchors
        )
        heats.append(xai.explain(model, x, "saliency", targets=target, output="cls_logits").heatmap)
    one, two = _box_masks(scenes.boxes[:40, 0]), _box_masks(scenes.boxes[:40, 1])
    both = _on_a_not_b(heats[0], one, two) & _on_a_not_b(heats[1], two, one)
    assert both.mean() >= 0.9
    # the two maps of one image differ where the boxes are: each has more mass in its own box
    assert ((heats[0] * one).sum((1, 2)) > (heats[1] * one).sum((1, 2))).mean() >= 0.9


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory, scenes):
    import cv2

    folder = tmp_path_factory.mktemp("scenes")
    for i in range(3):
        cv2.imwrite(str(folder / f"s{i}.png"), cv2.cvtColor(scenes.images[i], cv2.COLOR_RGB2BGR))
    return folder


def test_cli_explain_and_export_take_a_region_target(tmp_path, scene_files, scenes):
    from xai import cli

    model = str(ASSETS / "shapes_segmenter.keras")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(SEGMENTATION_CLASSES) + "\n", encoding="utf-8")
    files = sorted(str(p) for p in scene_files.glob("*.png"))
    out = tmp_path / "explain"
    argv = ["explain", model, *files, "--layer", "features_relu", "--out", str(out)]
    assert cli.main([*argv, "--targets", "region:star", "--labels", str(labels)]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    row = manifest["files"][0]
    assert row["target"] == 3 and row["predicted"] is None
    assert row["target_spec"] == {"kind": "region", "class_index": [3], "mask": "predicted"}
    # the same map as the library's
    raw = np.load(out / row["raw"])
    e = xai.explain(
        keras.saving.load_model(model),
        scenes.images[:1],
        "gradcam",
        targets=xai.targets.region(3),
        layer="features_relu",
    )
    np.testing.assert_allclose(raw, e.attributions[0], rtol=1e-4, atol=1e-6)
    assert cli.main([*argv, "--targets", "region:"]) == 2

    code = cli.main(
        ["export", model, str(scene_files), str(tmp_path / "export"), "--targets", "region:2"]
    )
    assert code == 0
    rows = [
        json.loads(line)
        for line in (tmp_path / "export" / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert {r["target"] for r in rows if r.get("status") == "ok"} == {2}


def test_region_localisation_and_the_audit_check_their_inputs(scenes):
    model = keras.saving.load_model(ASSETS / "shapes_segmenter.keras")
    x = np.asarray(scenes.images[:2], np.float32)
    with pytest.raises(xai.XaiValueError, match=r"object_masks.*\(N, M, H, W\) with N=2"):
        xai.audit.region_localisation(
            model, x, scenes.object_masks[:2, 0], scenes.object_classes[:2]
        )
    with pytest.raises(xai.XaiValueError, match=r"object_classes.*\(2, 2\)"):
        xai.audit.region_localisation(
            model, x, scenes.object_masks[:2], scenes.object_classes[:2, 0]
        )
    with pytest.raises(xai.XaiValueError, match=r"region_mask.*'predicted' or 'true'"):
        xai.audit.region_localisation(
            model, x, scenes.object_masks[:2], scenes.object_classes[:2], region_mask="gt"
        )
    with pytest.raises(xai.XaiValueError, match=r"classifier.*dense output.*region_localisation"):
        xai.run_audit(model, x, [1, 2], masks=scenes.object_masks[:2, 0])


def test_region_localisation_parameters_matter(scenes):
    model = keras.saving.load_model(ASSETS / "shapes_segmenter.keras")
    x = np.asarray(scenes.images[:6], np.float32)
    args = (model, x, scenes.object_masks[:6], scenes.object_classes[:6])
    own = xai.audit.region_localisation(*args, method="saliency")
    true = xai.audit.region_localisation(*args, method="saliency", region_mask="true")
    assert own["energy_inside"] != true["energy_inside"]
    wide = xai.audit.region_localisation(*args, method="saliency", tolerance=20)
    assert wide["on_other_object"] > own["on_other_object"]
    hires = xai.audit.region_localisation(*args, method="hirescam", layer="features_relu")
    assert hires["method"] == "hirescam" and hires["energy_inside"] != own["energy_inside"]
