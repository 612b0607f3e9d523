"""``TrainingTap``: logits and intermediate activations from one forward pass, for training loops.

A custom training step written with ``tf.GradientTape`` often wants more than the model's output:
a penalty on a feature map, a log of how sparse a layer is, a distillation loss on an inner layer.
Calling the model and then a second "feature extractor" doubles the cost, and a second forward pass
in training mode also updates BatchNormalization statistics twice and draws Dropout masks twice.

A :class:`TrainingTap` is built once from the user's model (a functional graph that reuses the
model's own layer objects and variables, nested backbones included; see :mod:`xai.taps`). Calling
it runs the network *once* and returns ``(logits, activations)``; gradients flow through both to
the model's variables, so the tape sees exactly the computation a plain step would.

Example::

    tap = xai.TrainingTap(model, layers=["conv1", "last_conv"])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits, acts = tap(x, training=True)
            loss = loss_fn(y, logits) + 1e-4 * tf.reduce_mean(tf.abs(acts["last_conv"]))
        grads = tape.gradient(loss, tap.trainable_variables)
        optimizer.apply_gradients(zip(grads, tap.trainable_variables))
        return loss, acts
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from .errors import bad_value
from .taps import Tap, check_graph_model, resolve_layers


class TrainingTap:
    """Logits and chosen activations of ``model`` from one forward pass, with gradients flowing.

    Args:
        model: a Functional or built Sequential Keras model. It is not modified; the tap shares its
            layers and variables, so training through the tap trains ``model``.
        layers: the layer path(s) whose outputs are returned (``"outer/inner"`` reaches into a
            nested model), ``"auto"`` (the Grad-CAM layer of each input) or ``"all"`` (every leaf
            layer).
        output: for a multi-output model, the output (index or name) whose logits are returned.

    Attributes:
        model: the tap, a functional ``keras.Model`` returning ``[logits, *activations]``.
        layers: the tapped layer paths, in the order of the activations.
        head: the final activation removed from the chosen output (``"softmax"``, ``"sigmoid"``,
            ``"linear"``, ...). With ``"softmax"`` use a loss with ``from_logits=True``: the
            result is the same as the model's probabilities with ``from_logits=False``.
        source: the user's model.

    Calling the tap: ``logits, activations = tap(inputs, training=...)`` where ``logits`` is the
    pre-softmax/sigmoid tensor ``(B, K)`` of the chosen output (a linear output as it is) and
    ``activations`` a dict ``{layer path: tensor}`` in the order of ``layers``. ``training`` is
    passed to every layer as in ``model(inputs, training=...)`` (BatchNormalization, Dropout).
    """

    def __init__(
        self,
        model: keras.Model,
        layers: str | Sequence[str],
        *,
        output: int | str | None = None,
    ) -> None:
        check_graph_model(model)
        if layers is None or not resolve_layers(model, layers):
            raise bad_value(
                "layers",
                "one or more layer paths, 'auto' or 'all'",
                layers,
                "For the logits alone, call xai.logits_model(model).",
            )
        tap = Tap.build(model, layers, output=output)
        self._tap = tap
        self.model: keras.Model = tap.model
        self.layers: tuple[str, ...] = tap.layers
        self.head: str = tap.head
        self.output: int = tap.output
        self.source: keras.Model = model

    @property
    def trainable_variables(self) -> list[Any]:
        """The user's model's trainable variables (the same objects the tap computes with).

        In the order of ``source.trainable_variables``, so an optimizer built for the model keeps
        working when the training step switches to the tap.
        """
        return self.source.trainable_variables

    @property
    def channel_axes(self) -> tuple[int, ...]:
        """The channel axis of each tapped activation (positive; the batch axis is 0)."""
        return self._tap.channel_axes

    def __call__(self, inputs: Any, *, training: bool | None = None) -> tuple[Any, dict[str, Any]]:
        """Run the model once: ``(logits, {layer path: activation})``.

        Args:
            inputs: what ``model`` takes (a batch; a list of batches for a multi-input model).
            training: passed on to the layers, as in ``model(inputs, training=training)``.
        """
        outs = self.model(inputs, training=training)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        return outs[0], dict(zip(self.layers, outs[1:]))

    def __repr__(self) -> str:
        return (
            f"TrainingTap(model={self.source.name!r}, layers={list(self.layers)}, "
            f"head={self.head!r})"
        )


__all__ = ["TrainingTap"]
