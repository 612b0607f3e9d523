"""The gradient family: attributions in input space from d(class logit)/d(input).

Integrated gradients (``integrated.py``) and guided backpropagation (``guided.py``) have their own
modules; the noise wrapper (``smooth.py``) turns any of them into SmoothGrad-style methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import Engine
from ..postprocess import Display
from .registry import Method, MethodResult, register

GRADIENT_DISPLAY = Display(reduce="abs_max", rectify="abs", clip_percentile=99.5)
# Signed products (gradient x input, integrated gradients): sum of |a| over channels (as PAIR's
# VisualizeImageGrayscale), clipped at the 99.5th percentile.
PRODUCT_DISPLAY = Display(reduce="abs_sum", rectify="abs", clip_percentile=99.5)


def saliency_compute(engine: Engine, inputs: list[np.ndarray], targets: Any) -> MethodResult:
    """Vanilla gradient (Simonyan et al. 2014): the raw signed gradient ``dS/dx`` of the logit."""
    step = engine.gradients(inputs, targets, wrt="inputs")
    return MethodResult(
        maps=step.gradients, logits=step.logits, targets=step.targets, scores=step.scores
    )


def gradient_x_input_compute(
    engine: Engine, inputs: list[np.ndarray], targets: Any
) -> MethodResult:
    """Gradient x input (Shrikumar et al. 2016): ``x * dS/dx``, element-wise and signed.

    For a linear model ``S = w.x + b`` it is each feature's contribution ``w_i x_i``.
    """
    step = engine.gradients(inputs, targets, wrt="inputs")
    maps = [(v * g).astype(np.float32) for v, g in zip(step.values, step.gradients)]
    return MethodResult(maps=maps, logits=step.logits, targets=step.targets, scores=step.scores)


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
        family="gradient",
    )
)
register(
    Method(
        name="gradient_x_input",
        compute=gradient_x_input_compute,
        space="input",
        stochastic=False,
        defaults={},
        display=PRODUCT_DISPLAY,
        reference="Shrikumar et al., Not Just a Black Box: Learning Important Features Through "
        "Propagating Activation Differences, arXiv:1605.01713, 2016",
        summary="input x gradient of the class logit, element-wise",
        family="gradient",
    )
)
