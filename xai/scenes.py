"""Seeded two-object scenes of the shapes data, with per-class masks, for segmentation/detection.

Each image shows two objects of *different* classes (circle, square, star, triangle), apart from
each other, over the same cluttered background as :func:`xai.datasets.make_shapes` (colour
gradient, blotches, lines, blobs, pixel noise). Pixel labels are 0 for background and ``1 + c``
for class ``c``, so a segmentation model has ``1 + 4`` output classes (``SEGMENTATION_CLASSES``).
The same arguments always give the same bytes, and image ``i`` does not depend on ``num_images``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .datasets import (
    _EXTENT,
    _SCENE_SPLIT,
    CLASS_NAMES,
    _background,
    _check_choice,
    _check_sizes,
    _distractors,
    _draw_object,
    _sensor_noise,
)

__all__ = ["SEGMENTATION_CLASSES", "Scenes", "make_scenes"]

#: Segmentation classes: index 0 is the background, ``1 + c`` the shape ``CLASS_NAMES[c]``.
SEGMENTATION_CLASSES: tuple[str, ...] = ("background", *CLASS_NAMES)

_STREAM_SCENES = 7  # a random stream of its own (make_shapes uses 0-2)
_PROFILE = {"r_min": 0.12, "r_max": 0.2, "contrast_min": 90.0, "contrast_max": 442.0}


@dataclass(frozen=True, eq=False)
class Scenes:
    """Two-object scenes. Arrays are read-only.

    Attributes:
        images: uint8 RGB ``(N, H, W, 3)``.
        labels: uint8 ``(N, H, W)`` pixel classes (0 background, ``1 + c`` for shape ``c``).
        object_classes: int64 ``(N, 2)`` segmentation class (``1 + c``) of object 0 and object 1.
        object_masks: bool ``(N, 2, H, W)``, the pixels of each object.
        boxes: float32 ``(N, 2, 4)`` each object's mask bounding box ``(x0, y0, x1, y1)`` in pixels
            (``x1``/``y1`` exclusive).
        class_names: ``SEGMENTATION_CLASSES``.
        split, seed: how the data were made.
    """

    images: np.ndarray
    labels: np.ndarray
    object_classes: np.ndarray
    object_masks: np.ndarray
    boxes: np.ndarray
    class_names: tuple[str, ...]
    split: str
    seed: int

    def __len__(self) -> int:
        return int(self.images.shape[0])


def make_scenes(
    num_images: int, *, seed: int, image_size: int = 64, split: str = "train"
) -> Scenes:
    """Make ``num_images`` seeded scenes with two objects of different classes each.

    Args:
        num_images: how many images, >= 1.
        seed: non-negative int; the same ``(seed, split, image_size)`` gives the same bytes.
        image_size: side in pixels, 32 to 256.
        split: ``"train"``, ``"val"`` or ``"test"`` (independent streams).

    Returns:
        A :class:`Scenes`.
    """
    num_images, seed, image_size = _check_sizes(num_images, seed, image_size)
    split = _check_choice("split", split, ("train", "val", "test"))
    n, size = num_images, image_size
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    object_classes = np.empty((n, 2), np.int64)
    object_masks = np.zeros((n, 2, size, size), bool)
    boxes = np.empty((n, 2, 4), np.float32)
    margin = max(1.0, 0.03 * size)
    for i in range(n):
        rng = np.random.default_rng([_STREAM_SCENES, _SCENE_SPLIT[split], 0, i, seed])
        classes = rng.choice(len(CLASS_NAMES), size=2, replace=False)
        canvas = _background(rng, size)
        geometry: list[tuple[float, float, float, float, float]] = []
        for c in classes:
            radius = rng.uniform(_PROFILE["r_min"], _PROFILE["r_max"]) * size
            for attempt in range(2000):
                if attempt % 100 == 99:  # no room left next to the first object: shrink
                    radius *= 0.9
                reach = radius * _EXTENT[CLASS_NAMES[c]]
                cx, cy = rng.uniform(reach + margin, size - 1 - reach - margin, size=2)
                if all(math.hypot(cx - g[0], cy - g[1]) > reach + g[4] + 2 for g in geometry):
                    break
            geometry.append((cx, cy, radius, rng.uniform(0, 2 * math.pi), reach))
        _distractors(rng, canvas, [(g[0], g[1], g[4]) for g in geometry])
        image = canvas.astype(np.float32)
        for k, (c, g) in enumerate(zip(classes, geometry)):
            image, mask = _draw_object(
                rng,
                np.clip(np.rint(image), 0, 255).astype(np.uint8),
                CLASS_NAMES[c],
                g[:4],
                _PROFILE,
            )
            object_masks[i, k] = mask
            labels[i][mask] = 1 + c
            ys, xs = np.nonzero(mask)
            boxes[i, k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        object_classes[i] = 1 + classes
        images[i] = _sensor_noise(rng, image)
    for array in (images, labels, object_classes, object_masks, boxes):
        array.flags.writeable = False
    return Scenes(
        images=images,
        labels=labels,
        object_classes=object_classes,
        object_masks=object_masks,
        boxes=boxes,
        class_names=SEGMENTATION_CLASSES,
        split=split,
        seed=seed,
    )
