"""The gradient family: attributions in input space from d(class logit)/d(input)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..postprocess import Display
from .registry import Method, MethodResult, register

GRADIENT_DISPLAY = Display(reduce="abs_max", rectify="abs", clip_percentile=99.5)


def saliency_compute(engine: Any, inputs: list[np.ndarray], targets: Any) -> MethodResult:
    """Vanilla gradient (Simonyan et al. 2014): the raw signed gradient of the target logit."""
    step = engine.gradients(inputs, targets, wrt="inputs")
    return MethodResult(maps=step.gradients, logits=step.logits, targets=step.targets, scores=step.scores)


register(
    Method(
        name="saliency",
        compute=saliency_compute,
        space="input",
        stochastic=False,
        defaults={},
        display=GRADIENT_DISPLAY,
        reference="Simonyan, Vedaldi, Zisserman, Deep Inside Convolutional Networks: Visualising "
        "Image Classification Models and Saliency Maps, ICLR workshop 2014",
        summary="gradient of the class logit w.r.t. the input (heatmap: max |g| over channels)",
    )
)
