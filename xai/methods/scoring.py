"""Scoring helpers shared by the forward-pass methods (occlusion, RISE, Score-CAM, Ablation-CAM,
integrated gradients, the noise wrapper): targets resolved on the clean input, the class-view score
of a perturbed batch, input layouts and chunking.

The score of a perturbed input is the class view of its logits (``xai.targets.class_logits``;
``[-z, z]`` for a single-logit sigmoid model, so class 0 of a binary model works), or the user's
target callable applied to its logits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from .. import _validation
from .. import targets as targets_mod
from ..dense_targets import StructuredTarget
from ..engine import Engine
from ..errors import XaiValueError


def callable_scores(targets: Any, logits: np.ndarray) -> np.ndarray:
    """``targets(logits)`` as float64 ``(n,)``, with the same error as the engine otherwise."""
    scores = np.asarray(targets(tf.constant(logits)), dtype=np.float64)
    if scores.shape != (len(logits),):
        raise XaiValueError(
            "`targets` callable must return one score per sample, shape (batch,). "
            f"Received: an array of shape {scores.shape} from logits of shape {logits.shape}. "
            "Reduce it, e.g. lambda z: z[:, 3] or lambda z: tf.reduce_sum(z[:, :, 0], axis=1)."
        )
    return scores


def clean_targets(engine: Engine, logits: np.ndarray, targets: Any) -> tuple[Any, np.ndarray]:
    """Resolve "predicted" targets and the target scores on the clean inputs' logits.

    A structured target is frozen here (``mask=None`` becomes the clean input's argmax region).
    """
    if isinstance(targets, StructuredTarget):
        frozen = targets.freeze(logits)
        return frozen, frozen.scores_of(logits).astype(np.float32)
    if callable(targets):
        return targets, callable_scores(targets, logits).astype(np.float32)
    z = targets_mod.class_logits(
        tf.constant(logits), engine.tap.head, engine.tap.num_logits
    ).numpy()
    resolved = np.where(targets < 0, z.argmax(axis=1), targets).astype(np.int32)
    return resolved, z[np.arange(len(z)), resolved].astype(np.float32)


def reported_targets(resolved: Any, n: int) -> np.ndarray:
    """The targets a MethodResult reports: the resolved classes, or -1 for a callable target."""
    if isinstance(resolved, StructuredTarget):
        return resolved.classes
    return np.full(n, -1, np.int32) if callable(resolved) else resolved


def channels_first(engine: Engine) -> bool:
    """Whether the explained model is ``channels_first`` (any of its layers says so)."""
    return bool(engine.tap.data_format == "channels_first")


def input_layout(
    sample_shape: Sequence[int], is_channels_first: bool
) -> tuple[tuple[int, ...], int | None]:
    """Spatial axes and channel axis (of the *batched* array) of an input of ``sample_shape``.

    A rank-1 sample (features) is all "spatial" with no channel axis; otherwise the channel axis is
    the last one, or the first for ``channels_first`` models.
    """
    rank = len(sample_shape)
    if rank <= 1:
        return (1,), None
    if is_channels_first:
        return tuple(range(2, rank + 1)), 1
    return tuple(range(1, rank)), rank


def expand_to_input(masks: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """``(n, *spatial)`` masks made broadcastable against ``(n, *input_shape)`` inputs."""
    return masks if channel_axis is None else np.expand_dims(masks, channel_axis)


def target_scores(engine: Engine, logits: np.ndarray, targets: Any) -> np.ndarray:
    """Score per row of ``logits``: the class-view logit of ``targets[row]``, or
    ``targets(logits)``.

    Args:
        engine: the engine (its tap knows the head, for the binary ``[-z, z]`` view).
        logits: float32 ``(n, K)``.
        targets: resolved class indices (int ``(n,)``, no ``-1``) or a callable on the logits.
    """
    if isinstance(targets, StructuredTarget):
        return targets.scores_of(logits)
    if callable(targets):
        return callable_scores(targets, logits)
    z = targets_mod.class_logits(
        tf.constant(logits), engine.tap.head, engine.tap.num_logits
    ).numpy()
    return z[np.arange(len(z)), np.asarray(targets)].astype(np.float64)


def rows_targets(targets: Any, rows: np.ndarray) -> Any:
    """The targets of the given sample rows (a callable is shared by every row)."""
    if isinstance(targets, StructuredTarget):
        return targets.rows(rows)
    return targets if callable(targets) else np.asarray(targets)[rows]


def forward_scores(engine: Engine, inputs: list[np.ndarray], targets: Any) -> np.ndarray:
    """One forward pass of a (perturbed) batch and the target score of each row, float64."""
    return target_scores(engine, engine.forward(inputs), targets)


check_positive_int = _validation.positive_int


def chunks(total: int, size: int) -> Iterator[slice]:
    """``slice``s of at most ``size`` covering ``range(total)``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))
