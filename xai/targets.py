"""Targets: which score of the model each explanation is about.

One normalised form leaves this module: a per-sample ``int32`` class-index array (``-1`` meaning
"the predicted class", resolved inside the compiled step), or a callable on the logits returning one
score per sample. Lengths are validated, never broadcast by accident.

For a single-logit sigmoid model (binary classifier) the class view is ``[-z, z]``: class 1 is the
logit ``z`` and class 0 is ``-z`` (``sigmoid(-z) = 1 - p``), so explaining the negative class gives
a real map instead of an empty one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from .dense_targets import (
    BoxSpec,
    DriseSpec,
    RegionSpec,
    StructuredTarget,
    TargetSpecs,
    resolve_spec,
)
from .errors import XaiValueError, bad_type, bad_value

PREDICTED = -1
TargetSpec = (
    None | str | int | Sequence[int] | np.ndarray | Callable[[Any], Any] | RegionSpec | BoxSpec
)


def is_binary(head: str, num_logits: int) -> bool:
    """True for a single-logit sigmoid model, explained as two classes ``[-z, z]``."""
    return head == "sigmoid" and num_logits == 1


def num_classes(head: str, num_logits: int) -> int:
    """Number of explainable classes of a head with ``num_logits`` logits."""
    return 2 if is_binary(head, num_logits) else num_logits


def class_logits(logits: tf.Tensor, head: str, num_logits: int) -> tf.Tensor:
    """The per-class logits ``(B, num_classes)`` as float32 (``[-z, z]`` for a binary head)."""
    logits = tf.cast(logits, tf.float32)
    if len(logits.shape) == 1:
        logits = logits[:, None]
    if is_binary(head, num_logits):
        return tf.concat([-logits, logits], axis=-1)
    return tf.reshape(logits, (tf.shape(logits)[0], -1))


def probabilities(logits: np.ndarray, head: str, num_logits: int) -> np.ndarray | None:
    """The model's own probabilities from its logits (None for a linear, unnormalised head, and
    for a dense output such as a segmentation map, whose per-pixel probabilities are not kept)."""
    if np.ndim(logits) > 2:
        return None
    z = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    if head == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    if head == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-z))
        return (
            np.concatenate([1 - p, p], axis=1).astype(np.float32)
            if z.shape[1] == 1
            else p.astype(np.float32)
        )
    return None


def class_probabilities(logits: np.ndarray, head: str, num_logits: int) -> np.ndarray:
    """Probabilities per class: the model's own, or a softmax of the logits for a linear head."""
    p = probabilities(logits, head, num_logits)
    return p if p is not None else probabilities(logits, "softmax", num_logits)  # type: ignore[return-value]


def resolve(
    targets: TargetSpec, n: int, head: str, num_logits: int
) -> np.ndarray | Callable[[Any], Any]:
    """Normalise ``targets`` for ``n`` samples.

    Args:
        targets: ``None`` or ``"predicted"`` (the top class of each sample), one ``int`` for every
            sample, a sequence/array of ``n`` ints, or a callable ``f(logits) -> (batch,)`` scores.
        n: number of samples.
        head: the model's final activation (see :func:`xai.heads.head_activation`).
        num_logits: size of the logits' last axis.

    Returns:
        ``int32`` array ``(n,)`` with ``-1`` for "predicted", or the callable itself.
    """
    k = num_classes(head, num_logits)
    if targets is None or (isinstance(targets, str) and targets == "predicted"):
        return np.full((n,), PREDICTED, dtype=np.int32)
    if callable(targets):
        return targets
    if isinstance(targets, str):
        raise bad_value(
            "targets",
            "None, 'predicted', a class index, a sequence of class indices or a callable",
            targets,
            "Use targets='predicted' for the top class of each image.",
        )
    if isinstance(targets, (bool, np.bool_)):
        raise bad_type("targets", "a class index (int), not a bool", targets)
    if isinstance(targets, (int, np.integer)):
        values = np.full((n,), int(targets), dtype=np.int64)
    else:
        try:
            values = np.asarray(targets)
        except Exception as exc:  # pragma: no cover - exotic sequences
            raise bad_type("targets", "a sequence of class indices", targets) from exc
        if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer)):
            raise bad_type(
                "targets",
                "an int, a 1-D sequence of ints, 'predicted' or a callable",
                targets,
            )
        if len(values) != n:
            raise bad_value(
                "targets",
                f"one class index per image ({n} images)",
                targets,
                f"Pass {n} indices, or a single int to explain the same class for every image.",
            )
    bad = (values < 0) | (values >= k)
    if bad.any():
        first = int(values[np.argmax(bad)])
        raise bad_value(
            "targets",
            f"class indices in [0, {k - 1}] (the model has {k} classes"
            + (
                ", a single sigmoid logit explained as classes 0 and 1"
                if is_binary(head, num_logits)
                else ""
            )
            + ")",
            first,
            "Check the class numbering of your labels.",
        )
    return values.astype(np.int32)


# --------------------------------------------------------------------------------------------
# Dense outputs: segmentation regions, detection boxes, D-RISE (see xai.dense_targets)
# --------------------------------------------------------------------------------------------


def region(class_index: int | Sequence[int], mask: Any = None) -> RegionSpec:
    """Explain the sum of one class's logits over a region of a segmentation output.

    For a model whose output is per-pixel logits ``(N, H', W', K)`` (a final softmax/sigmoid is
    removed, as for classifiers), the score is ``sum_p mask[p] * z[p, class_index]``.

    Args:
        class_index: the class, one int for every image or one per image.
        mask: the region: a boolean (or non-negative weight) array shaped like the input image
            ``(H, W)`` or like the output grid ``(H', W')``, one for every image or ``(N, H, W)``
            one per image; resized to the output grid (area averaging down, bilinear up). None:
            the pixels the model itself assigns to the class (argmax of the clean image's output,
            frozen: not differentiated through, and not moved by noise or perturbations).

    Returns:
        A target for ``xai.explain(..., targets=...)``, usable with every registered method.
    """
    return RegionSpec(class_index, mask)


def box(
    box: Sequence[float] | np.ndarray,
    class_index: int | Sequence[int],
    *,
    anchors: Any = None,
    iou_threshold: float = 0.5,
) -> BoxSpec:
    """Explain a detection box of a detector's raw, dense outputs (before non-max suppression).

    The score is the sum of the class logit ``class_index`` over the anchors that match ``box``:
    those whose IoU with it is at least ``iou_threshold`` (0.5, RetinaNet's positive-match rule),
    or, when none reaches it, the anchors of highest IoU (the "low-quality match" of Faster R-CNN
    and RetinaNet). Explain the class output (e.g. ``output="cls_logits"`` for keras-hub's
    RetinaNet, shape ``(N, anchors, classes)``).

    Args:
        box: ``(x0, y0, x1, y1)`` in input pixels (``x1``/``y1`` exclusive), or ``(N, 4)``, one
            per image.
        class_index: the class, one int or one per image.
        anchors: ``(A, 4)`` anchor boxes ``(x0, y0, x1, y1)`` in output order
            (:func:`xai.boxes.retinanet_anchors`, :func:`xai.boxes.shapes_anchors`).
        iou_threshold: IoU from which an anchor matches the box.
    """
    return BoxSpec(box, class_index, anchors, float(iou_threshold))


def drise(box: Sequence[float] | np.ndarray, class_index: Any) -> DriseSpec:
    """D-RISE target (Petsiuk et al., CVPR 2021) on decoded detections ``(N, D, 4 + 1 + C)``.

    The score of an image is ``max_j IoU(box, L_j) * O_j * cos(P_t, P_j)`` over the detections
    ``j`` (box ``L_j``, objectness ``O_j``, class probabilities ``P_j``), with ``P_t`` the one-hot
    vector of ``class_index`` (or a given probability vector). Meant for RISE and occlusion (it is
    differentiable too). :func:`xai.boxes.detections_model` builds such an output.
    """
    return DriseSpec(box, class_index)


def resolve_for_tap(targets: TargetSpec, n: int, tap: Any) -> Any:
    """:func:`resolve` with what the tap knows (output and input shapes): dense targets too.

    On a dense output (a segmentation map ``(N, H', W', K)``, per-anchor logits ``(N, A, K)``),
    a class index ``k`` means ``region(k)``; ``"predicted"`` has no single meaning there.
    """
    output_shape = tuple(tap.model.outputs[0].shape[1:])
    info = tap.input_layouts[0] if tap.input_layouts else None
    input_shape = tuple(tap.model.inputs[0].shape[1:])
    if info is not None and tap.data_format == "channels_first":
        input_shape = input_shape[1:]
    if isinstance(targets, TargetSpecs):
        return resolve_spec(
            targets,
            n,
            head=tap.head,
            num_logits=tap.num_logits,
            output_shape=output_shape,
            input_shape=input_shape,
        )
    if (
        len(output_shape) >= 2
        and not callable(targets)
        and not isinstance(targets, StructuredTarget)
    ):
        if targets is None or isinstance(targets, str):
            raise XaiValueError(
                "`targets` must name a class for a model with a dense output (shape (batch, "
                f"{', '.join(map(str, output_shape))})): there is no single predicted class. "
                f"Received: targets={targets!r}. Pass a class index (explained over the pixels "
                "the model assigns to it), xai.targets.region(k, mask) for a region, or a callable."
            )
        return resolve_spec(
            RegionSpec(targets),
            n,
            head=tap.head,
            num_logits=tap.num_logits,
            output_shape=output_shape,
            input_shape=input_shape,
        )
    return resolve(targets, n, tap.head, tap.num_logits)
