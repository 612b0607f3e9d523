"""Box geometry for detection targets: IoU, anchor matching, anchors, decoded detections.

Boxes are ``(x0, y0, x1, y1)`` in input pixels everywhere in xai (``x1``/``y1`` exclusive).
A detector explained with :func:`xai.targets.box` returns raw, dense outputs before non-max
suppression, RetinaNet's layout: ``bbox_regression (N, A, 4)`` (``center_xywh`` deltas to the
anchors) and ``cls_logits (N, A, C)``; the box target sums the class logits of the anchors that
match the box (:func:`anchor_weights`). :func:`detections_model` decodes both outputs into one
``(N, A, 4 + 1 + C)`` tensor of detections for the D-RISE target (:func:`xai.targets.drise`).

The shapes demo detector (:func:`shapes_detector`, anchors :func:`shapes_anchors`) is trained by
``datasets/train_dense_models.py`` and shipped in ``xai/assets/shapes_detector.keras``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers as L

from .errors import XaiValueError

__all__ = [
    "anchor_weights",
    "assign_anchors",
    "detections_model",
    "iou",
    "retinanet_anchors",
    "shapes_anchors",
    "shapes_detector",
]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box of ``a (..., P, 4)`` with each box of ``b (..., Q, 4)``: ``(..., P, Q)``."""
    a = np.asarray(a, np.float64)[..., :, None, :]
    b = np.asarray(b, np.float64)[..., None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def anchor_weights(anchors: np.ndarray, boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Which anchors match each box: ``(n, A)`` float32 0/1.

    An anchor matches when its IoU with the box is at least ``iou_threshold``; when none does,
    the anchors of the highest IoU match (RetinaNet's and Faster R-CNN's low-quality match).

    Raises:
        XaiValueError: a box that overlaps no anchor at all.
    """
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise XaiValueError(
            f"`iou_threshold` must be in (0, 1]. Received: iou_threshold={iou_threshold!r}. "
            "0.5 is RetinaNet's positive-match threshold."
        )
    overlap = iou(boxes, anchors)  # (n, A)
    best = overlap.max(axis=1, keepdims=True)
    if (best <= 0).any():
        bad = np.asarray(boxes)[int(np.argmax(best[:, 0] <= 0))]
        raise XaiValueError(
            f"`box` {bad.tolist()} overlaps none of the {len(anchors)} anchors. Check the box "
            "format (x0, y0, x1, y1 in input pixels) and that the anchors belong to this model."
        )
    matched = (overlap >= iou_threshold) | (overlap >= best - 1e-12)
    return matched.astype(np.float32)


def shapes_anchors(
    image_size: int = 64, stride: int = 8, sizes: tuple[int, ...] = (16, 26)
) -> np.ndarray:
    """Anchors of :func:`shapes_detector`: squares of ``sizes`` centred on every ``stride`` cell.

    Returns:
        float32 ``(cells * len(sizes), 4)`` boxes in output order: row-major cells, then sizes.
    """
    g = image_size // stride
    centres = (np.arange(g) + 0.5) * stride
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    half = np.asarray(sizes, np.float64) / 2
    x0 = cx[..., None] - half
    y0 = cy[..., None] - half
    out = np.stack([x0, y0, x0 + 2 * half, y0 + 2 * half], axis=-1)
    return out.reshape(-1, 4).astype(np.float32)


def shapes_detector(
    image_size: int = 64,
    num_classes: int = 4,
    num_anchors: int = 2,
    *,
    name: str = "shapes_detector",
) -> keras.Model:
    """A tiny dense-head anchor detector with RetinaNet's raw outputs (no NMS), untrained.

    ``Input`` (RGB floats 0-255) -> Conv-BN-ReLU blocks to stride 8 (``features_relu``, 8x8 at
    64x64) -> two 3x3 heads reshaped to ``cls_logits (N, A, num_classes)`` and
    ``bbox_regression (N, A, 4)`` with ``A = 64 * num_anchors`` anchors (:func:`shapes_anchors`).
    """

    from .testing import conv_bn_relu as block

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = block(x, 16, "conv1")
    x = block(x, 32, "conv2", strides=2)
    x = block(x, 48, "conv3", strides=2)
    x = block(x, 48, "conv4", strides=2)
    x = block(x, 64, "features", dilation_rate=2)
    cls = L.Conv2D(num_anchors * num_classes, 3, padding="same", name="cls_head")(x)
    box = L.Conv2D(num_anchors * 4, 3, padding="same", name="box_head")(x)
    outputs = {
        "bbox_regression": L.Reshape((-1, 4), name="bbox_regression")(box),
        "cls_logits": L.Reshape((-1, num_classes), name="cls_logits")(cls),
    }
    return keras.Model(inputs, outputs, name=name)


def _to_xyxy_format(boxes: Any, source: str) -> Any:
    return keras.utils.bounding_boxes.convert_format(boxes, source=source, target="xyxy")


def encode(anchors: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``center_xywh`` deltas of ``boxes`` to ``anchors`` (RetinaNet's encoding), float32."""
    deltas = keras.utils.bounding_boxes.encode_box_to_deltas(
        anchors=anchors.astype(np.float32),
        boxes=boxes.astype(np.float32),
        anchor_format="xyxy",
        box_format="xyxy",
        encoding_format="center_xywh",
    )
    return np.asarray(deltas, np.float32)


def assign_anchors(
    anchors: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    *,
    num_classes: int,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of a dense detector: per anchor, the one-hot class and the box deltas.

    Args:
        anchors: ``(A, 4)``.
        boxes: ``(N, M, 4)`` ground-truth boxes per image.
        classes: ``(N, M)`` their classes (0-based, no background).
        num_classes: size of the class output.
        iou_threshold: positive-match IoU (plus each object's best anchor).

    Returns:
        ``(cls (N, A, C), deltas (N, A, 4), positive (N, A))`` float32.
    """
    overlap = iou(anchors[None], boxes)  # (N, A, M)
    best_obj = overlap.argmax(axis=2)
    best_iou = overlap.max(axis=2)
    positive = best_iou >= iou_threshold
    n = len(boxes)
    best_anchor = overlap.argmax(axis=1)  # (N, M)
    for m in range(boxes.shape[1]):
        positive[np.arange(n), best_anchor[:, m]] = True
        best_obj[np.arange(n), best_anchor[:, m]] = m
    obj_cls = np.take_along_axis(classes, best_obj, axis=1)
    cls = np.zeros((n, len(anchors), num_classes), np.float32)
    rows, cols = np.nonzero(positive)
    cls[rows, cols, obj_cls[rows, cols]] = 1.0
    matched = np.take_along_axis(boxes, best_obj[..., None].repeat(4, axis=2), axis=1)
    deltas = encode(np.broadcast_to(anchors, matched.shape).reshape(-1, 4), matched.reshape(-1, 4))
    deltas = deltas.reshape(n, len(anchors), 4) * positive[..., None]
    return cls, deltas.astype(np.float32), positive.astype(np.float32)


class DecodeDetections(keras.layers.Layer):
    """``(bbox_regression, cls_logits) -> (N, A, 4 + 1 + C)``: xyxy boxes, objectness 1, sigmoid
    class probabilities (RetinaNet has no objectness; D-RISE then takes ``O = 1``)."""

    def __init__(self, anchors: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, np.float32)

    def call(self, box: Any, cls: Any) -> Any:
        boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
            anchors=keras.ops.convert_to_tensor(self.anchors),
            boxes_delta=box,
            anchor_format="xyxy",
            box_format="xyxy",
            encoded_format="center_xywh",
        )
        probs = keras.ops.sigmoid(cls)
        ones = keras.ops.ones_like(probs[..., :1])
        return keras.ops.concatenate([boxes, ones, probs], axis=-1)

    def compute_output_shape(self, box_shape: Any, cls_shape: Any) -> Any:
        return (*cls_shape[:-1], 5 + cls_shape[-1])


def detections_model(
    model: keras.Model,
    anchors: np.ndarray,
    *,
    box_output: str = "bbox_regression",
    class_output: str = "cls_logits",
) -> keras.Model:
    """A new model returning the decoded dense detections ``(N, A, 4 + 1 + C)`` of ``model``.

    For RetinaNet-style detectors (keras-hub's ``RetinaNetObjectDetector``, the shapes demo
    detector): the box deltas are decoded against ``anchors`` (``center_xywh``, as keras-hub's
    ``decode_predictions``), the class logits pass through a sigmoid, objectness is 1. No NMS.
    ``model`` is called as a layer (shared weights) and not modified.
    """
    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    out = model(inputs)
    if not isinstance(out, dict) or box_output not in out or class_output not in out:
        raise XaiValueError(
            f"`model` must return a dict with {box_output!r} and {class_output!r} (RetinaNet's "
            "raw outputs). Received outputs: "
            f"{list(out) if isinstance(out, dict) else type(out).__name__}."
        )
    detections = DecodeDetections(anchors, name="detections")(out[box_output], out[class_output])
    return keras.Model(inputs, detections, name=f"{model.name}_detections")


def retinanet_anchors(model: Any) -> np.ndarray:
    """The anchors of a keras-hub ``RetinaNetObjectDetector`` at its input size, ``(A, 4)`` xyxy,
    in the order of its ``cls_logits``/``bbox_regression`` outputs."""
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise XaiValueError(
            "retinanet_anchors needs a fixed input size; build the backbone with image_shape="
            f"(H, W, 3). Received input shape {shape}."
        )
    images = np.zeros((1, *shape), np.float32)
    per_level = model.anchor_generator(images)
    anchors = np.concatenate([np.asarray(v) for v in per_level.values()], axis=0)
    return np.asarray(
        _to_xyxy_format(anchors, model.anchor_generator.bounding_box_format), np.float32
    )


def detection_recall(
    model: keras.Model, images: np.ndarray, boxes: np.ndarray, classes: np.ndarray
) -> dict[str, float]:
    """Share of objects found: some anchor with class probability >= 0.5 for the right class whose
    decoded box has IoU >= 0.5 with the object (the shapes demo detector's metric)."""
    det = detections_model(model, shapes_anchors(images.shape[1])).predict(
        images.astype(np.float32), batch_size=100, verbose=0
    )
    found, correct_class = 0, 0
    total = boxes.shape[0] * boxes.shape[1]
    for i in range(len(images)):
        overlaps = iou(boxes[i], det[i, :, :4])  # (M, A)
        for m in range(boxes.shape[1]):
            good = (overlaps[m] >= 0.5) & (det[i, :, 5 + classes[i, m]] >= 0.5)
            found += bool(good.any())
            best = int(np.argmax(overlaps[m] * det[i, :, 5:].max(axis=1)))
            correct_class += int(det[i, best, 5:].argmax() == classes[i, m])
    return {
        "recall_iou50_p50": round(found / total, 4),
        "class_accuracy_best_anchor": round(correct_class / total, 4),
    }
