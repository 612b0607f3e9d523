"""The CAM family over one shared pipeline: a method is its channel-weighting rule.

Pipeline (per tapped layer, per batch): the engine returns activations ``A`` and gradients
``G = d score / d A`` (float32, channel axis ``c``); a *weight rule* ``(A, G, c) -> w`` gives weights
broadcastable to ``A``; the raw CAM is ``sum_c(w * A)`` (signed, at the layer's resolution). The
display heatmap applies ReLU, resizes to the input and min-max normalises (``postprocess``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..postprocess import Display
from .registry import Method, MethodResult, register

WeightRule = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def spatial_axes(ndim: int, channel_axis: int) -> tuple[int, ...]:
    """Axes of an ``ndim`` activation that are neither batch (0) nor channels."""
    return tuple(i for i in range(1, ndim) if i != channel_axis)


def gradcam_weights(activations: np.ndarray, gradients: np.ndarray, channel_axis: int) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., ICCV 2017): ``w_c = mean over space of dS/dA_c``."""
    return gradients.mean(axis=spatial_axes(gradients.ndim, channel_axis), keepdims=True)


def weighted_sum(activations: np.ndarray, weights: np.ndarray, channel_axis: int) -> np.ndarray:
    """``sum_c(w * A)``: the raw, signed CAM ``(B, *spatial)``."""
    return (weights * activations).sum(axis=channel_axis, dtype=np.float64).astype(np.float32)


def cam_compute(rule: WeightRule) -> Callable[..., MethodResult]:
    """The shared CAM ``compute`` for a weight rule."""

    def compute(engine: Any, inputs: list[np.ndarray], targets: Any) -> MethodResult:
        step = engine.gradients(inputs, targets, wrt="layers")
        maps = [
            weighted_sum(a, rule(a, g, axis), axis)
            for a, g, axis in zip(step.values, step.gradients, engine.tap.channel_axes)
        ]
        return MethodResult(maps=maps, logits=step.logits, targets=step.targets, scores=step.scores)

    return compute


CAM_DISPLAY = Display(reduce="none", rectify="relu")

register(
    Method(
        name="gradcam",
        compute=cam_compute(gradcam_weights),
        space="layer",
        stochastic=False,
        defaults={},
        display=CAM_DISPLAY,
        reference="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via "
        "Gradient-based Localization, ICCV 2017",
        summary="channel weights = spatial mean of the class-logit gradient",
    )
)
