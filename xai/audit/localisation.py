"""Localisation metrics: does a heatmap fall on the object's ground-truth mask?

* Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016): a hit
  when the heatmap's maximum lies inside the mask (within ``tolerance`` pixels).
* Energy inside the mask (the energy-based pointing game of Score-CAM, Wang et al. CVPRW 2020):
  the fraction of the heatmap's total mass that lies inside the mask.
* IoU of the thresholded heatmap with the mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import bad_value


def _check(heatmaps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(heatmaps, dtype=np.float32)
    m = np.asarray(masks).astype(bool)
    if h.ndim != 3:
        raise bad_value("heatmaps", "an array (N, H, W)", h)
    if m.shape != h.shape:
        raise bad_value("masks", f"boolean masks of the heatmaps' shape {h.shape}", m)
    return h, m


def pointing_game(heatmaps: np.ndarray, masks: np.ndarray, *, tolerance: int = 0) -> np.ndarray:
    """Per image: True when the heatmap's maximum lies inside the (dilated) mask.

    Ties count as a hit when any maximal pixel is inside. An all-zero heatmap (no evidence) is a
    miss. An empty mask is a miss.

    Args:
        heatmaps: ``(N, H, W)`` heatmaps.
        masks: ``(N, H, W)`` boolean ground-truth masks.
        tolerance: dilate each mask by this many pixels (the original paper uses 15 at 224 px).

    Returns:
        bool ``(N,)``.
    """
    h, m = _check(heatmaps, masks)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise bad_value("tolerance", "an int >= 0 (pixels)", tolerance)
    if tolerance:
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1)
        )
        m = np.stack([cv2.dilate(x.astype(np.uint8), kernel).astype(bool) for x in m])
    peak = h.reshape(len(h), -1).max(axis=1)
    at_peak = h == peak[:, None, None]
    hits = (at_peak & m).reshape(len(h), -1).any(axis=1)
    return hits & (peak > 0)


def energy_inside(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image: the fraction of the heatmap's mass inside the mask (0 for an all-zero heatmap)."""
    h, m = _check(heatmaps, masks)
    h = np.maximum(h, 0)
    total = h.reshape(len(h), -1).sum(axis=1)
    inside = (h * m).reshape(len(h), -1).sum(axis=1)
    return np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0).astype(np.float32)


def iou(heatmaps: np.ndarray, masks: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Per image: intersection over union of ``heatmap >= threshold`` and the mask (0 if both
    are empty)."""
    h, m = _check(heatmaps, masks)
    on = h >= threshold
    inter = (on & m).reshape(len(h), -1).sum(1)
    union = (on | m).reshape(len(h), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)
