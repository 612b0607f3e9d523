"""Perturbation methods: occlusion and RISE.

Both methods only run forward passes: the score of a perturbed input is the class view of its
logits (``xai.targets.class_logits``; ``[-z, z]`` for a single-logit sigmoid model, so class 0 of a
binary model works), or the user's target callable applied to its logits. Perturbed inputs are
built and scored ``chunk_size`` at a time, so peak memory does not grow with the number of windows
or masks. Both return one map ``(B, *spatial)`` per model input (no channel axis: a window or a
mask covers every channel).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import bad_type, bad_value
from ..postprocess import Display, resize
from .registry import Method, MethodResult, register
from .scoring import (
    channels_first,
    check_positive_int,
    chunks,
    clean_targets,
    expand_to_input,
    forward_scores,
    input_layout,
    reported_targets,
    rows_targets,
)

PERTURBATION_DISPLAY = Display(reduce="none", rectify="relu")
RISE_DISPLAY = Display(reduce="none", rectify="none")


# --------------------------------------------------------------------------------------------
# Occlusion
# --------------------------------------------------------------------------------------------


def _per_axis(
    name: str, value: Any, size: Sequence[int], default: Sequence[int]
) -> tuple[int, ...]:
    if value is None:
        return tuple(default)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * len(size)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == len(size):
        values = tuple(value)
    else:
        raise bad_type(
            name,
            f"an int or a sequence of {len(size)} ints (one per spatial axis)",
            value,
        )
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise bad_value(name, "positive ints", value)
    return tuple(int(v) for v in values)


def occlusion_windows(
    size: Sequence[int], window: Any = None, stride: Any = None
) -> tuple[tuple[int, ...], list[tuple[slice, ...]]]:
    """Window size per axis and the list of windows (one slice per spatial axis).

    ``window=None`` is about 1/8 of each spatial size; ``stride=None`` is half the window. Windows
    start every ``stride`` along each axis, and a last window flush with the far edge is added, so
    every position is covered unless ``stride > window`` (uncovered positions get attribution 0).
    """
    win = _per_axis("window", window, size, [max(1, round(s / 8)) for s in size])
    win = tuple(min(w, s) for w, s in zip(win, size))
    st = _per_axis("stride", stride, size, [max(1, w // 2) for w in win])
    starts = []
    for s, w, step in zip(size, win, st):
        axis_starts = list(range(0, s - w + 1, step))
        if axis_starts[-1] != s - w:
            axis_starts.append(s - w)
        starts.append(axis_starts)
    windows = [
        tuple(slice(b, b + w) for b, w in zip(corner, win)) for corner in itertools.product(*starts)
    ]
    return win, windows


def occlusion_compute(
    engine: Engine,
    inputs: list[np.ndarray],
    targets: Any,
    *,
    window: Any,
    stride: Any,
    fill_value: float,
    chunk_size: int,
) -> MethodResult:
    """Occlusion (Zeiler & Fergus, ECCV 2014): the score drop when a window is hidden.

    Each window (all channels) is replaced by ``fill_value``; the attribution of a position is the
    mean of ``S(x) - S(x with the window occluded)`` over the windows that cover it.

    Args:
        engine: the engine.
        inputs: one float array per model input ``(B, ...)``.
        targets: int32 ``(B,)`` (``-1`` = predicted) or a callable on the logits.
        window: window size in positions, an int or one per spatial axis (None: ~1/8 of each size).
        stride: step between windows (None: half the window).
        fill_value: value the occluded positions take (in model-input units).
        chunk_size: occluded inputs per forward pass (memory knob).

    Returns:
        One float32 map ``(B, *spatial)`` per model input.
    """
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if (
        isinstance(fill_value, bool)
        or not isinstance(fill_value, (int, float, np.number))
        or not math.isfinite(fill_value)
    ):
        raise bad_value("fill_value", "a finite number (in model-input units)", fill_value)
    clean = [np.asarray(x, dtype=np.float32) for x in inputs]
    logits = engine.forward(clean)
    resolved, scores = clean_targets(engine, logits, targets)
    cf = channels_first(engine)
    n = len(clean[0])
    maps = []
    for j, x in enumerate(clean):
        sp_axes, _ = input_layout(x.shape[1:], cf)
        size = tuple(x.shape[a] for a in sp_axes)
        _, windows = occlusion_windows(size, window, stride)
        coverage = np.zeros(size, np.float64)
        for win in windows:
            coverage[win] += 1.0
        total = np.zeros((n, *size), np.float64)
        rows_b = np.repeat(np.arange(n), len(windows))
        rows_w = np.tile(np.arange(len(windows)), n)
        for sl in chunks(len(rows_b), chunk_size):
            bs, ws = rows_b[sl], rows_w[sl]
            occluded = x[bs].copy()
            for r, w in enumerate(ws):
                index: list[Any] = [r] + [slice(None)] * (x.ndim - 1)
                for axis, s in zip(sp_axes, windows[w]):
                    index[axis] = s
                occluded[tuple(index)] = fill_value
            batch = [occluded if k == j else other[bs] for k, other in enumerate(clean)]
            drop = scores[bs].astype(np.float64) - forward_scores(
                engine, batch, rows_targets(resolved, bs)
            )
            for r, (b, w) in enumerate(zip(bs, ws)):
                total[(b, *windows[w])] += drop[r]
        # positions no window covers (stride > window) get 0, not NaN
        covered = np.divide(total, coverage, out=np.zeros_like(total), where=coverage > 0)
        maps.append(covered.astype(np.float32))
    out_targets = reported_targets(resolved, n)
    return MethodResult(maps=maps, logits=logits, targets=out_targets, scores=scores)


register(
    Method(
        name="occlusion",
        compute=occlusion_compute,
        space="input",
        stochastic=False,
        defaults={"window": None, "stride": None, "fill_value": 0.0, "chunk_size": 64},
        display=PERTURBATION_DISPLAY,
        reference=(
            "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"
        ),
        summary="score drop when a sliding window is replaced by fill_value (windows batched)",
        family="perturbation",
        knobs=frozenset({"chunk_size"}),
    )
)


# --------------------------------------------------------------------------------------------
# RISE
# --------------------------------------------------------------------------------------------


def rise_masks(
    seed: int,
    first: int,
    count: int,
    size: Sequence[int],
    grid_size: int,
    keep_prob: float,
    input_index: int = 0,
) -> np.ndarray:
    """RISE masks ``first .. first+count-1``, float32 ``(count, *size)`` in [0, 1].

    Mask ``i`` is a pure function of ``(seed, input_index, i)``: a ``grid_size`` binary grid with
    ``P(1) = keep_prob``, upsampled bilinearly to ``(grid_size + 1) * cell`` positions per axis
    (``cell = ceil(size / grid_size)``) and cropped at a random shift in ``[0, cell)``.
    """
    rank = len(size)
    cells = [math.ceil(s / grid_size) for s in size]
    up = [(grid_size + 1) * c for c in cells]
    grids = np.empty((count, *([grid_size] * rank)), np.float32)
    shifts = np.empty((count, rank), np.int64)
    for k in range(count):
        rng = np.random.default_rng([int(seed) % (2**63), int(input_index), int(first + k)])
        grids[k] = rng.random([grid_size] * rank) < keep_prob
        shifts[k] = [rng.integers(0, c) for c in cells]
    big = resize(grids, up)
    out = np.empty((count, *size), np.float32)
    for k in range(count):
        window: tuple[Any, ...] = (k, *(slice(o, o + s) for o, s in zip(shifts[k], size)))
        out[k] = big[window]
    return out


def rise_compute(
    engine: Engine,
    inputs: list[np.ndarray],
    targets: Any,
    *,
    seed: int,
    num_masks: int,
    grid_size: int,
    keep_prob: float,
    chunk_size: int,
) -> MethodResult:
    """RISE (Petsiuk et al., BMVC 2018): score-weighted average of random masks.

    ``S_map = 1 / (N * p) * sum_i S(x * M_i) * M_i`` over ``N = num_masks`` smooth random masks
    ``M_i`` kept with probability ``p = keep_prob`` (see :func:`rise_masks`). The masks depend only
    on ``(seed, mask index)``, never on the batch, so results are batch invariant; they are built
    ``chunk_size // B`` at a time, so memory does not grow with ``num_masks``. The map is signed
    (the score is a logit), so its heatmap is min-max normalised without rectification.

    Args:
        engine: the engine.
        inputs: one float array per model input ``(B, ...)``.
        targets: int32 ``(B,)`` (``-1`` = predicted) or a callable on the logits.
        seed: seed of the masks.
        num_masks: number of random masks ``N``.
        grid_size: cells per spatial axis of the coarse binary grid.
        keep_prob: probability ``p`` that a grid cell is kept.
        chunk_size: masked inputs per forward pass (memory knob).

    Returns:
        One float32 map ``(B, *spatial)`` per model input.
    """
    num_masks = check_positive_int("num_masks", num_masks, "RISE uses 1000-8000 masks.")
    grid_size = check_positive_int("grid_size", grid_size, "7 or 8 is typical.")
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if (
        isinstance(keep_prob, bool)
        or not isinstance(keep_prob, (int, float, np.number))
        or not 0 < keep_prob <= 1
    ):
        raise bad_value("keep_prob", "a probability in (0, 1]", keep_prob, "0.5 is typical.")
    clean = [np.asarray(x, dtype=np.float32) for x in inputs]
    logits = engine.forward(clean)
    resolved, scores = clean_targets(engine, logits, targets)
    cf = channels_first(engine)
    n = len(clean[0])
    per_chunk = max(1, chunk_size // n)
    maps = []
    for j, x in enumerate(clean):
        sp_axes, ch_axis = input_layout(x.shape[1:], cf)
        size = tuple(x.shape[a] for a in sp_axes)
        total = np.zeros((n, *size), np.float64)
        for sl in chunks(num_masks, per_chunk):
            m = rise_masks(seed, sl.start, sl.stop - sl.start, size, grid_size, keep_prob, j)
            k = len(m)
            masked = (x[None] * expand_to_input(m, ch_axis)[:, None]).reshape(k * n, *x.shape[1:])
            rows = np.tile(np.arange(n), k)
            batch = [masked if o == j else other[rows] for o, other in enumerate(clean)]
            s = forward_scores(engine, batch, rows_targets(resolved, rows)).reshape(k, n)
            total += np.tensordot(s, m.astype(np.float64), axes=([0], [0]))
        maps.append((total / (num_masks * float(keep_prob))).astype(np.float32))
    out_targets = reported_targets(resolved, n)
    return MethodResult(maps=maps, logits=logits, targets=out_targets, scores=scores)


register(
    Method(
        name="rise",
        compute=rise_compute,
        space="input",
        stochastic=True,
        defaults={"num_masks": 1000, "grid_size": 7, "keep_prob": 0.5, "chunk_size": 64},
        display=RISE_DISPLAY,
        reference="Petsiuk, Das, Saenko, RISE: Randomized Input Sampling for Explanation of "
        "Black-box Models, BMVC 2018",
        summary="average of seeded random masks weighted by the masked-input score (batched)",
        family="perturbation",
        knobs=frozenset({"chunk_size"}),
    )
)
