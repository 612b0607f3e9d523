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

from .errors import bad_type, bad_value

PREDICTED = -1
TargetSpec = None | str | int | Sequence[int] | np.ndarray | Callable[[Any], Any]


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
    """The model's own probabilities from its logits (None for a linear, unnormalised head)."""
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
