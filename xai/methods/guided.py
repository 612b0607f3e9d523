"""Guided backpropagation and Guided Grad-CAM, on a rebuilt graph with a custom ReLU gradient.

Guided backpropagation (Springenberg et al., ICLR-W 2015) changes only the backward pass of every
ReLU: the gradient flows where the forward input was positive *and* the incoming gradient is
positive::

    dL/dx = dL/dy * [x > 0] * [dL/dy > 0]

The user's model is never touched. The model is replayed into a new graph (``Tap.build(...,
hook=guided_relu_hook)``) on the same layer objects, where each ReLU becomes a :class:`GuidedReLU`
layer (same forward values, guided gradient): ``ReLU`` layers (``max_value``, ``threshold`` and
``negative_slope`` respected), ``Activation("relu" | "relu6")`` layers, and ``relu``/``relu6``
fused into a ``Dense`` or convolution (re-applied without it by ``heads.PreActivation``, then a
``GuidedReLU``). Other activations keep their ordinary gradient; a fused ReLU in a layer that
``PreActivation`` cannot unfuse (``DepthwiseConv2D``, ``SeparableConv2D``) is reported with a
warning. The guided engine is built once per engine and reused.

Guided Grad-CAM (Selvaraju et al., ICCV 2017) is the element-wise product of guided
backpropagation with the Grad-CAM map (after ReLU) upsampled bilinearly to the input.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..engine import Engine
from ..errors import ModelStructureError, XaiValueError
from ..heads import PreActivation, _is_conv
from ..postprocess import resize
from ..taps import Tap
from .cam import gradcam_weights, reused_targets, weighted_sum
from .gradient import GRADIENT_DISPLAY
from .registry import Method, MethodResult, register
from .scoring import channels_first, expand_to_input, input_layout

log = logging.getLogger(__name__)

_RELU_ACTIVATIONS = {"relu": None, "relu6": 6.0}


class GuidedReLU(keras.layers.Layer):
    """``relu`` in the forward pass; guided gradient ``g * relu'(x) * [g > 0]`` in the backward
    pass.

    Args:
        max_value: saturation value (6 for ReLU6), or None.
        negative_slope: slope below ``threshold`` (0 for a plain ReLU).
        threshold: the ReLU threshold.
    """

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)

    def call(self, inputs: Any) -> Any:
        max_value, slope, threshold = self.max_value, self.negative_slope, self.threshold

        @tf.custom_gradient
        def guided(x: tf.Tensor) -> Any:
            y = keras.activations.relu(
                x, negative_slope=slope, max_value=max_value, threshold=threshold
            )

            def grad(upstream: tf.Tensor) -> tf.Tensor:
                local = tf.where(
                    x > threshold, tf.ones_like(x), tf.fill(tf.shape(x), tf.cast(slope, x.dtype))
                )
                if max_value is not None:
                    local = tf.where(x >= max_value, tf.zeros_like(x), local)
                return upstream * local * tf.cast(upstream > 0, upstream.dtype)

            return y, grad

        return guided(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }


def _activation_name(layer: Any) -> str | None:
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", None) if fn is not None else None


def guided_relu_hook(layer: keras.layers.Layer, path: str, args: tuple, kwargs: dict) -> Any:
    """Layer hook for ``Tap.build``: replace each ReLU by a :class:`GuidedReLU` (see module doc)."""
    if isinstance(layer, keras.layers.ReLU):
        guided = GuidedReLU(
            layer.max_value, layer.negative_slope, layer.threshold, name=f"{layer.name}_guided"
        )
        return guided(args[0])
    name = _activation_name(layer)
    if name in _RELU_ACTIVATIONS:
        guided = GuidedReLU(_RELU_ACTIVATIONS[name], name=f"{layer.name}_guided")
        if type(layer) is keras.layers.Activation:
            return guided(args[0])
        if isinstance(layer, keras.layers.Dense) or _is_conv(layer):
            return guided(PreActivation(layer)(args[0]))
        log.warning(
            "xai: guided backprop keeps the ordinary gradient of the fused %s in layer %r (%s): "
            "it cannot be separated from that layer type.",
            name,
            path,
            type(layer).__name__,
        )
    return layer(*args, **kwargs)


def _build_guided(engine: Engine) -> Engine:
    tap = engine.tap
    if tap.source is None:
        raise ModelStructureError("guided backprop needs the model, which has been deleted.")
    guided_tap = Tap.build(tap.source, None, output=tap.output, hook=guided_relu_hook)
    return Engine(guided_tap, engine.jit_compile)


def guided_engine(engine: Engine) -> Engine:
    """The guided-backprop engine for ``engine``'s model (built once, kept by ``engine``)."""
    return engine.derived(("guided",), _build_guided)


def guided_backprop_compute(engine: Engine, inputs: list[np.ndarray], targets: Any) -> MethodResult:
    """Guided backpropagation: the input gradient of the target logit through guided ReLUs.

    Returns:
        Signed float32 ``(B, *input_shape)`` per model input.
    """
    step = guided_engine(engine).gradients(inputs, targets, wrt="inputs")
    return MethodResult(
        maps=step.gradients, logits=step.logits, targets=step.targets, scores=step.scores
    )


def guided_gradcam_compute(engine: Engine, inputs: list[np.ndarray], targets: Any) -> MethodResult:
    """Guided Grad-CAM: ``guided_backprop(x) * upsample(ReLU(Grad-CAM))``, per tapped layer.

    Returns:
        One signed float32 ``(B, *input_shape)`` map per tapped layer (over the model input that
        layer belongs to).
    """
    owners = [0 if o is None else int(o) for o in engine.tap.layer_inputs]
    if len(set(owners)) != len(owners):
        raise XaiValueError(
            "guided_gradcam takes one layer per model input; received layers "
            f"{list(engine.tap.layers)}, several of which belong to the same input. Pass a single "
            "layer (layer='name'), or fuse several layers with a CAM method (method='gradcam')."
        )
    step = engine.gradients(inputs, targets, wrt="layers")
    guided = guided_engine(engine).gradients(inputs, reused_targets(targets, step), wrt="inputs")
    cf = channels_first(engine)
    maps = []
    for i, (a, g, axis) in enumerate(zip(step.values, step.gradients, engine.tap.channel_axes)):
        owner = engine.tap.layer_inputs[i]
        j = 0 if owner is None else int(owner)
        gb = guided.gradients[j]
        sp_axes, ch_axis = input_layout(gb.shape[1:], cf)
        cam = np.maximum(weighted_sum(a, gradcam_weights(a, g, axis), axis), 0.0)
        up = resize(cam, tuple(gb.shape[k] for k in sp_axes))
        maps.append((gb * expand_to_input(up, ch_axis)).astype(np.float32))
    return MethodResult(maps=maps, logits=step.logits, targets=step.targets, scores=step.scores)


register(
    Method(
        name="guided_backprop",
        compute=guided_backprop_compute,
        space="input",
        stochastic=False,
        defaults={},
        display=GRADIENT_DISPLAY,
        reference="Springenberg et al., Striving for Simplicity: The All Convolutional Net, "
        "ICLR workshop 2015",
        summary="input gradient through ReLUs that pass only positive gradients (rebuilt graph)",
        family="gradient",
    )
)
register(
    Method(
        name="guided_gradcam",
        compute=guided_gradcam_compute,
        space="input",
        stochastic=False,
        defaults={},
        display=GRADIENT_DISPLAY,
        reference="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via "
        "Gradient-based Localization, ICCV 2017",
        summary="guided backprop x upsampled Grad-CAM (needs a layer)",
        family="gradient",
        needs_layer=True,
    )
)
