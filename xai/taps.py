"""Model surgery without mutation: logits and intermediate activations of any Keras graph model.

A *tap* is a new functional ``keras.Model`` from the user's inputs to ``[logits, *activations]``.
It is built from the user's own layer objects, so it shares their variables (no copies, no new
weights) and the user's model is never modified: no attribute is assigned on any user layer.

How it works:

* The model's graph is replayed on fresh ``keras.Input`` tensors with ``keras.models.clone_model``
  and ``clone_function=identity`` (same layer objects); a Sequential is replayed layer by layer.
* The final softmax/sigmoid of the chosen output is skipped (``Softmax``/``Activation`` layers) or
  linearised (a ``Dense``/``Conv`` with a fused activation is re-applied without it by
  :class:`PreActivation`, which reads the layer's variables).
* A layer inside a nested model (``"backbone/out_relu"``) is reached by rebuilding the nested
  model as its own multi-output tap and calling that from the replayed outer graph; this is how
  the "Output ... is not connected to inputs" error of the naive approach is avoided.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras

from .errors import ModelStructureError, bad_type, bad_value
from .graph import (
    ModelGraph,
    graph_prefix,
    is_nested_model,
    split_port,
    trace_call,
)
from .heads import (
    _PROBABILITY_HEADS,
    PreActivation,
    _pre_activation_call,
    _producer,
    head_activation,
)
from .inspection import (
    InputInfo,
    channel_axis,
    check_graph_model,
    get_layer,
    input_layouts,
    layer_paths,
    model_data_format,
    model_output_names,
    resolve_output,
)
from .layer_choice import auto_layer
from .tokens import TokenGrid, grid_for, patch_size

log = logging.getLogger(__name__)

SEP = "/"

__all__ = [
    "PreActivation",
    "Tap",
    "auto_layer",
    "channel_axis",
    "check_graph_model",
    "get_layer",
    "head_activation",
    "layer_paths",
    "logits_model",
    "model_data_format",
    "model_output_names",
    "resolve_layers",
    "resolve_output",
    "tap",
]

# --------------------------------------------------------------------------------------------
# Rebuilding graphs
# --------------------------------------------------------------------------------------------

# hook(layer, path, args, kwargs) -> output: replaces one layer call while a graph is replayed.
LayerHook = Callable[[keras.layers.Layer, str, tuple, dict], Any]


class _AttentionProbe(keras.layers.Layer):
    """A new graph node that calls a ``MultiHeadAttention`` with ``return_attention_scores``.

    Calling the user's (already called) layer with the flag directly would give the new graph a
    second node of that layer with two outputs, and Keras checks a graph's connectivity with
    the output structure of a layer's *first* node, losing the second output. This probe is a
    fresh layer owned by xai, holding no weights of its own: it only calls the user's layer (the
    same variables), which is not modified.
    """

    def __init__(self, attention: keras.layers.Layer) -> None:
        super().__init__(name=f"{attention.name}_probe", dtype=attention.dtype_policy)
        self.attention = attention

    def call(self, query: Any, value: Any, key: Any = None, training: Any = None, **kwargs: Any):
        return self.attention(
            query, value, key, return_attention_scores=True, training=training, **kwargs
        )

    def compute_output_spec(self, query: Any, value: Any, key: Any = None, **kwargs: Any):
        kwargs.pop("training", None)
        return self.attention.compute_output_spec(
            query, value, key, return_attention_scores=True, **kwargs
        )


def _fresh_inputs(model: keras.Model) -> Any:
    """New ``keras.Input`` tensors in the structure of ``model.input``, with a None batch axis."""

    def make(t: Any) -> Any:
        return keras.Input(batch_shape=(None, *t.shape[1:]), dtype=t.dtype, name=t.name)

    if isinstance(model, keras.Sequential):
        return make(model.inputs[0])
    return keras.tree.map_structure(make, model.input)


def _rebuild(
    model: keras.Model,
    wanted: Sequence[str],
    output_index: int | None,
    *,
    hook: LayerHook | None = None,
    extra_inputs: Sequence[Any] = (),
    expand: Sequence[str] = (),
    _prefix: str = "",
) -> tuple[keras.Model, int]:
    """Replay ``model`` into a new graph ``inputs -> [*outputs, *activations(wanted)]``.

    Args:
        model: a Functional or Sequential model (validated).
        wanted: node paths relative to ``model`` whose outputs are appended, in this order:
            layers, operations, ``outer/inner`` nodes of nested models and ``layer/sub`` sub-layers
            (the layer's ``call()`` is traced into a graph to reach them).
        output_index: the output whose final softmax/sigmoid is removed, or None to keep all.
        hook: optional ``hook(layer, path, args, kwargs) -> output`` that replaces the call of
            every (leaf) layer except the stripped head; ``path`` is the layer's path from the top
            model. Nested models are then always rebuilt, so the hook reaches their layers. It
            must call ``layer(*args, **kwargs)`` itself where it changes nothing, and it never
            modifies the layer (it builds new ops on the replayed tensors instead).
        extra_inputs: ``keras.Input`` tensors the hook's replacements use; they are appended to
            the new model's inputs (and passed into rebuilt nested models).
        expand: paths the hook must reach as graph nodes although they are not appended (their
            nested models are rebuilt and the layers around sub-layers traced).
        _prefix: path of ``model`` inside the top model (recursion only).

    Returns:
        The new model and the number of leading entries that are the model's own outputs.
    """
    top_names = {split_port(p.split(SEP, 1)[0])[0] for p in wanted}
    ports = {p for p in wanted if SEP not in p and split_port(p)[1] is not None}
    captured: dict[str, Any] = {}
    head = _producer(model, output_index) if output_index is not None else None
    head_act = head_activation(model, output_index) if output_index is not None else "linear"
    strip_head = head is not None and (head_act in _PROBABILITY_HEADS or is_nested_model(head))
    head_done = False

    def call_fn(layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        nonlocal head_done
        is_head = strip_head and layer is head and not head_done
        inner_wanted = [p.split(SEP, 1)[1] for p in wanted if p.startswith(layer.name + SEP)]
        inner_expand = [p.split(SEP, 1)[1] for p in expand if p.startswith(layer.name + SEP)]
        nested = is_nested_model(layer)
        if (nested and (inner_wanted or inner_expand or is_head or hook is not None)) or (
            not nested and not is_head and (inner_wanted or inner_expand)
        ):
            # A nested model is replayed as its own tap; a layer whose sub-layers are wanted is
            # traced into a graph of them first (graph.trace_call) and then replayed the same way.
            graph_model = layer if nested else trace_call(layer, args, kwargs)
            sub, n_out = _rebuild(
                graph_model,
                inner_wanted,
                0 if is_head else None,
                hook=hook,
                extra_inputs=extra_inputs,
                expand=inner_expand,
                _prefix=_prefix + layer.name + SEP,
            )
            if not nested:
                leaves = [
                    v
                    for v in keras.tree.flatten((args, kwargs))
                    if isinstance(v, keras.KerasTensor)
                ]
                feed = [*leaves, *extra_inputs]
                results = sub(feed[0] if len(feed) == 1 else feed)
            elif extra_inputs:
                results = sub([*keras.tree.flatten(args[0]), *extra_inputs], *args[1:], **kwargs)
            else:
                results = sub(*args, **kwargs)
            results = list(results) if isinstance(results, (list, tuple)) else [results]
            for p, value in zip(inner_wanted, results[n_out:]):
                captured[layer.name + SEP + p] = value
            out = results[0] if n_out == 1 else results[:n_out]
        elif is_head:
            out = _pre_activation_call(layer, args, kwargs)
        elif layer.name + ":attention" in ports and layer.name + ":attention" not in captured:
            # The same layer called with its own documented flag: the new graph returns the
            # attention probabilities besides the output; the layer is not changed.
            out, scores = _AttentionProbe(layer)(*args, **kwargs)
            captured[layer.name + ":attention"] = scores
        elif hook is not None:
            out = hook(layer, _prefix + layer.name, args, kwargs)
        else:
            out = layer(*args, **kwargs)
        if is_head:
            head_done = True
        if layer.name + ":input" in ports and layer.name + ":input" not in captured:
            captured[layer.name + ":input"] = next(
                v for v in keras.tree.flatten((args, kwargs)) if isinstance(v, keras.KerasTensor)
            )
        if layer.name in top_names and layer.name not in captured:
            captured[layer.name] = out  # the first call of a shared layer, like layer.output
        return out

    inputs = _fresh_inputs(model)
    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call_fn(layer, x)
        outputs = [x]
    elif extra_inputs:
        # The outputs may no longer depend on `inputs` alone (a hook replaced a tensor by an extra
        # input), so clone_model, which builds Model(inputs, outputs), cannot be used; replay the
        # graph the way it does, without building that model.
        outputs = keras.tree.flatten(
            model._run_through_graph(inputs, operation_fn=lambda layer: layer, call_fn=call_fn)
        )
    else:
        replayed = keras.models.clone_model(
            model, input_tensors=inputs, clone_function=lambda layer: layer, call_function=call_fn
        )
        outputs = list(replayed.outputs)
    missing = [p for p in wanted if p not in captured]
    if missing:  # a sub-layer that call() never runs on a tensor (or runs only through raw TF)
        raise ModelStructureError(
            f"Could not reach {missing} in model {model.name!r}: "
            + (
                "that layer's call() does not call it on a tensor."
                if model.name.endswith("_traced")
                else "no such node was replayed."
            )
            + " Tap the enclosing layer's output instead; xai.layer_paths(model) lists the paths."
        )
    model_inputs = inputs if isinstance(model, keras.Sequential) else keras.tree.flatten(inputs)
    if extra_inputs:
        model_inputs = [*keras.tree.flatten(model_inputs), *extra_inputs]
    if isinstance(model_inputs, list) and len(model_inputs) == 1:
        model_inputs = model_inputs[0]
    new = keras.Model(
        model_inputs, [*outputs, *(captured[p] for p in wanted)], name=f"{model.name}_tap"
    )
    return new, len(outputs)


# --------------------------------------------------------------------------------------------
# The public objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Tap:
    """A frozen tap: ``model(inputs) -> [logits, *activations]`` plus what it knows about them.

    Attributes:
        model: the new functional model; shares every variable with the user's model.
        layers: paths of the tapped layers, in the order of the activations.
        output: index of the user's model output whose logits are returned.
        head: final activation removed from that output ("softmax", "sigmoid", "linear", ...).
        num_logits: size of the logits' last axis.
        channel_axes: channel axis of each tapped activation (positive, batch axis is 0).
        layer_inputs: for each tapped layer, the index of the model input it belongs to (None when
            it mixes several inputs).
        num_inputs: number of model inputs.
        data_format: ``channels_first`` if any layer of the model says so, else
            ``channels_last`` (computed once, here).
        input_layouts: spatial size and channel axis of every model input (computed once).
        source: the user's model the tap was built from (read-only; lets methods build other
            replays of it, such as a guided-backprop graph). Held weakly, so a cached tap does not
            keep a deleted model alive: None once the model is gone.
        token_grids: per tapped layer, the patch grid of a transformer's tokens (a ``(B, T, C)``
            activation of an image model, or the key axis of ``":attention"`` probabilities;
            :mod:`xai.tokens`), else None. The engine hands token activations to the methods
            laid out as ``(B, h, w, C)`` maps (their ``channel_axes`` entry is 3).
    """

    model: keras.Model
    layers: tuple[str, ...]
    output: int
    head: str
    num_logits: int
    channel_axes: tuple[int, ...]
    layer_inputs: tuple[int | None, ...]
    num_inputs: int
    data_format: str = "channels_last"
    input_layouts: tuple[InputInfo, ...] = ()
    source_ref: Callable[[], keras.Model | None] | None = field(default=None, repr=False)
    token_grids: tuple[TokenGrid | None, ...] = ()

    @property
    def source(self) -> keras.Model | None:
        return self.source_ref() if self.source_ref is not None else None

    @classmethod
    def build(
        cls,
        model: keras.Model,
        layers: str | Sequence[str] | None = None,
        *,
        output: int | str | None = None,
        hook: LayerHook | None = None,
        token_grid: TokenGrid | tuple[int, int] | None = None,
    ) -> Tap:
        """Build a tap on ``model``.

        Args:
            model: a Keras Functional or built Sequential model (never modified).
            layers: a node path, a list of paths, ``"all"`` (every graph node), ``"auto"`` (the
                CAM layer chosen per input by :func:`auto_layer`), or None (logits only).
            output: for multi-output models, the output (index or name) to take logits from.
            hook: optional layer-call replacement applied while the graph is replayed (see
                :func:`_rebuild`), e.g. guided ReLUs for guided backpropagation. None (the
                default) replays the model as it is.
            token_grid: the patch grid of token layers, ``(h, w)`` or a :class:`TokenGrid`,
                when it cannot be inferred (see :mod:`xai.tokens`).
        """
        model = check_graph_model(model)
        out_index = resolve_output(model, output)
        # The flattened graph serves the automatic layer and the tapped layers' input owners;
        # a logits-only tap (input-space methods, logits_model) needs neither.
        graph = ModelGraph(model) if layers is not None else None
        paths = resolve_layers(model, layers, output=out_index, graph=graph)
        keras_model, n_out = _rebuild(model, paths, out_index, hook=hook)
        # Keep only the chosen output's logits before the activations.
        if n_out != 1:
            keras_model = keras.Model(
                keras_model.inputs if len(keras_model.inputs) > 1 else keras_model.inputs[0],
                [keras_model.outputs[out_index], *keras_model.outputs[n_out:]],
                name=keras_model.name,
            )
        outs = keras_model.outputs
        fmt = model_data_format(model)
        layouts = input_layouts(model, fmt)
        axes, owners, grids = [], [], []
        patch: Any = False  # read from the model once, when a token layer needs it
        for p, t in zip(paths, outs[1:]):
            axes.append(channel_axis(get_layer(model, p), len(t.shape), fmt))
            # A sub-layer depends on what the graph node that calls it depends on.
            node = graph.find(graph_prefix(model, p)) if graph is not None else None
            deps = node.inputs if node is not None else frozenset()
            owner = next(iter(deps)) if len(deps) == 1 else (0 if len(model.inputs) == 1 else None)
            owners.append(owner)
            grid = None
            info = layouts[owner] if owner is not None else None
            is_attention = split_port(p)[1] == "attention"
            if info is not None and len(info.spatial) == 2 and (len(t.shape) == 3 or is_attention):
                if patch is False:
                    patch = patch_size(model)
                shape = (t.shape[0], t.shape[-1], None) if is_attention else tuple(t.shape)
                try:
                    grid = grid_for(p, shape, info.spatial, patch=patch, override=token_grid)
                except ModelStructureError:
                    grid = None  # explain() reports it for the methods that need a map
                if grid is not None and not is_attention:
                    axes[-1] = 3  # the methods see (B, h, w, C)
            grids.append(grid)
        return cls(
            model=keras_model,
            layers=tuple(paths),
            output=out_index,
            head=head_activation(model, out_index),
            num_logits=int(outs[0].shape[-1]) if len(outs[0].shape) > 1 else 1,
            channel_axes=tuple(axes),
            layer_inputs=tuple(owners),
            num_inputs=len(model.inputs),
            data_format=fmt,
            input_layouts=layouts,
            source_ref=weakref.ref(model),
            token_grids=tuple(grids),
        )


def resolve_layers(
    model: keras.Model,
    layers: str | Sequence[str] | None,
    *,
    output: int | None = None,
    graph: ModelGraph | None = None,
) -> list[str]:
    """Validated node paths for ``layers`` (``"all"``: every graph node; ``"auto"``: per input)."""
    if layers is None:
        return []
    if isinstance(layers, str):
        if layers == "all":
            return layer_paths(model, leaves_only=True, include_sublayers=False)
        if layers == "auto":
            graph = graph if graph is not None else ModelGraph(model)
            return [
                auto_layer(model, i, output=output, graph=graph) for i in range(len(model.inputs))
            ]
        layers = [layers]
    if not isinstance(layers, Sequence) or not all(isinstance(p, str) for p in layers):
        raise bad_type("layer", "a layer name, a list of layer names, 'auto' or 'all'", layers)
    out = []
    for p in layers:
        get_layer(model, p)  # validates, with did-you-mean
        if p not in out:
            out.append(p)
    return out


def tap(
    model: keras.Model,
    layers: str | Sequence[str] | None = "auto",
    *,
    logits: bool = True,
    output: int | str | None = None,
) -> keras.Model:
    """A new model returning ``[logits, *activations]`` of ``model``, sharing its weights.

    Args:
        model: Functional or built Sequential Keras model. It is not modified.
        layers: node path(s) to return: layer and Keras-operation names (``"add_17"`` for an
            ``x + y``), ``"outer/inner"`` inside nested models, ``"block/conv"`` for a sub-layer
            called inside a layer's ``call()``; ``"all"`` for every node of the graph (layers and
            operations, nested models included, sub-layers not) in graph order; or ``"auto"``
            for the Grad-CAM layer per input (:func:`auto_layer`).
        logits: prepend the pre-softmax/sigmoid logits of the chosen output.
        output: which output of a multi-output model to take logits from (index or name).

    Returns:
        A functional ``keras.Model`` with the same inputs as ``model``.

    Example:
        >>> t = xai.tap(model, ["conv2d", "backbone/out_relu"])
        >>> logits, a1, a2 = t(images)
    """
    t = Tap.build(model, layers, output=output)
    if logits:
        return t.model
    outs = t.model.outputs[1:]
    if not outs:
        raise bad_value("layers", "at least one layer when logits=False", layers)
    inputs = t.model.inputs if len(t.model.inputs) > 1 else t.model.inputs[0]
    return keras.Model(inputs, outs, name=t.model.name)


def logits_model(model: keras.Model, *, output: int | str | None = None) -> keras.Model:
    """A new model with the same inputs returning the pre-activation logits of one output.

    A final ``softmax``/``sigmoid`` (as its own ``Softmax``/``Activation`` layer or fused into a
    ``Dense``/``Conv``, at any nesting depth) is removed; a ``linear`` head is returned as is.
    The user's layers and variables are reused; ``model`` is not modified.
    """
    t = Tap.build(model, None, output=output)
    inputs = t.model.inputs if len(t.model.inputs) > 1 else t.model.inputs[0]
    return keras.Model(inputs, t.model.outputs[0], name=f"{model.name}_logits")
