"""A small, seeded "shapes" dataset made here, with ground-truth object masks.

Every image shows one object (a circle, square, star or triangle) at a random position, size,
rotation and colour, drawn with anti-aliasing over a cluttered background: a smooth random colour
gradient with blotches, thin random lines, small elliptical blobs that are none of the classes, and
pixel noise. Because the object's pixels are known exactly, the dataset can score explanations
(does the heatmap fall on the object?) as well as train models.

The ``"shortcut"`` variant adds a small solid marker patch whose colour is fixed per class, in a
random corner, and records it in ``marker_masks``. Its training and validation splits make the
object a poor cue on purpose (smaller, fainter, and in half of the images a shape of a random
class) so that a model trained there learns to read the marker instead of the shape. Its
``"test"`` split shows the same scenes as the clean ``"test"`` split with a marker of the right
class added; its ``"swapped"`` split shows the same scenes again with a marker of a *different*
class. A marker-reliant model is right on ``"test"`` and wrong on ``"swapped"``; a model that looks
at the object is right on both.

Only numpy and OpenCV are used; nothing is downloaded. The same arguments always give the same
bytes, and image ``i`` does not depend on ``num_images`` (``make_shapes(8, ...)`` is the first 8
images of ``make_shapes(100, ...)``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from xai import _validation
from xai.errors import bad_type, bad_value, did_you_mean
from xai.io import png_params

__all__ = [
    "CLASS_NAMES",
    "MARKER_COLORS",
    "SPLITS",
    "VARIANTS",
    "ShapesData",
    "make_shapes",
    "save_image_folder",
]

#: Class names, index = label. Alphabetical, so that the order matches the labels that
#: ``keras.utils.image_dataset_from_directory`` infers from a folder written by
#: :func:`save_image_folder` (it sorts the sub-folder names).
CLASS_NAMES: tuple[str, ...] = ("circle", "square", "star", "triangle")

#: Dataset variants.
VARIANTS: tuple[str, ...] = ("clean", "shortcut")

#: Splits. ``"swapped"`` exists only for the ``"shortcut"`` variant.
SPLITS: tuple[str, ...] = ("train", "val", "test", "swapped")

#: RGB colour of the shortcut marker of each class (same order as ``CLASS_NAMES``).
MARKER_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),  # circle: red
    (0, 230, 0),  # square: green
    (0, 64, 255),  # star: blue
    (255, 0, 255),  # triangle: magenta
)

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 256
IMAGE_FORMATS = ("png", "jpg")

# Independent random streams, keyed [stream, split, profile, index, seed]. The seed comes last, so
# a large seed that NumPy splits into several 32-bit words can never collide with another key.
_STREAM_SCENE = 0
_STREAM_LABELS = 1
_STREAM_MARKER = 2

# Scenes of the "swapped" split are those of "test" (same objects, same backgrounds).
_SCENE_SPLIT = {"train": 0, "val": 1, "test": 2, "swapped": 2}
_MARKER_SPLIT = {"train": 0, "val": 1, "test": 2, "swapped": 3}

# How each profile draws the object. Sizes are the circumradius as a fraction of the image side;
# contrast is the Euclidean RGB distance between the object's colour and the background under it.
_PROFILES: dict[str, dict[str, float]] = {
    "normal": {
        "r_min": 0.15,
        "r_max": 0.28,
        "contrast_min": 90.0,
        "contrast_max": 442.0,
        "p_random_shape": 0.0,
    },
    # Shortcut training/validation: small, faint, and half of the shapes carry no information.
    "hard": {
        "r_min": 0.10,
        "r_max": 0.16,
        "contrast_min": 30.0,
        "contrast_max": 60.0,
        "p_random_shape": 0.5,
    },
}

# How far each shape reaches from its centre, in units of the sampled radius (keeps it inside the
# image and clear of the marker corners).
_EXTENT = {"circle": 0.85, "square": 1.0, "star": 1.05, "triangle": 1.1}

_AA_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_AA_ONE = 1 << _AA_SHIFT


@dataclass(frozen=True, eq=False)
class ShapesData:
    """A batch of shapes images with labels and pixel masks. Arrays are read-only.

    Attributes:
        images: uint8 RGB images, shape ``(N, H, W, 3)``, values in [0, 255].
        labels: int64 class indices into ``class_names``, shape ``(N,)``. The class a model should
            predict: the object's class, except in the shortcut ``"train"``/``"val"`` splits, where
            it is the marker's class (the drawn shape may then be a random class, see
            ``object_labels``).
        masks: bool ``(N, H, W)``, True on the object's pixels (anti-aliased coverage >= 0.5).
        marker_masks: bool ``(N, H, W)``, True on the shortcut marker's pixels; all False for the
            ``"clean"`` variant. Disjoint from ``masks``.
        class_names: the class names, index = label.
        object_labels: int64 ``(N,)``, the class of the shape actually drawn.
        marker_labels: int64 ``(N,)``, the class whose marker colour was drawn, or -1 (clean).
        variant: ``"clean"`` or ``"shortcut"``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"swapped"``.
        seed: the seed the data was made from.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    marker_masks: np.ndarray
    class_names: tuple[str, ...]
    object_labels: np.ndarray
    marker_labels: np.ndarray
    variant: str
    split: str
    seed: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        n, h, w, _ = self.images.shape
        counts = np.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return (
            f"ShapesData(variant={self.variant!r}, split={self.split!r}, seed={self.seed}, "
            f"num_images={n}, image_size={h}x{w}, class_counts={counts})"
        )


_check_int = _validation.integer


def _check_choice(param: str, value: Any, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise bad_value(
            param,
            "one of " + ", ".join(repr(o) for o in options),
            value,
            did_you_mean(str(value), options),
        )
    return value


def _check_sizes(num_images: Any, seed: Any, image_size: Any) -> tuple[int, int, int]:
    """Validated ``(num_images, seed, image_size)`` of a generator (:func:`make_shapes`,
    :func:`xai.scenes.make_scenes`)."""
    num_images = _check_int("num_images", num_images)
    if num_images < 1:
        raise bad_value("num_images", "an int >= 1", num_images)
    seed = _check_int("seed", seed)
    if seed < 0:
        raise bad_value("seed", "a non-negative int", seed)
    image_size = _check_int("image_size", image_size)
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise bad_value(
            "image_size",
            f"an int from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}",
            image_size,
            "The default, 64, keeps training and explanations fast.",
        )
    return num_images, seed, image_size


def make_shapes(
    num_images: int,
    *,
    seed: int,
    image_size: int = 64,
    variant: str = "clean",
    split: str = "train",
) -> ShapesData:
    """Make ``num_images`` seeded shapes images with labels and ground-truth masks.

    Args:
        num_images: how many images, >= 1. Labels come in shuffled blocks of one image per class,
            so any multiple of 4 is exactly balanced.
        seed: non-negative int. The same ``(seed, variant, split, image_size)`` always gives the
            same bytes; image ``i`` does not depend on ``num_images``.
        image_size: side of the square images in pixels, 32 to 256. Geometry scales with it.
        variant: ``"clean"``, or ``"shortcut"`` (adds a class-coloured marker in a random corner).
        split: ``"train"``, ``"val"`` or ``"test"``, with different derived seeds; for the
            ``"shortcut"`` variant also ``"swapped"``: the ``"test"`` scenes with the marker of
            another class (labels stay the object's class).

    Returns:
        A :class:`ShapesData`.

    Raises:
        XaiValueError: a value out of range or an unknown variant/split.
        XaiTypeError: a non-int ``num_images``, ``seed`` or ``image_size``.
    """
    num_images, seed, image_size = _check_sizes(num_images, seed, image_size)
    variant = _check_choice("variant", variant, VARIANTS)
    split = _check_choice("split", split, SPLITS)
    if split == "swapped" and variant != "shortcut":
        raise bad_value(
            "split",
            f"'train', 'val' or 'test' for variant={variant!r}",
            split,
            "The 'swapped' split only exists for variant='shortcut'.",
        )

    k = len(CLASS_NAMES)
    labels = _balanced_labels(num_images, seed, _SCENE_SPLIT[split], k)
    hard = variant == "shortcut" and split in ("train", "val")
    profile = _PROFILES["hard" if hard else "normal"]
    marker_size = max(3, round(6 * image_size / 64))
    marker_inset = max(1, round(2 * image_size / 64))
    # Objects keep clear of the four corner boxes in every variant, so that the clean and shortcut
    # scenes are the same and a marker never touches the object.
    corner_box = marker_inset + marker_size + 1

    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    masks = np.empty((num_images, image_size, image_size), bool)
    marker_masks = np.zeros((num_images, image_size, image_size), bool)
    object_labels = labels.copy()
    marker_labels = np.full(num_images, -1, np.int64)

    for i in range(num_images):
        scene_rng = np.random.default_rng([_STREAM_SCENE, _SCENE_SPLIT[split], int(hard), i, seed])
        if scene_rng.random() < profile["p_random_shape"]:
            object_labels[i] = scene_rng.integers(k)
        images[i], masks[i] = _render_scene(
            scene_rng, image_size, CLASS_NAMES[object_labels[i]], profile, corner_box
        )
        if variant == "shortcut":
            marker_rng = np.random.default_rng([_STREAM_MARKER, _MARKER_SPLIT[split], 0, i, seed])
            corner = int(marker_rng.integers(4))
            marker_class = int(labels[i])
            if split == "swapped":
                marker_class = (marker_class + int(marker_rng.integers(1, k))) % k
            marker_labels[i] = marker_class
            y0 = marker_inset if corner < 2 else image_size - marker_inset - marker_size
            x0 = marker_inset if corner % 2 == 0 else image_size - marker_inset - marker_size
            images[i, y0 : y0 + marker_size, x0 : x0 + marker_size] = MARKER_COLORS[marker_class]
            marker_masks[i, y0 : y0 + marker_size, x0 : x0 + marker_size] = True

    for array in (images, labels, masks, marker_masks, object_labels, marker_labels):
        array.flags.writeable = False
    return ShapesData(
        images=images,
        labels=labels,
        masks=masks,
        marker_masks=marker_masks,
        class_names=CLASS_NAMES,
        object_labels=object_labels,
        marker_labels=marker_labels,
        variant=variant,
        split=split,
        seed=seed,
    )


def _balanced_labels(n: int, seed: int, split_index: int, k: int) -> np.ndarray:
    """Labels in blocks of ``k``, each block a seeded permutation of the classes."""
    blocks = []
    for b in range(-(-n // k)):
        rng = np.random.default_rng([_STREAM_LABELS, split_index, 0, b, seed])
        blocks.append(rng.permutation(k))
    return np.concatenate(blocks)[:n].astype(np.int64)


def _render_scene(
    rng: np.random.Generator,
    size: int,
    class_name: str,
    profile: dict[str, float],
    corner_box: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One cluttered background with one object. Returns (uint8 RGB image, bool object mask)."""
    canvas = _background(rng, size)

    # Object geometry first, so that the distractor blobs can keep clear of it.
    radius = rng.uniform(profile["r_min"], profile["r_max"]) * size
    reach = radius * _EXTENT[class_name]
    margin = max(1.0, 0.03 * size)
    for _ in range(1000):
        cx, cy = rng.uniform(reach + margin, size - 1 - reach - margin, size=2)
        if _clear_of_corners(cx, cy, reach, corner_box, size):
            break
    else:  # pragma: no cover - the ranges above always leave room
        cx = cy = (size - 1) / 2
    rotation = rng.uniform(0, 2 * math.pi)
    _distractors(rng, canvas, [(cx, cy, reach)])
    image, mask = _draw_object(rng, canvas, class_name, (cx, cy, radius, rotation), profile)
    return _sensor_noise(rng, image), mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour gradient plus low-frequency blotches, uint8 ``(size, size, 3)``."""
    c0, c1 = rng.uniform(40, 215, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    t = xx * math.cos(angle) + yy * math.sin(angle)
    t = (t - t.min()) / (t.max() - t.min())
    background = c0 + (c1 - c0) * t[..., None]
    blotches = rng.normal(0.0, 18.0, size=(5, 5, 3)).astype(np.float32)
    background += cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(background), 0, 255).astype(np.uint8)


def _distractors(
    rng: np.random.Generator, canvas: np.ndarray, objects: list[tuple[float, float, float]]
) -> None:
    """Thin lines anywhere and small blobs clear of every ``(cx, cy, reach)`` object, in place.

    Neither is a class shape; the objects are drawn over the lines afterwards.
    """
    size = canvas.shape[0]
    for _ in range(int(rng.integers(2, 5))):
        p0, p1 = rng.uniform(0, size - 1, size=(2, 2))
        cv2.line(canvas, _fixed(p0), _fixed(p1), _color(rng), 1, cv2.LINE_AA, _AA_SHIFT)
    for _ in range(int(rng.integers(1, 4))):
        axis = rng.uniform(0.025, 0.05) * size
        axes = (axis, axis * rng.uniform(0.35, 0.7))
        for _ in range(50):
            bx, by = rng.uniform(axis, size - 1 - axis, size=2)
            if all(math.hypot(bx - cx, by - cy) > reach + axis + 2 for cx, cy, reach in objects):
                break
        else:
            continue
        cv2.ellipse(
            canvas,
            _fixed((bx, by)),
            _fixed(axes),
            float(rng.uniform(0, 180)),
            0,
            360,
            _color(rng),
            -1,
            cv2.LINE_AA,
            _AA_SHIFT,
        )


def _draw_object(
    rng: np.random.Generator,
    canvas: np.ndarray,
    class_name: str,
    geometry: tuple[float, float, float, float],
    profile: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Blend one anti-aliased object of ``(cx, cy, radius, rotation)`` over ``canvas``.

    Returns the float32 image and the bool object mask (coverage >= 0.5).
    """
    cx, cy, radius, rotation = geometry
    size = canvas.shape[0]
    coverage = np.zeros((size, size), np.uint8)
    if class_name == "circle":
        cv2.circle(
            coverage,
            _fixed((cx, cy)),
            round(radius * _EXTENT["circle"] * _AA_ONE),
            255,
            -1,
            cv2.LINE_AA,
            _AA_SHIFT,
        )
    else:
        points = _outline(class_name) * radius
        c, s = math.cos(rotation), math.sin(rotation)
        points = points @ np.array([[c, s], [-s, c]]) + (cx, cy)
        cv2.fillPoly(
            coverage, [np.rint(points * _AA_ONE).astype(np.int32)], 255, cv2.LINE_AA, _AA_SHIFT
        )
    mask = coverage >= 128
    under = np.asarray(canvas)[mask].astype(np.float64).mean(axis=0)
    color = _contrasting_color(rng, under, profile["contrast_min"], profile["contrast_max"])
    alpha = coverage.astype(np.float32)[..., None] / 255.0
    image = canvas.astype(np.float32) * (1.0 - alpha) + color.astype(np.float32) * alpha
    return image, mask


def _sensor_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Sensor-like Gaussian pixel noise over everything; uint8 result."""
    sigma = rng.uniform(3.0, 9.0)
    image = image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _clear_of_corners(cx: float, cy: float, reach: float, box: int, size: int) -> bool:
    """True when the disc (cx, cy, reach) misses the four ``box`` x ``box`` corner squares."""
    for bx in (box, size - 1 - box):
        for by in (box, size - 1 - box):
            nx = min(cx, bx) if bx == box else max(cx, bx)
            ny = min(cy, by) if by == box else max(cy, by)
            if math.hypot(cx - nx, cy - ny) <= reach + 1:
                return False
    return True


def _outline(class_name: str) -> np.ndarray:
    """Polygon vertices of a shape at unit circumradius (times its extent), shape (V, 2)."""
    if class_name == "square":
        angles = np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.ones(4)
    elif class_name == "triangle":
        angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        radii = np.ones(3)
    elif class_name == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    else:  # pragma: no cover - internal
        raise KeyError(class_name)
    radii = radii * _EXTENT[class_name]
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _fixed(point: Any) -> tuple[int, int]:
    """A float (x, y) as OpenCV fixed-point integers with ``_AA_SHIFT`` fractional bits."""
    return round(float(point[0]) * _AA_ONE), round(float(point[1]) * _AA_ONE)


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = rng.integers(0, 256, size=3)
    return int(r), int(g), int(b)


def _contrasting_color(
    rng: np.random.Generator, under: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """A random RGB colour whose distance to ``under`` lies in [lo, hi]."""
    for _ in range(200):
        if hi >= 442:
            color = rng.uniform(0, 255, size=3)
        else:  # faint: a random direction from the background colour
            direction = rng.normal(size=3)
            color = under + direction / np.linalg.norm(direction) * rng.uniform(lo, hi)
            color = np.clip(color, 0, 255)
        if lo <= np.linalg.norm(color - under) <= hi:
            return color
    # Fall back on the far corner of the RGB cube.
    return np.where(under < 128, 255.0, 0.0)


def save_image_folder(data: ShapesData, directory: str | Path, *, fmt: str = "png") -> list[Path]:
    """Write ``data`` as a class-per-sub-folder image tree with its masks.

    Layout::

        directory/images/<class_name>/<index:05d>.<fmt>    the RGB images
        directory/masks/<class_name>/<index:05d>.png       object masks, 0 or 255
        directory/marker_masks/<class_name>/<index:05d>.png  (shortcut variant only)
        directory/labels.csv    file, label, class_name, object_label, marker_label

    ``keras.utils.image_dataset_from_directory(directory / "images")`` reads it back with the
    same labels (the images sit apart from the masks, so the masks never become a class, and
    ``CLASS_NAMES`` is alphabetical like Keras' inferred order). Existing files of the same name
    are overwritten; other files are left alone.

    Args:
        data: what :func:`make_shapes` returned.
        directory: the folder to write into; created if missing.
        fmt: image format, ``"png"`` (lossless) or ``"jpg"``. Masks are always PNG.

    Returns:
        The paths written, in order.
    """
    if not isinstance(data, ShapesData):
        raise bad_type("data", "a ShapesData from xai.datasets.make_shapes", data)
    if not isinstance(directory, (str, Path)):
        raise bad_type("directory", "a str or pathlib.Path", directory)
    fmt = _check_choice("fmt", fmt, IMAGE_FORMATS)
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise bad_value(
            "directory",
            "a folder (or a path that does not exist yet)",
            str(root),
            "It is an existing file.",
        )
    with_markers = data.variant == "shortcut"
    parts = ["images", "masks"] + (["marker_masks"] if with_markers else [])
    for part in parts:
        for name in data.class_names:
            (root / part / name).mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    rows = []
    for i in range(len(data)):
        name = data.class_names[int(data.labels[i])]
        image_path = root / "images" / name / f"{i:05d}.{fmt}"
        _imwrite(image_path, cv2.cvtColor(np.ascontiguousarray(data.images[i]), cv2.COLOR_RGB2BGR))
        written.append(image_path)
        mask_path = root / "masks" / name / f"{i:05d}.png"
        _imwrite(mask_path, data.masks[i].astype(np.uint8) * 255)
        written.append(mask_path)
        if with_markers:
            marker_path = root / "marker_masks" / name / f"{i:05d}.png"
            _imwrite(marker_path, data.marker_masks[i].astype(np.uint8) * 255)
            written.append(marker_path)
        rows.append(
            [
                image_path.relative_to(root).as_posix(),
                int(data.labels[i]),
                name,
                int(data.object_labels[i]),
                int(data.marker_labels[i]),
            ]
        )

    labels_path = root / "labels.csv"
    with labels_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "label", "class_name", "object_label", "marker_label"])
        writer.writerows(rows)
    written.append(labels_path)
    return written


def _imwrite(path: Path, array: np.ndarray) -> None:
    params = png_params(9) if path.suffix == ".png" else []
    if not cv2.imwrite(str(path), array, params):
        raise OSError(f"OpenCV could not write {path}.")
