"""From raw attributions to display heatmaps: channel reduction, rectification, resize, normalise.

Rank-generic: maps are ``(N, *spatial)`` with 1, 2 or 3 spatial axes. This module owns resizing
(bilinear / trilinear with half-pixel centres, via ``tf.image.resize``) so that no other module
deals with OpenCV's ``(width, height)`` order for maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import tensorflow as tf

from .errors import bad_value

Reduce = Literal["sum", "mean", "abs_max", "abs_sum", "abs_mean", "none"]
Rectify = Literal["relu", "abs", "none"]


@dataclass(frozen=True)
class Display:
    """How a method's raw attributions become a heatmap (recorded in every Explanation).

    Attributes:
        reduce: how the channel axis of input-space attributions is reduced (``"none"`` when the
            raw map has no channel axis, as for CAMs).
        rectify: ``"relu"`` keeps positive evidence (CAMs), ``"abs"`` keeps magnitude (gradients).
        clip_percentile: values above this percentile of each map are clipped before normalising
            (gradients are spiky); None for no clipping.
    """

    reduce: Reduce = "none"
    rectify: Rectify = "relu"
    clip_percentile: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def reduce_channels(attributions: np.ndarray, axis: int, mode: Reduce) -> np.ndarray:
    """Collapse the channel ``axis`` of ``(N, ...)`` attributions with ``mode``."""
    a = np.asarray(attributions, dtype=np.float32)
    if mode == "none":
        return a
    if mode == "sum":
        return a.sum(axis=axis)
    if mode == "mean":
        return a.mean(axis=axis)
    if mode == "abs_max":
        return np.abs(a).max(axis=axis)
    if mode == "abs_sum":
        return np.abs(a).sum(axis=axis)
    if mode == "abs_mean":
        return np.abs(a).mean(axis=axis)
    raise bad_value(
        "reduce", "one of 'sum', 'mean', 'abs_max', 'abs_sum', 'abs_mean', 'none'", mode
    )


def rectify(maps: np.ndarray, mode: Rectify) -> np.ndarray:
    """Apply ``relu``/``abs``/``none`` to maps."""
    if mode == "relu":
        return np.maximum(maps, 0.0)
    if mode == "abs":
        return np.abs(maps)
    if mode == "none":
        return maps
    raise bad_value("rectify", "one of 'relu', 'abs', 'none'", mode)


def normalize(maps: np.ndarray, clip_percentile: float | None = None) -> np.ndarray:
    """Min-max normalise each map of ``(N, ...)`` to [0, 1]; constant maps become zeros.

    NaN/Inf never come out: non-finite inputs are treated as 0.
    """
    m = np.asarray(maps, dtype=np.float32)
    if not np.isfinite(m).all():  # one cheap pass; the copy only when needed
        m = np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)
    flat = m.reshape(len(m), -1)
    if clip_percentile is not None and flat.shape[1]:
        hi = np.percentile(flat, clip_percentile, axis=1, keepdims=True)
        flat = np.minimum(flat, hi)
    if flat.shape[1] == 0:
        return m.copy() if m is maps else m
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    scale = np.where(span > 0, 1.0 / np.where(span > 0, span, 1.0), 0.0)
    # in place on one new array: same float32 operations as (flat - lo) * scale, clipped
    out = np.subtract(flat, lo, dtype=np.float32)
    out *= scale
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape(m.shape)


def resize(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize ``(N, *spatial)`` maps to ``size`` (same number of spatial axes), bilinearly.

    1-D maps are resized as ``(N, L, 1)`` images, 3-D volumes separably (trilinear).
    """
    m = np.asarray(maps, dtype=np.float32)
    size = tuple(int(s) for s in size)
    rank = m.ndim - 1
    if rank != len(size):
        raise bad_value("size", f"{rank} spatial sizes for maps of shape {m.shape}", size)
    if m.shape[1:] == size:
        return m
    if rank == 1:
        out = tf.image.resize(m[:, :, None, None], (size[0], 1), method="bilinear")
        return out.numpy()[:, :, 0, 0]
    if rank == 2:
        return tf.image.resize(m[..., None], size, method="bilinear").numpy()[..., 0]
    if rank == 3:
        n, d, h, w = m.shape
        hw = tf.image.resize(m.reshape(n * d, h, w, 1), size[1:], method="bilinear")
        hw = tf.reshape(hw, (n, d, size[1] * size[2], 1))
        out = tf.image.resize(hw, (size[0], size[1] * size[2]), method="bilinear")
        return tf.reshape(out, (n, *size)).numpy()
    raise bad_value("maps", "maps with 1, 2 or 3 spatial axes", m)


def heatmap(
    maps: np.ndarray,
    size: Sequence[int],
    display: Display,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Raw attributions -> heatmap ``(N, *size)`` float32 in [0, 1].

    Args:
        maps: raw attributions ``(N, ...)``; with a channel axis when ``display.reduce`` is set.
        size: spatial size of the input the heatmap is drawn over.
        display: the method's display recipe.
        channel_axis: channel axis of ``maps``; None when the input has no channel axis (e.g.
            tabular features), in which case no reduction is applied.
    """
    m = np.asarray(maps, dtype=np.float32)
    if display.reduce != "none" and channel_axis is not None:
        m = reduce_channels(m, channel_axis, display.reduce)
    m = rectify(m, display.rectify)
    return normalize(resize(m, size), display.clip_percentile)


def fuse(heatmaps: Sequence[np.ndarray]) -> np.ndarray:
    """Fuse same-sized heatmaps of several layers: the mean of the normalised maps, renormalised."""
    return normalize(np.mean([normalize(h) for h in heatmaps], axis=0))
