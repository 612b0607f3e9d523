"""The head of an explained output: which operation produces it, and its pre-activation.

A final softmax/sigmoid is skipped (``Softmax``/``Activation`` layers) or linearised (a
``Dense``/``Conv`` with a fused activation is re-applied without it by :class:`PreActivation`,
which reads the layer's own variables). Never ``log(p)``: it shifts per sample.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .errors import ModelStructureError
from .graph import is_nested_model

_PROBABILITY_HEADS = ("softmax", "sigmoid", "log_softmax")


def _activation_name(fn: Any) -> str:
    if fn is None:
        return "linear"
    return getattr(fn, "__name__", type(fn).__name__)


def _producer(model: keras.Model, output_index: int) -> keras.layers.Layer:
    if isinstance(model, keras.Sequential):
        return model.layers[-1]
    return model.outputs[output_index]._keras_history.operation


def head_activation(model: keras.Model, output_index: int = 0) -> str:
    """Name of the final activation of one output: ``softmax``, ``sigmoid``, ``linear``, ...

    Descends into a nested model when the output is produced by one.
    """
    layer = _producer(model, output_index)
    if is_nested_model(layer):
        return head_activation(layer, 0)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    return _activation_name(getattr(layer, "activation", None))


class PreActivation(keras.layers.Layer):
    """Applies a user's ``Dense`` or convolution layer *without* its activation.

    It reads the wrapped layer's own variables (no copies) and never modifies the layer.
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs: Any) -> None:
        super().__init__(name=f"{layer.name}_preactivation", **kwargs)
        self.wrapped = layer

    def call(self, inputs: Any) -> Any:
        layer = self.wrapped
        if isinstance(layer, keras.layers.Dense):
            z = ops.matmul(inputs, layer.kernel)
            return z if layer.bias is None else ops.add(z, layer.bias)
        z = layer.convolution_op(inputs, layer.kernel)
        if not layer.use_bias:
            return z
        if layer.data_format == "channels_last":
            shape = (1,) * (layer.rank + 1) + (layer.filters,)
        else:
            shape = (1, layer.filters) + (1,) * layer.rank
        return ops.add(z, ops.reshape(layer.bias, shape))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.wrapped.compute_output_shape(input_shape)


def _is_conv(layer: Any) -> bool:
    return (
        hasattr(layer, "convolution_op")
        and hasattr(layer, "kernel")
        and not isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D))
    )


def _pre_activation_call(layer: keras.layers.Layer, args: tuple, kwargs: dict) -> Any:
    """Call ``layer`` on its replayed arguments; return the tensor before its final activation."""
    if isinstance(layer, keras.layers.Softmax) or (type(layer) is keras.layers.Activation):
        return args[0]
    if isinstance(layer, keras.layers.Dense) or _is_conv(layer):
        return PreActivation(layer)(args[0])
    raise ModelStructureError(
        f"The model's output is produced by layer {layer.name!r} ({type(layer).__name__}) with "
        f"activation {_activation_name(getattr(layer, 'activation', None))!r} fused in; xai can "
        "remove a fused activation only from Dense and Conv layers. Build the model with the "
        "activation as its own layer (keras.layers.Activation / Softmax) so the logits are "
        "reachable."
    )
