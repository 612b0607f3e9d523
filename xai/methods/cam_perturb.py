"""CAM variants whose channel weights come from forward passes: Score-CAM and Ablation-CAM.

They are weight rules over the shared CAM pipeline (``cam.py``): the pipeline taps the layer and
computes ``sum_c(w_c * A_c)``; these rules compute ``w`` from batched, chunked forward passes.

* Score-CAM masks the *input* with each normalised, upsampled activation channel and scores it
  with the ordinary forward pass of the model (``Engine.forward``).
* Ablation-CAM zeroes one activation channel at a time. It needs the part of the network *after*
  the tapped layer. That part is built once per engine by replaying the user's model with a layer
  hook (``taps._rebuild(hook=...)``) that replaces the tapped layer's output by a new input tensor:
  the replayed graph maps ``(inputs, A) -> logits``. Keras keeps only the ops the logits depend
  on, so the upstream layers are not run at all. When the logits depend on the images only through
  ``A`` (the usual CNN head) the head is ``A -> logits`` and the images are not passed; layers that
  bypass the tapped layer (skip connections from earlier layers) or a nested model around it still
  read the images, which are then passed too. Nested models work: the hook is applied inside the
  rebuilt nested model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..engine import Engine
from ..errors import ModelStructureError
from ..inspection import _input_dependencies, get_layer
from ..postprocess import normalize, resize
from ..taps import _rebuild
from .cam import CamContext, register_cam
from .scoring import (
    channels_first,
    check_positive_int,
    chunks,
    expand_to_input,
    forward_scores,
    input_layout,
    rows_targets,
    target_scores,
)


def _layer_input(context: CamContext) -> int:
    owner = context.engine.tap.layer_inputs[context.layer_index]
    return 0 if owner is None else int(owner)


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (float64); ``-inf`` entries get weight 0."""
    s = np.asarray(scores, np.float64)
    top = np.max(s, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(s - top)
    total = e.sum(axis=axis, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def top_variance_channels(channel_first_maps: np.ndarray, max_channels: int | None) -> np.ndarray:
    """Per sample, the indices of the ``max_channels`` channels with the largest spatial variance.

    Args:
        channel_first_maps: ``(B, C, *spatial)`` activations.
        max_channels: how many to keep; None keeps all (in channel order).

    Returns:
        int ``(B, k)``, sorted by channel index.
    """
    b, c = channel_first_maps.shape[:2]
    if max_channels is None or max_channels >= c:
        return np.tile(np.arange(c), (b, 1))
    var = channel_first_maps.reshape(b, c, -1).astype(np.float64).var(axis=2)
    order = np.argsort(-var, axis=1, kind="stable")[:, :max_channels]
    return np.sort(order, axis=1)


def scorecam_weights(
    activations: np.ndarray,
    gradients: np.ndarray,
    channel_axis: int,
    *,
    context: CamContext,
    max_channels: int | None,
    chunk_size: int,
) -> np.ndarray:
    """Score-CAM (Wang et al., CVPR-W 2020): softmax over the scores of the masked inputs.

    For each channel ``k``, the activation map is upsampled to the input size and min-max
    normalised to ``H_k`` in [0, 1] (a constant map gives ``H_k = 0``); the input is masked,
    ``x * H_k``, and scored, ``s_k = S(x * H_k)``; the weights are ``w = softmax_k(s_k)``.
    With ``max_channels`` ("Faster Score-CAM", as in tf-keras-vis) only the channels with the
    largest spatial variance are scored; the others get weight 0. The gradients are not used.

    Args:
        activations: ``A`` ``(B, *spatial, C)`` (channel axis anywhere).
        gradients: unused.
        channel_axis: channel axis of ``A``.
        context: engine, inputs and resolved targets of the batch.
        max_channels: None (all channels, as in the paper) or how many channels to score.
        chunk_size: masked inputs per forward pass (memory knob).

    Returns:
        float64 ``(B, 1, ..., C)`` weights.
    """
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if max_channels is not None:
        max_channels = check_positive_int(
            "max_channels", max_channels, "Or None for every channel."
        )
    engine, inputs = context.engine, context.inputs
    j = _layer_input(context)
    x = np.asarray(inputs[j], np.float32)
    sp_axes, ch_axis = input_layout(x.shape[1:], channels_first(engine))
    size = tuple(x.shape[a] for a in sp_axes)
    maps = np.moveaxis(activations, channel_axis, 1)  # (B, C, *spatial)
    if maps.ndim - 2 != len(size):
        raise ModelStructureError(
            f"Score-CAM needs a layer with as many spatial axes as the input ({len(size)}); the "
            f"tapped layer {engine.tap.layers[context.layer_index]!r} has output shape "
            f"{activations.shape[1:]}. Choose a convolutional layer with `layer=`."
        )
    b, c = maps.shape[:2]
    chosen = top_variance_channels(maps, max_channels)
    rows_b = np.repeat(np.arange(b), chosen.shape[1])
    rows_c = chosen.reshape(-1)
    scores = np.empty(len(rows_b), np.float64)
    for sl in chunks(len(rows_b), chunk_size):
        bs, cs = rows_b[sl], rows_c[sl]
        masks = normalize(resize(maps[bs, cs], size))
        masked = x[bs] * expand_to_input(masks, ch_axis)
        batch = [masked if k == j else np.asarray(other)[bs] for k, other in enumerate(inputs)]
        scores[sl] = forward_scores(engine, batch, rows_targets(context.targets, bs))
    full = np.full((b, c), -np.inf)
    full[rows_b, rows_c] = scores
    weights = softmax(full, axis=1)
    shape = [1] * activations.ndim
    shape[0], shape[channel_axis] = b, c
    return weights.reshape(shape)


# --------------------------------------------------------------------------------------------
# Ablation-CAM: the network after the tapped layer
# --------------------------------------------------------------------------------------------


def _build_head(engine: Engine, layer_index: int) -> AblationHead:
    """A compiled ``f(*inputs, A) -> logits`` that recomputes the model from the tapped layer on."""
    tap = engine.tap
    if tap.source is None:  # pragma: no cover - taps built by Tap.build always have a source
        raise ModelStructureError(
            "Ablation-CAM needs a tap built with Tap.build (it has no source model)."
        )
    path = tap.layers[layer_index]
    if tap.token_grids and tap.token_grids[layer_index] is not None or ":" in path:
        raise ModelStructureError(
            f"Ablation-CAM replaces the output of a layer, and {path!r} is a transformer's token "
            "sequence (or a layer's input), which it does not ablate. Use method='scorecam' or "
            "'gradcam' on tokens, or method='generic_attention'."
        )
    layer = get_layer(tap.source, path)
    if isinstance(layer, keras.Model):
        raise ModelStructureError(
            f"Ablation-CAM needs a leaf layer, but {path!r} is a nested model. Choose one of its "
            f"layers, e.g. layer='{path}/<layer name>'."
        )
    out = tap.model.outputs[1 + layer_index]  # the tapped tensor (layers, operations, sub-layers)
    a_in = keras.Input(
        batch_shape=(None, *out.shape[1:]), dtype=out.dtype, name="xai_ablated_activations"
    )
    replaced: list[str] = []

    def hook(lay: keras.layers.Layer, lay_path: str, args: tuple, kwargs: dict) -> Any:
        if lay_path == path and not replaced:  # the first call, like layer.output
            replaced.append(lay_path)
            return a_in
        return lay(*args, **kwargs)

    rebuilt, n_out = _rebuild(
        tap.source, [], tap.output, hook=hook, extra_inputs=[a_in], expand=[path]
    )
    if not replaced:  # pragma: no cover - paths are validated by Tap.build
        raise ModelStructureError(
            f"Ablation-CAM could not reach layer {path!r} while replaying the model."
        )
    logits = rebuilt.outputs[tap.output if n_out > 1 else 0]
    images = rebuilt.inputs[:-1]
    deps = _input_dependencies(logits, {}, {id(t): i for i, t in enumerate(images)})
    needs_images = bool(deps)  # e.g. a skip connection around the layer, or a nested model
    head = keras.Model(rebuilt.inputs if needs_images else a_in, logits, name="xai_ablation_head")
    specs = [tf.TensorSpec((None, *t.shape[1:]), t.dtype) for t in head.inputs]

    def run(*args: tf.Tensor) -> tf.Tensor:
        return tf.cast(head(list(args) if needs_images else args[0], training=False), tf.float32)

    fn = tf.function(run, input_signature=specs, jit_compile=engine.jit_compile, autograph=False)
    return AblationHead(fn=fn, needs_images=needs_images, dtypes=[s.dtype for s in specs])


@dataclass(frozen=True)
class AblationHead:
    """``fn(*images, A) -> logits`` (or ``fn(A)`` when the logits depend on the images only
    through ``A``, the usual case: then the images are not passed at all)."""

    fn: Callable[..., tf.Tensor]
    needs_images: bool
    dtypes: list[Any]


def ablation_head(engine: Engine, layer_index: int) -> AblationHead:
    """The compiled head for ``engine``'s tapped layer ``layer_index``, built once per engine."""
    return engine.derived(("ablation_head", layer_index), lambda e: _build_head(e, layer_index))


def ablationcam_weights(
    activations: np.ndarray,
    gradients: np.ndarray,
    channel_axis: int,
    *,
    context: CamContext,
    chunk_size: int,
) -> np.ndarray:
    """Ablation-CAM (Ramaswamy & Desai, WACV 2020): the relative score drop when a channel is
    zeroed.

    ``w_k = (y - y_k) / |y|`` where ``y`` is the target score and ``y_k`` the score with channel
    ``k`` of the tapped activations set to zero. (The paper divides by ``y``; dividing by ``|y|``
    keeps the sign meaningful when the logit is negative, e.g. class 0 of a binary model, and a
    zero ``y`` divides by 1.) Every (sample, channel) pair is one row of a batch through the part
    of the network after the layer, ``chunk_size`` rows at a time. The gradients are not used.

    Args:
        activations: ``A`` ``(B, *spatial, C)`` (channel axis anywhere).
        gradients: unused.
        channel_axis: channel axis of ``A``.
        context: engine, inputs and resolved targets of the batch.
        chunk_size: ablated copies per forward pass (memory knob).

    Returns:
        float64 ``(B, 1, ..., C)`` weights.
    """
    chunk_size = check_positive_int("chunk_size", chunk_size)
    engine, inputs = context.engine, context.inputs
    head = ablation_head(engine, context.layer_index)

    def scores_of(rows: np.ndarray, acts: np.ndarray) -> np.ndarray:
        args = []
        if head.needs_images:
            args = [tf.constant(np.asarray(x)[rows], dtype=d) for x, d in zip(inputs, head.dtypes)]
        args.append(tf.constant(acts, dtype=head.dtypes[-1]))
        logits = head.fn(*args).numpy()
        return target_scores(engine, logits, rows_targets(context.targets, rows))

    b = len(activations)
    c = activations.shape[channel_axis]
    moved = np.moveaxis(activations, channel_axis, 1)
    y = np.empty(b, np.float64)
    for sl in chunks(b, chunk_size):
        rows = np.arange(b)[sl]
        y[sl] = scores_of(rows, activations[sl])
    rows_b = np.repeat(np.arange(b), c)
    rows_c = np.tile(np.arange(c), b)
    drops = np.empty(len(rows_b), np.float64)
    for sl in chunks(len(rows_b), chunk_size):
        bs, cs = rows_b[sl], rows_c[sl]
        ablated = moved[bs].copy()
        ablated[np.arange(len(bs)), cs] = 0.0
        drops[sl] = y[bs] - scores_of(bs, np.moveaxis(ablated, 1, channel_axis))
    scale = np.where(np.abs(y) > 0, np.abs(y), 1.0)
    weights = drops.reshape(b, c) / scale[:, None]
    shape = [1] * activations.ndim
    shape[0], shape[channel_axis] = b, c
    return weights.reshape(shape)


register_cam(
    "scorecam",
    scorecam_weights,
    reference="Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional "
    "Neural Networks, CVPR Workshops 2020",
    summary="channel weights = softmax of the scores of the input masked by each channel "
    "(max_channels: Faster Score-CAM)",
    defaults={"max_channels": None, "chunk_size": 64},
    needs_context=True,
    knobs=frozenset({"chunk_size"}),
)
register_cam(
    "ablationcam",
    ablationcam_weights,
    reference="Ramaswamy & Desai, Ablation-CAM: Visual Explanations for Deep Convolutional "
    "Network via Gradient-free Localization, WACV 2020",
    summary="channel weights = relative score drop when the channel is zeroed (batched)",
    defaults={"chunk_size": 64},
    needs_context=True,
    knobs=frozenset({"chunk_size"}),
)
