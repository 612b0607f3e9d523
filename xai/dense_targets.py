"""Targets on dense outputs: a segmentation region, a detection box's anchors, a D-RISE detection.

A *structured target* is the third normalised form of ``targets`` (besides per-sample class
indices and callables): an object carrying per-sample arrays (a class index, a weight mask over the
output grid, a reference box...) that the engine feeds to its compiled step as tensors, so one
trace serves every batch and every mask. Its score is a pure function of ``(logits, *arrays)``.

* :class:`DenseTarget` (from :func:`xai.targets.region` and :func:`xai.targets.box`): for an output
  of per-position logits ``(B, *grid, K)`` (a segmentation map ``(B, H', W', K)``, or a detector's
  per-anchor class logits ``(B, A, K)``), the score of sample ``b`` is
  ``sum_p mask[b, p] * z[b, p, class[b]]``. For a region the mask is the user's (resized to the
  output grid) or, with ``mask=None``, the positions whose argmax is the class; that argmax is
  taken on the *clean* input and frozen (never differentiated through, and not moved by the noise
  of SmoothGrad, the path of integrated gradients or the masks of RISE/occlusion).
* :class:`DetectionTarget` (from :func:`xai.targets.drise`): for an output of decoded dense
  detections ``(B, D, 4 + 1 + C)`` (box ``x0, y0, x1, y1`` in pixels, objectness, ``C`` class
  probabilities; xplique's layout), the D-RISE similarity of Petsiuk et al. (CVPR 2021)::

      s(d_t, d_j) = IoU(L_t, L_j) * O_j * cos(P_t, P_j),   score = max_j s(d_t, d_j)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from .errors import XaiValueError, bad_type, bad_value

_EPS = 1e-9


class StructuredTarget:
    """Base of the targets whose per-sample data travel into the compiled step as tensors.

    Subclasses define ``key`` (what the compiled step depends on: never the data), ``arrays``
    (per-sample arrays, each ``(n, ...)``), ``classes`` (int32 ``(n,)``), ``score`` (traced) and
    ``record`` (a JSON-able description kept by the Explanation).
    """

    classes: np.ndarray
    arrays: tuple[np.ndarray, ...]

    @property
    def key(self) -> Hashable:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.classes)

    def with_arrays(self, classes: np.ndarray, arrays: tuple[np.ndarray, ...]) -> StructuredTarget:
        """A copy with other per-sample data (same structure)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def rows(self, rows: Any) -> StructuredTarget:
        """The target of the given sample rows (a slice, or indices, repeats allowed)."""
        return self.with_arrays(self.classes[rows], tuple(a[rows] for a in self.arrays))

    def __getitem__(self, rows: Any) -> StructuredTarget:
        return self.rows(rows)

    def freeze(self, logits: np.ndarray) -> StructuredTarget:
        """Resolve what depends on the clean input's logits (``mask=None``); default: itself."""
        return self

    def specs(self) -> list[tf.TensorSpec]:
        return [tf.TensorSpec((None, *a.shape[1:]), tf.float32) for a in self.arrays]

    def score(self, logits: tf.Tensor, classes: tf.Tensor, *arrays: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def scores_of(self, logits: np.ndarray) -> np.ndarray:
        """Eager scores ``(n,)`` float64 of a batch of (perturbed) outputs, one row per sample."""
        value = self.score(
            tf.constant(logits),
            tf.constant(self.classes),
            *(tf.constant(a, tf.float32) for a in self.arrays),
        )
        return np.asarray(value, np.float64)

    def record(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# Dense (region / anchors) targets
# --------------------------------------------------------------------------------------------


def dense_class_logits(logits: tf.Tensor, head: str, num_logits: int) -> tf.Tensor:
    """Per-position class logits ``(B, *grid, K)``; ``[-z, z]`` for a single-logit sigmoid map."""
    z = tf.cast(logits, tf.float32)
    if head == "sigmoid" and num_logits == 1:
        return tf.concat([-z, z], axis=-1)
    return z


@dataclass(frozen=True, eq=False)
class DenseTarget(StructuredTarget):
    """Sum of one class's logits over weighted output positions (see the module docstring).

    Attributes:
        classes: int32 ``(n,)`` class per sample.
        arrays: ``(mask,)``, float32 ``(n, *grid)`` weights; all ``-1`` means "the positions the
            model assigns to the class" (resolved per batch: frozen on the clean input).
        head, num_logits: the output's head (for the binary ``[-z, z]`` view).
        info: what the user asked for, recorded in the Explanation.
    """

    classes: np.ndarray
    arrays: tuple[np.ndarray, ...]
    head: str = "linear"
    num_logits: int = 1
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Hashable:
        return ("dense", self.head, self.num_logits, self.arrays[0].shape[1:])

    def with_arrays(self, classes: np.ndarray, arrays: tuple[np.ndarray, ...]) -> DenseTarget:
        return DenseTarget(classes, arrays, self.head, self.num_logits, self.info)

    def score(self, logits: tf.Tensor, classes: tf.Tensor, *arrays: tf.Tensor) -> tf.Tensor:
        z = dense_class_logits(logits, self.head, self.num_logits)
        k = tf.shape(z)[-1]
        onehot = tf.one_hot(classes, k, dtype=tf.float32)  # (B, K)
        grid_rank = len(z.shape) - 2
        onehot = tf.reshape(onehot, [-1] + [1] * grid_rank + [k])
        zk = tf.reduce_sum(z * onehot, axis=-1)  # (B, *grid)
        mask = arrays[0]
        # A mask of -1 (mask=None) means: the positions whose argmax is the class, frozen.
        predicted = tf.cast(
            tf.equal(tf.argmax(z, axis=-1, output_type=tf.int32), classes_grid(classes, grid_rank)),
            tf.float32,
        )
        mask = tf.where(mask < 0, tf.stop_gradient(predicted), mask)
        return tf.reduce_sum(zk * mask, axis=list(range(1, grid_rank + 1)))

    def freeze(self, logits: np.ndarray) -> DenseTarget:
        mask = self.arrays[0]
        auto = (mask < 0).reshape(len(mask), -1).any(axis=1)
        if not auto.any():
            return self
        z = dense_class_logits(tf.constant(logits), self.head, self.num_logits).numpy()
        grid_rank = z.ndim - 2
        classes = self.classes.reshape((-1,) + (1,) * grid_rank)
        predicted = (z.argmax(axis=-1) == classes).astype(np.float32)
        frozen = np.where(mask < 0, predicted, mask).astype(np.float32)
        return self.with_arrays(self.classes, (frozen,))

    def record(self) -> dict[str, Any]:
        return dict(self.info)


def classes_grid(classes: tf.Tensor, grid_rank: int) -> tf.Tensor:
    """``(B,)`` classes reshaped to broadcast against a ``(B, *grid)`` map."""
    return tf.reshape(classes, [-1] + [1] * grid_rank)


# --------------------------------------------------------------------------------------------
# D-RISE detection target
# --------------------------------------------------------------------------------------------


def iou_matrix(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """IoU of ``x0, y0, x1, y1`` boxes ``a (..., 4)`` against ``b (..., 4)`` (broadcast)."""
    x0 = tf.maximum(a[..., 0], b[..., 0])
    y0 = tf.maximum(a[..., 1], b[..., 1])
    x1 = tf.minimum(a[..., 2], b[..., 2])
    y1 = tf.minimum(a[..., 3], b[..., 3])
    inter = tf.maximum(x1 - x0, 0.0) * tf.maximum(y1 - y0, 0.0)
    area_a = tf.maximum(a[..., 2] - a[..., 0], 0.0) * tf.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = tf.maximum(b[..., 2] - b[..., 0], 0.0) * tf.maximum(b[..., 3] - b[..., 1], 0.0)
    return inter / tf.maximum(area_a + area_b - inter, _EPS)


@dataclass(frozen=True, eq=False)
class DetectionTarget(StructuredTarget):
    """D-RISE similarity to a target detection, max over the model's decoded detections.

    Attributes:
        classes: int32 ``(n,)`` the target class (argmax of the class vector).
        arrays: ``(boxes (n, 4), class_vectors (n, C))`` the target detection ``(L_t, P_t)``.
        info: what the user asked for, recorded in the Explanation.
    """

    classes: np.ndarray
    arrays: tuple[np.ndarray, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Hashable:
        return ("drise", self.arrays[1].shape[1:])

    def with_arrays(self, classes: np.ndarray, arrays: tuple[np.ndarray, ...]) -> DetectionTarget:
        return DetectionTarget(classes, arrays, self.info)

    def score(self, logits: tf.Tensor, classes: tf.Tensor, *arrays: tf.Tensor) -> tf.Tensor:
        return drise_similarity(tf.cast(logits, tf.float32), arrays[0], arrays[1])

    def record(self) -> dict[str, Any]:
        return dict(self.info)


def drise_similarity(detections: tf.Tensor, boxes: tf.Tensor, vectors: tf.Tensor) -> tf.Tensor:
    """D-RISE score ``max_j IoU(L_t, L_j) * O_j * cos(P_t, P_j)`` per sample.

    Args:
        detections: ``(B, D, 5 + C)``: ``x0, y0, x1, y1``, objectness, class probabilities.
        boxes: ``(B, 4)`` target boxes ``L_t``.
        vectors: ``(B, C)`` target class vectors ``P_t`` (one-hot for a class index).

    Returns:
        float32 ``(B,)``.
    """
    det_boxes, objectness, probs = detections[..., :4], detections[..., 4], detections[..., 5:]
    iou = iou_matrix(boxes[:, None, :], det_boxes)  # (B, D)
    dot = tf.reduce_sum(probs * vectors[:, None, :], axis=-1)
    norms = tf.norm(probs, axis=-1) * tf.norm(vectors, axis=-1)[:, None]
    cosine = dot / tf.maximum(norms, _EPS)
    similarity = iou * objectness * cosine
    # a degenerate detection (an overflowed box decoding: inf/NaN coordinates) matches nothing
    similarity = tf.where(tf.math.is_finite(similarity), similarity, tf.zeros_like(similarity))
    return tf.reduce_max(similarity, axis=-1)


# --------------------------------------------------------------------------------------------
# Specifications (what the user writes before the model is known) and their resolution
# --------------------------------------------------------------------------------------------


def _check_classes(name: str, class_index: Any) -> np.ndarray:
    if isinstance(class_index, (bool, np.bool_)):
        raise bad_type(name, "a class index (int), not a bool", class_index)
    values = np.asarray(class_index)
    if values.ndim > 1 or not np.issubdtype(values.dtype, np.integer):
        raise bad_type(name, "an int or a 1-D sequence of ints (one per image)", class_index)
    return values.astype(np.int64)


@dataclass(frozen=True, eq=False)
class RegionSpec:
    """What :func:`xai.targets.region` returns: resolved against the model by ``resolve``."""

    class_index: Any
    mask: Any = None


@dataclass(frozen=True, eq=False)
class BoxSpec:
    """What :func:`xai.targets.box` returns: resolved against the model by ``resolve``."""

    box: Any
    class_index: Any
    anchors: Any = None
    iou_threshold: float = 0.5


@dataclass(frozen=True, eq=False)
class DriseSpec:
    """What :func:`xai.targets.drise` returns: resolved against the model by ``resolve``."""

    box: Any
    class_index: Any


TargetSpecs = (RegionSpec, BoxSpec, DriseSpec)


def _per_sample(name: str, values: np.ndarray, n: int, sample_ndim: int) -> np.ndarray:
    """``values`` with a leading sample axis of ``n`` (one shared value is repeated)."""
    if values.ndim == sample_ndim:
        return np.broadcast_to(values, (n, *values.shape)).copy()
    if values.ndim == sample_ndim + 1:
        if len(values) != n:
            raise bad_value(
                name,
                f"one for all images or one per image ({n} images)",
                values,
                f"Pass a single one, or {n} stacked on a first axis.",
            )
        return values
    raise bad_value(
        name, f"{sample_ndim}-D for all images or {sample_ndim + 1}-D per image", values
    )


def _class_range(name: str, classes: np.ndarray, k: int, what: str) -> None:
    bad = (classes < 0) | (classes >= k)
    if bad.any():
        raise bad_value(
            name,
            f"class indices in [0, {k - 1}] ({what} has {k} classes)",
            int(classes.reshape(-1)[np.argmax(bad.reshape(-1))]),
            "Check the class numbering (is class 0 the background?).",
        )


def resolve_spec(
    spec: Any,
    n: int,
    *,
    head: str,
    num_logits: int,
    output_shape: Sequence[int | None],
    input_shape: Sequence[int | None],
) -> StructuredTarget:
    """Resolve a region/box/D-RISE specification for ``n`` samples of a model.

    Args:
        spec: a :class:`RegionSpec`, :class:`BoxSpec` or :class:`DriseSpec`.
        n: number of samples.
        head, num_logits: the explained output's head and last-axis size.
        output_shape: the explained output's shape without the batch axis.
        input_shape: the (first) model input's shape without the batch axis (channels last).
    """
    out = tuple(output_shape)
    if isinstance(spec, DriseSpec):
        return _resolve_drise(spec, n, out, input_shape)
    if len(out) < 2:
        kind = "region" if isinstance(spec, RegionSpec) else "box"
        fix = (
            "This model's output looks like a classifier's: use targets=<class index>."
            if len(out) == 1
            else ""
        )
        raise XaiValueError(
            f"A {kind} target needs a dense output (batch, *positions, classes), e.g. a "
            f"segmentation map (batch, H, W, classes) or per-anchor class logits (batch, anchors, "
            f"classes). Received: a model output of shape (batch, {', '.join(map(str, out))}). "
            + fix
        )
    grid = out[:-1]
    if any(d is None for d in grid):
        raise XaiValueError(
            f"A dense target needs a fixed output grid. Received: output shape {out}. Build the "
            "model with a fixed input size."
        )
    k = 2 if (head == "sigmoid" and num_logits == 1) else num_logits
    sizes = tuple(int(d) for d in grid if d is not None)  # all fixed: checked above
    output = _DenseOutput(sizes, k, head, num_logits, tuple(input_shape))
    if isinstance(spec, RegionSpec):
        return _resolve_region(spec, n, output)
    return _resolve_box(spec, n, output)


@dataclass(frozen=True)
class _DenseOutput:
    """What resolving a dense target needs to know about the explained output."""

    grid: tuple[int, ...]
    k: int  # explainable classes
    head: str
    num_logits: int
    input_shape: tuple[int | None, ...]


def _resolve_region(spec: RegionSpec, n: int, output: _DenseOutput) -> DenseTarget:
    grid, k, input_shape = output.grid, output.k, output.input_shape
    classes = _per_sample("class_index", _check_classes("class_index", spec.class_index), n, 0)
    _class_range("class_index", classes, k, "the model's output")
    if spec.mask is None:
        mask = np.full((n, *grid), -1.0, np.float32)
        source = "predicted"
    else:
        mask = _region_mask(spec.mask, n, grid, input_shape)
        source = "given"
    info = {"kind": "region", "class_index": classes.tolist(), "mask": source}
    return DenseTarget(classes.astype(np.int32), (mask,), output.head, output.num_logits, info)


def _region_mask(
    mask: Any, n: int, grid: tuple[int, ...], input_shape: Sequence[int | None]
) -> np.ndarray:
    try:
        m = np.asarray(mask)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise bad_type("mask", "an array", mask) from exc
    if m.dtype == object or not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
        raise bad_type("mask", "a boolean or numeric array", mask)
    m = m.astype(np.float32)
    if not np.isfinite(m).all() or (m < 0).any():
        raise bad_value("mask", "finite, non-negative weights (a boolean mask)", mask)
    rank = len(grid)
    spatial_in = tuple(input_shape[:rank])
    if m.ndim not in (rank, rank + 1):
        raise bad_value(
            "mask",
            f"{rank}-D {tuple(grid)} (one for all images) or {rank + 1}-D (N, ...) per image",
            mask,
        )
    sample = m.shape[-rank:]
    if sample != tuple(grid) and sample != spatial_in:
        raise bad_value(
            "mask",
            f"shaped like the input image {spatial_in} or the output grid {tuple(grid)}",
            mask,
            "Resize the mask to the image the model sees.",
        )
    m = _per_sample("mask", m, n, rank)
    if sample != tuple(grid):
        m = _resize_weights(m, grid)
    return m.astype(np.float32)


def _resize_weights(m: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """Resize ``(n, *spatial)`` weights to ``grid``: area averaging down, bilinear up."""
    if len(grid) != 2:
        from .postprocess import resize

        return resize(m, grid)
    down = grid[0] <= m.shape[1] and grid[1] <= m.shape[2]
    method = "area" if down else "bilinear"
    return tf.image.resize(m[..., None], grid, method=method).numpy()[..., 0]


def _check_boxes(name: str, box: Any, n: int, input_shape: Sequence[int | None]) -> np.ndarray:
    try:
        b = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise bad_type(name, "(x0, y0, x1, y1) numbers, or an (N, 4) array", box) from exc
    if b.shape[-1:] != (4,) or b.ndim not in (1, 2):
        raise bad_value(name, "(x0, y0, x1, y1) for all images, or (N, 4) per image", box)
    b = _per_sample(name, b, n, 1)
    h, w = (input_shape[0], input_shape[1]) if len(input_shape) >= 3 else (None, None)
    if not np.isfinite(b).all() or (b[:, 2] <= b[:, 0]).any() or (b[:, 3] <= b[:, 1]).any():
        raise bad_value(name, "finite boxes (x0, y0, x1, y1) with x0 < x1 and y0 < y1", box)
    if h is not None and w is not None:
        outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h)
        if outside.any():
            raise bad_value(
                name,
                f"a box inside the image: 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h} "
                "(x0, y0, x1, y1 in input pixels)",
                b[np.argmax(outside)].tolist(),
                "Clip the box to the image, or scale it to the size the model sees.",
            )
    return b


def _resolve_box(spec: BoxSpec, n: int, output: _DenseOutput) -> DenseTarget:
    grid, k, input_shape = output.grid, output.k, output.input_shape
    from .boxes import anchor_weights  # the box geometry lives in xai.boxes

    if spec.anchors is None:
        raise XaiValueError(
            "`anchors` must be given for a box target: the (A, 4) anchor boxes (x0, y0, x1, y1 "
            "in input pixels) of the detector's dense outputs, in output order. For keras-hub's "
            "RetinaNet use xai.boxes.retinanet_anchors(model); for the shapes demo detector "
            "xai.boxes.shapes_anchors()."
        )
    anchors = np.asarray(spec.anchors, np.float64).reshape(-1, 4)
    positions = int(np.prod(grid))
    if len(anchors) != positions:
        raise bad_value(
            "anchors",
            f"one anchor per output position ({positions} for an output grid {tuple(grid)})",
            anchors,
            "Pass the anchors of this model, at this input size, in the model's output order.",
        )
    boxes = _check_boxes("box", spec.box, n, input_shape)
    classes = _per_sample("class_index", _check_classes("class_index", spec.class_index), n, 0)
    _class_range("class_index", classes, k, "the detector's class output")
    weights = anchor_weights(anchors, boxes, spec.iou_threshold).reshape(n, *grid)
    info = {
        "kind": "box",
        "box": boxes.tolist(),
        "class_index": classes.tolist(),
        "iou_threshold": float(spec.iou_threshold),
        "matched_anchors": (weights.reshape(n, -1) > 0).sum(axis=1).tolist(),
    }
    return DenseTarget(
        classes.astype(np.int32),
        (weights.astype(np.float32),),
        output.head,
        output.num_logits,
        info,
    )


def _resolve_drise(
    spec: DriseSpec, n: int, out: tuple[Any, ...], input_shape: Sequence[int | None]
) -> DetectionTarget:
    if len(out) != 2 or out[-1] is None or out[-1] < 6:
        raise XaiValueError(
            "A D-RISE target needs an output of decoded detections (batch, detections, 4 + 1 + "
            "classes): x0, y0, x1, y1, objectness, class probabilities. Received: an output of "
            f"shape (batch, {', '.join(map(str, out))}). Wrap a RetinaNet-style detector with "
            "xai.boxes.detections_model(model, anchors)."
        )
    c = int(out[-1]) - 5
    boxes = _check_boxes("box", spec.box, n, input_shape)
    raw = np.asarray(spec.class_index)
    if raw.dtype.kind == "f":  # class probability vectors P_t
        vectors = _per_sample("class_index", raw.astype(np.float32), n, 1)
        if vectors.shape[1] != c:
            raise bad_value("class_index", f"a class vector of {c} probabilities", raw)
        classes = vectors.argmax(axis=1)
    else:
        classes = _per_sample("class_index", _check_classes("class_index", raw), n, 0)
        _class_range("class_index", classes, c, "the detections' class vector")
        vectors = np.eye(c, dtype=np.float32)[classes]
    info = {"kind": "drise", "box": boxes.tolist(), "class_index": classes.tolist()}
    return DetectionTarget(
        classes.astype(np.int32), (boxes.astype(np.float32), vectors.astype(np.float32)), info
    )
