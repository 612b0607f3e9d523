"""Tests of the seeded shapes dataset (xai.datasets) and of the demo models trained on it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from xai.datasets import (
    CLASS_NAMES,
    MARKER_COLORS,
    ShapesData,
    make_shapes,
    save_image_folder,
)
from xai.errors import XaiTypeError, XaiValueError

ASSETS = Path(__file__).resolve().parents[1] / "xai" / "assets"


def arrays(data: ShapesData) -> list[np.ndarray]:
    return [
        data.images,
        data.labels,
        data.masks,
        data.marker_masks,
        data.object_labels,
        data.marker_labels,
    ]


# ---------------------------------------------------------------------------------------------
# Determinism and seeds


@pytest.mark.parametrize(
    ("variant", "split"),
    [("clean", "train"), ("clean", "test"), ("shortcut", "train"), ("shortcut", "swapped")],
)
def test_same_arguments_give_identical_bytes(variant, split):
    a = make_shapes(6, seed=3, variant=variant, split=split)
    b = make_shapes(6, seed=3, variant=variant, split=split)
    for x, y in zip(arrays(a), arrays(b), strict=True):
        assert x.tobytes() == y.tobytes()


def test_image_i_does_not_depend_on_num_images():
    short, long = make_shapes(5, seed=1), make_shapes(11, seed=1)
    for x, y in zip(arrays(short), arrays(long), strict=True):
        np.testing.assert_array_equal(x, y[:5])


def test_different_split_or_seed_gives_different_images():
    base = make_shapes(4, seed=0, split="train").images
    assert not np.array_equal(base, make_shapes(4, seed=0, split="val").images)
    assert not np.array_equal(base, make_shapes(4, seed=0, split="test").images)
    assert not np.array_equal(base, make_shapes(4, seed=1, split="train").images)
    # No image of one split reappears in another.
    others = np.concatenate([make_shapes(8, seed=0, split=s).images for s in ("val", "test")])
    for image in make_shapes(8, seed=0, split="train").images:
        assert not (others == image).all(axis=(1, 2, 3)).any()


def test_large_seed_is_accepted_and_distinct():
    a = make_shapes(2, seed=2**40 + 5).images
    b = make_shapes(2, seed=5).images
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, masks, labels


@pytest.mark.parametrize("image_size", [32, 64, 97])
@pytest.mark.parametrize("variant", ["clean", "shortcut"])
def test_shapes_and_dtypes(image_size, variant):
    data = make_shapes(5, seed=0, image_size=image_size, variant=variant)
    assert isinstance(data, ShapesData) and len(data) == 5
    assert data.images.shape == (5, image_size, image_size, 3) and data.images.dtype == np.uint8
    assert data.labels.shape == (5,) and data.labels.dtype == np.int64
    assert data.masks.shape == (5, image_size, image_size) and data.masks.dtype == bool
    assert data.marker_masks.shape == data.masks.shape and data.marker_masks.dtype == bool
    assert data.object_labels.dtype == np.int64 and data.marker_labels.dtype == np.int64
    assert data.class_names == CLASS_NAMES
    assert ((data.labels >= 0) & (data.labels < len(CLASS_NAMES))).all()
    assert (data.variant, data.split, data.seed) == (variant, "train", 0)
    assert "num_images=5" in repr(data)


def test_arrays_are_read_only():
    data = make_shapes(2, seed=0)
    with pytest.raises(ValueError, match="read-only"):
        data.images[0, 0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        data.labels[0] = 1


def test_class_names_are_sorted_like_keras_folder_labels():
    # keras.utils.image_dataset_from_directory infers labels from sorted sub-folder names.
    assert list(CLASS_NAMES) == sorted(CLASS_NAMES)
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES) == len(MARKER_COLORS)


@pytest.mark.parametrize("image_size", [32, 64, 128])
def test_masks_are_non_empty_and_inside_the_image(image_size):
    data = make_shapes(12, seed=0, image_size=image_size, split="test")
    area = data.masks.sum(axis=(1, 2))
    assert (area > 0.01 * image_size**2).all()
    assert (area < 0.5 * image_size**2).all()
    border = np.ones((image_size, image_size), bool)
    border[1:-1, 1:-1] = False
    assert not (data.masks & border).any(), "objects must lie fully inside the image"


def test_masks_cover_the_object():
    data = make_shapes(24, seed=0, split="test")
    kernel = np.ones((5, 5), np.uint8)
    for image, mask in zip(data.images, data.masks, strict=True):
        m = mask.astype(np.uint8)
        inner = cv2.erode(m, kernel).astype(bool)
        ring = cv2.dilate(m, kernel).astype(bool) & ~cv2.dilate(m, np.ones((3, 3))).astype(bool)
        pixels = image.astype(np.float64)
        inside, outside = pixels[inner].mean(axis=0), pixels[ring].mean(axis=0)
        assert np.linalg.norm(inside - outside) > 40  # the object stands out from its surround
        assert pixels[inner].std(axis=0).max() < 20  # and is one flat colour (plus noise)


def test_the_object_is_the_class_shape():
    # How much of its enclosing circle and of its convex hull the mask fills tells the shapes apart.
    data = make_shapes(40, seed=0, split="test", image_size=128)
    fill: dict[str, list[float]] = {name: [] for name in CLASS_NAMES}
    solidity: dict[str, list[float]] = {name: [] for name in CLASS_NAMES}
    for label, mask in zip(data.labels, data.masks, strict=True):
        points = cv2.findNonZero(mask.astype(np.uint8))
        _, radius = cv2.minEnclosingCircle(points)
        fill[CLASS_NAMES[label]].append(mask.sum() / (np.pi * radius**2))
        solidity[CLASS_NAMES[label]].append(mask.sum() / cv2.contourArea(cv2.convexHull(points)))
    fill = {k: np.mean(v) for k, v in fill.items()}
    solidity = {k: np.mean(v) for k, v in solidity.items()}
    assert fill["circle"] > 0.9
    assert 0.55 < fill["square"] < 0.72  # 2 / pi = 0.64
    assert 0.35 < fill["triangle"] < 0.5  # 0.41
    assert min(solidity["circle"], solidity["square"], solidity["triangle"]) > 0.95
    assert solidity["star"] < 0.7  # 0.56 for an inner radius of 0.45


@pytest.mark.parametrize("n", [4, 10, 40])
def test_labels_are_balanced(n):
    counts = np.bincount(make_shapes(n, seed=0).labels, minlength=len(CLASS_NAMES))
    assert counts.max() - counts.min() <= 1


def test_clean_variant_has_no_marker():
    data = make_shapes(8, seed=0)
    assert not data.marker_masks.any()
    assert (data.marker_labels == -1).all()
    np.testing.assert_array_equal(data.object_labels, data.labels)


# ---------------------------------------------------------------------------------------------
# The shortcut variant


@pytest.mark.parametrize("split", ["train", "val", "test", "swapped"])
@pytest.mark.parametrize("image_size", [32, 64])
def test_marker_is_a_solid_class_coloured_square_apart_from_the_object(split, image_size):
    data = make_shapes(16, seed=0, image_size=image_size, variant="shortcut", split=split)
    side = max(3, round(6 * image_size / 64))
    for i in range(len(data)):
        marker = data.marker_masks[i]
        assert marker.sum() == side * side
        assert not (marker & data.masks[i]).any()
        colours = np.unique(data.images[i][marker], axis=0)
        np.testing.assert_array_equal(colours, [MARKER_COLORS[data.marker_labels[i]]])
        ys, xs = np.nonzero(marker)
        corner_y = ys.min() < image_size / 2
        corner_x = xs.min() < image_size / 2
        assert ys.max() < image_size / 4 if corner_y else ys.min() > 3 * image_size / 4
        assert xs.max() < image_size / 4 if corner_x else xs.min() > 3 * image_size / 4


def test_marker_corner_varies():
    data = make_shapes(40, seed=0, variant="shortcut", split="test")
    corners = {(bool(m[:32].any()), bool(m[:, :32].any())) for m in data.marker_masks}
    assert len(corners) == 4


def test_marker_matches_the_label_except_in_the_swapped_split():
    for split in ("train", "val", "test"):
        data = make_shapes(20, seed=0, variant="shortcut", split=split)
        np.testing.assert_array_equal(data.marker_labels, data.labels)
    swapped = make_shapes(20, seed=0, variant="shortcut", split="swapped")
    assert (swapped.marker_labels != swapped.labels).all()
    assert (swapped.marker_labels >= 0).all()
    np.testing.assert_array_equal(swapped.object_labels, swapped.labels)
    # Every wrong class turns up as a marker.
    assert len(set(((swapped.marker_labels - swapped.labels) % 4).tolist())) == 3


def test_swapped_and_clean_test_show_the_same_scenes_as_shortcut_test():
    test = make_shapes(12, seed=0, variant="shortcut", split="test")
    swapped = make_shapes(12, seed=0, variant="shortcut", split="swapped")
    clean = make_shapes(12, seed=0, variant="clean", split="test")
    np.testing.assert_array_equal(test.labels, swapped.labels)
    np.testing.assert_array_equal(test.masks, clean.masks)
    elsewhere = ~(test.marker_masks | swapped.marker_masks)
    np.testing.assert_array_equal(test.images[elsewhere], swapped.images[elsewhere])
    np.testing.assert_array_equal(test.images[~test.marker_masks], clean.images[~test.marker_masks])


def test_shortcut_training_objects_are_a_weaker_cue():
    hard = make_shapes(40, seed=0, variant="shortcut", split="train")
    normal = make_shapes(40, seed=0, variant="clean", split="train")
    # Some drawn shapes belong to another class than the label (the marker's)...
    assert 0 < (hard.object_labels != hard.labels).mean() < 0.6
    # ...and they are smaller than in the clean variant.
    assert hard.masks.sum(axis=(1, 2)).mean() < 0.6 * normal.masks.sum(axis=(1, 2)).mean()


# ---------------------------------------------------------------------------------------------
# Argument errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"num_images": 0},
            XaiValueError,
            r"`num_images` must be an int >= 1\. Received: num_images=0",
        ),
        ({"num_images": -3}, XaiValueError, "`num_images` must be an int >= 1"),
        ({"num_images": 2.0}, XaiTypeError, "`num_images` must be an int"),
        ({"num_images": True}, XaiTypeError, "`num_images` must be an int"),
        ({"seed": -1}, XaiValueError, "`seed` must be a non-negative int"),
        ({"seed": "0"}, XaiTypeError, "`seed` must be an int"),
        ({"seed": None}, XaiTypeError, "`seed` must be an int"),
        ({"image_size": 31}, XaiValueError, "`image_size` must be an int from 32 to 256"),
        ({"image_size": 257}, XaiValueError, "from 32 to 256.*Received: image_size=257"),
        ({"image_size": 64.0}, XaiTypeError, "`image_size` must be an int"),
        ({"variant": "shortcutt"}, XaiValueError, "Did you mean 'shortcut'"),
        ({"variant": "Clean"}, XaiValueError, "`variant` must be one of 'clean', 'shortcut'"),
        ({"split": "tset"}, XaiValueError, "Did you mean 'test'"),
        ({"split": "validation"}, XaiValueError, "`split` must be one of"),
        ({"split": "swapped"}, XaiValueError, "only exists for variant='shortcut'"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    arguments = {"num_images": 2, "seed": 0} | kwargs
    with pytest.raises(error, match=match):
        make_shapes(**arguments)


def test_errors_are_value_and_type_errors():
    with pytest.raises(ValueError):
        make_shapes(0, seed=0)
    with pytest.raises(TypeError):
        make_shapes(1, seed="x")


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("not data", "out"), {}, XaiTypeError, "`data` must be a ShapesData"),
        ((None, 3), {}, XaiTypeError, "`data` must be a ShapesData"),
        (("DATA", 3), {}, XaiTypeError, "`directory` must be a str or pathlib.Path"),
        (("DATA", "DIR"), {"fmt": "jpeg"}, XaiValueError, "Did you mean 'jpg'"),
        (("DATA", "DIR"), {"fmt": "tiff"}, XaiValueError, "`fmt` must be one of 'png', 'jpg'"),
        (("DATA", "FILE"), {}, XaiValueError, "It is an existing file"),
    ],
)
def test_save_image_folder_bad_arguments(tmp_path, args, kwargs, error, match):
    data = make_shapes(1, seed=0)
    (tmp_path / "file.txt").write_text("x")
    replace = {"DATA": data, "DIR": tmp_path / "out", "FILE": tmp_path / "file.txt"}
    args = tuple(replace.get(a, a) if isinstance(a, str) else a for a in args)
    with pytest.raises(error, match=match):
        save_image_folder(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# save_image_folder


def test_save_image_folder_layout_and_round_trip(tmp_path):
    data = make_shapes(8, seed=0, split="test")
    written = save_image_folder(data, tmp_path / "set")
    root = tmp_path / "set"
    assert sorted(p.name for p in root.iterdir()) == ["images", "labels.csv", "masks"]
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(CLASS_NAMES)
    assert len(written) == 2 * len(data) + 1 and all(p.exists() for p in written)
    for i in range(len(data)):
        name = CLASS_NAMES[data.labels[i]]
        image = cv2.imread(str(root / "images" / name / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(image[..., ::-1], data.images[i])  # BGR on disk, RGB here
        mask = cv2.imread(str(root / "masks" / name / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask > 0, data.masks[i])
    with (root / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["label"]) for r in rows] == data.labels.tolist()
    assert rows[0]["file"] == f"images/{CLASS_NAMES[data.labels[0]]}/00000.png"
    assert {r["marker_label"] for r in rows} == {"-1"}


def test_save_image_folder_shortcut_writes_marker_masks_and_jpg(tmp_path):
    data = make_shapes(4, seed=0, variant="shortcut", split="swapped")
    written = save_image_folder(data, tmp_path, fmt="jpg")
    assert len(written) == 3 * len(data) + 1
    name = CLASS_NAMES[data.labels[0]]
    assert (tmp_path / "images" / name / "00000.jpg").exists()
    assert not list((tmp_path / "images").rglob("*.png"))
    marker = cv2.imread(str(tmp_path / "marker_masks" / name / "00000.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(marker > 0, data.marker_masks[0])
    with (tmp_path / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["marker_label"]) for r in rows] == data.marker_labels.tolist()


# ---------------------------------------------------------------------------------------------
# The shipped demo models


def test_shipped_models_load_and_behave_as_recorded():
    keras = pytest.importorskip("keras")
    record = json.loads((ASSETS / "models.json").read_text())["models"]
    assert {"clean", "shortcut"} <= set(record)  # other shipped models have their own tests
    clean = make_shapes(64, seed=123, split="test")
    consistent = make_shapes(64, seed=123, variant="shortcut", split="test")
    swapped = make_shapes(64, seed=123, variant="shortcut", split="swapped")

    def accuracy(model, data):
        p = model.predict(np.asarray(data.images, np.float32), batch_size=64, verbose=0)
        return float((p.argmax(axis=1) == data.labels).mean())

    for key in ("clean", "shortcut"):
        entry = record[key]
        path = ASSETS / entry["file"]
        assert path.stat().st_size < 2 * 1024 * 1024
        model = keras.saving.load_model(path)
        assert model.count_params() == entry["num_params"] < 200_000
        assert entry["class_names"] == list(CLASS_NAMES)
        assert model.input_shape == (None, entry["image_size"], entry["image_size"], 3)
        assert model.get_layer("last_conv") is not None
        if key == "clean":
            assert accuracy(model, clean) >= 0.9
            assert entry["test_accuracy"]["clean_test"] >= 0.95
        else:
            right, wrong = accuracy(model, consistent), accuracy(model, swapped)
            assert right >= 0.9
            assert wrong < right - 0.5


def test_keras_reads_the_folder_back_with_the_same_labels(tmp_path):
    keras = pytest.importorskip("keras")
    data = make_shapes(8, seed=0, variant="shortcut", split="test")
    save_image_folder(data, tmp_path)
    ds = keras.utils.image_dataset_from_directory(
        tmp_path / "images", image_size=(64, 64), shuffle=False, batch_size=8, verbose=False
    )
    assert ds.class_names == list(CLASS_NAMES)  # masks/ is not a class, the order matches
    images, labels = next(iter(ds))
    index = [int(Path(p).stem) for p in ds.file_paths]
    np.testing.assert_array_equal(labels.numpy(), data.labels[index])
    np.testing.assert_array_equal(images.numpy().astype(np.uint8), data.images[index])
