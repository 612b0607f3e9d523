"""Faithfulness: deletion and insertion curves (Petsiuk, Das, Saenko, "RISE", BMVC 2018).

Pixels are ranked by the heatmap, most important first (ties broken by a seeded random order).

* **Deletion**: starting from the image, the top ``k/K`` of the pixels are replaced by a constant
  (0 or the image's mean colour), ``k = 0..K``; the class probability should fall fast, so a
  *lower* area under the curve is better.
* **Insertion**: starting from a blurred copy of the image, the top ``k/K`` of the original pixels
  are put back; the probability should rise fast, so a *higher* area is better.

The area is the trapezoid rule over ``x = k/K`` on [0, 1]. The probability is the softmax of the
class logits (the model's own probabilities for softmax/sigmoid heads, a softmax of the logits for
a linear head). All ``K + 1`` step images of a chunk of images go through the model in one batch.
A random baseline ranks the pixels by seeded random heatmaps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np

from ..errors import bad_value

Probability = Callable[[np.ndarray], np.ndarray]  # images (B, H, W, C) -> probabilities (B, K)


def auc(curves: np.ndarray) -> np.ndarray:
    """Trapezoid area under curves sampled at ``k/K``, ``k = 0..K``: ``(N, K+1) -> (N,)``."""
    y = np.asarray(curves, np.float64)
    if y.ndim != 2 or y.shape[1] < 2:
        raise bad_value("curves", "an array (N, K+1) with K >= 1", y)
    steps = y.shape[1] - 1
    return ((y[:, :-1] + y[:, 1:]).sum(axis=1) / (2.0 * steps)).astype(np.float32)


def pixel_ranks(heatmaps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of every pixel (0 = most important), ``(N, H, W)`` int; ties in random order."""
    h = np.asarray(heatmaps, np.float32)
    n = len(h)
    flat = h.reshape(n, -1)
    ranks = np.empty(flat.shape, np.int64)
    for i in range(n):
        jitter = rng.permutation(flat.shape[1])
        order = np.lexsort((jitter, -flat[i]))  # primary: heat descending; secondary: random
        ranks[i, order] = np.arange(flat.shape[1])
    return ranks.reshape(h.shape)


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blurred copies of ``images`` ``(N, H, W, C)`` (float32), the insertion start."""
    x = np.asarray(images, np.float32)
    return np.stack([cv2.GaussianBlur(img, (0, 0), sigma).reshape(img.shape) for img in x])


def curves(
    probability: Probability,
    images: np.ndarray,
    heatmaps: np.ndarray,
    targets: np.ndarray,
    *,
    mode: Literal["deletion", "insertion"],
    num_steps: int = 16,
    baseline: Literal["zero", "mean"] = "zero",
    blur_sigma: float | None = None,
    chunk_size: int = 16,
    seed: int = 0,
) -> np.ndarray:
    """Deletion or insertion curves: probability of ``targets`` after each step.

    Args:
        probability: ``f(images) -> (B, num_classes)`` probabilities (batched model call).
        images: ``(N, H, W, C)`` model-ready images (their own range, e.g. 0-255).
        heatmaps: ``(N, H, W)`` pixel importance (higher = more important).
        targets: ``(N,)`` class whose probability is tracked.
        mode: ``"deletion"`` or ``"insertion"``.
        num_steps: K, the number of steps (K + 1 points including the start).
        baseline: deletion's replacement value: ``"zero"`` or the image's ``"mean"`` colour.
        blur_sigma: insertion's Gaussian blur sigma in pixels (None: image side / 8).
        chunk_size: images per model batch (each contributes K + 1 step images).
        seed: seed of the random tie-breaking.

    Returns:
        float32 ``(N, K + 1)``.
    """
    if mode not in ("deletion", "insertion"):
        raise bad_value("mode", "'deletion' or 'insertion'", mode)
    if baseline not in ("zero", "mean"):
        raise bad_value("baseline", "'zero' or 'mean'", baseline)
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise bad_value("num_steps", "an int >= 1", num_steps)
    x = np.asarray(images, np.float32)
    h = np.asarray(heatmaps, np.float32)
    if x.ndim != 4 or h.shape != x.shape[:3]:
        raise bad_value("heatmaps", f"an array (N, H, W) matching images {x.shape}", h)
    t = np.asarray(targets, np.int64)
    n, height, width = h.shape
    ranks = pixel_ranks(h, np.random.default_rng(seed))
    counts = np.round(np.linspace(0, height * width, num_steps + 1)).astype(np.int64)
    sigma = float(blur_sigma) if blur_sigma is not None else max(height, width) / 8.0
    out = np.empty((n, num_steps + 1), np.float32)
    for start in range(0, n, int(chunk_size)):
        sl = slice(start, start + int(chunk_size))
        xc, rc = x[sl], ranks[sl]
        # changed[b, k] = the top counts[k] pixels of image b
        changed = rc[:, None] < counts[None, :, None, None]  # (B, K+1, H, W)
        if mode == "deletion":
            if baseline == "zero":
                other = np.zeros_like(xc)
            else:
                other = np.broadcast_to(xc.mean(axis=(1, 2), keepdims=True), xc.shape)
            steps = np.where(changed[..., None], other[:, None], xc[:, None])
        else:
            other = blur(xc, sigma)
            steps = np.where(changed[..., None], xc[:, None], other[:, None])
        b = len(xc)
        p = probability(steps.reshape(b * (num_steps + 1), *xc.shape[1:]))
        p = p.reshape(b, num_steps + 1, -1)
        out[sl] = p[np.arange(b), :, t[sl]]
    return out


__all__ = ["auc", "blur", "curves", "pixel_ranks"]
