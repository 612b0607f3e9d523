"""Model surgery without mutation: logits and intermediate activations of any Keras graph model.

A *tap* is a new functional ``keras.Model`` from the user's inputs to ``[logits, *activations]``.
It is built from the user's own layer objects, so it shares their variables (no copies, no new
weights) and the user's model is never modified: no attribute is assigned on any user layer.

How it works (see ``notes/keras3-facts.md`` §1-§2):

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
from keras import ops

from .errors import ModelStructureError, bad_type, bad_value, did_you_mean
from .graph import (
    ModelGraph,
    TensorNode,
    get_node,
    graph_operations,
    graph_prefix,
    is_functional,
    is_nested_model,
    node_paths,
    trace_call,
)

log = logging.getLogger(__name__)

SEP = "/"
_PROBABILITY_HEADS = ("softmax", "sigmoid", "log_softmax")
_SKIPPED_FOR_AUTO = (
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
)


# --------------------------------------------------------------------------------------------
# Inspecting the model
# --------------------------------------------------------------------------------------------


def check_graph_model(model: Any) -> keras.Model:
    """Validate that ``model`` is a Keras model with a graph (Functional or built Sequential)."""
    if not isinstance(model, keras.Model):
        raise bad_type(
            "model",
            "a keras.Model (Sequential or functional)",
            model,
            "Load or build a Keras 3 model first, e.g. keras.saving.load_model(path).",
        )
    if isinstance(model, keras.Sequential):
        try:
            model.inputs  # noqa: B018 - raises when the Sequential was never built
        except (AttributeError, ValueError) as exc:
            raise ModelStructureError(
                f"The Sequential model {model.name!r} has never been built, so it has no graph to "
                "explain. Build it first: start it with keras.Input(shape), call "
                "model.build((None, *input_shape)), or call it once on a batch."
            ) from exc
        return model
    if not _is_functional(model):
        raise ModelStructureError(
            f"`model` is a subclassed keras.Model ({type(model).__name__}) with a custom call(): "
            "it "
            "has no layer graph, so its intermediate activations and pre-softmax logits cannot be "
            "reached without changing it. What you can do: (1) build the same network with the "
            "functional API or keras.Sequential (the weights can be copied with set_weights), or "
            "(2) if call() returns logits, use an input-gradient method (method='saliency' or "
            "'smoothgrad') on a functional wrapper: inputs = keras.Input(shape); "
            "wrapper = keras.Model(inputs, model(inputs))."
        )
    return model


_is_functional = is_functional
_is_nested_model = is_nested_model


def layer_paths(
    model: keras.Model, *, leaves_only: bool = False, include_sublayers: bool = True
) -> list[str]:
    """Every addressable path of ``model`` in graph order: layers, Keras operations, nested models.

    Args:
        model: a Functional or built Sequential model.
        leaves_only: skip the entries that are themselves nested models.
        include_sublayers: also list sub-layers called inside a layer's ``call()``
            (``"block/conv"``); they are reached by tracing that ``call()`` (see :mod:`xai.graph`).

    Returns:
        Paths such as ``["rescaling", "mobilenetv2_1.00_96", "mobilenetv2_1.00_96/Conv1", ...,
        "add_17", "block/conv"]``, the names :func:`tap` and every ``layer=`` accept.
    """
    return node_paths(
        check_graph_model(model), leaves_only=leaves_only, include_sublayers=include_sublayers
    )


def get_layer(model: keras.Model, path: str) -> Any:
    """The layer or operation at ``path`` (``"outer/inner"``), with did-you-mean errors."""
    return get_node(model, path)


def channel_axis(layer: Any, rank: int, default: str = "channels_last") -> int:
    """Channel axis (positive) of ``layer``'s output of rank ``rank``, from its ``data_format``.

    Operations (``x + y``) have no ``data_format``: they take ``default``, the model's.
    """
    fmt = getattr(layer, "data_format", None) or default
    return 1 if fmt == "channels_first" else rank - 1


def model_data_format(model: keras.Model) -> str:
    """``channels_first`` if any layer of the model says so, else ``channels_last``."""

    def walk(container: keras.Model) -> bool:
        return any(
            walk(op)
            if is_nested_model(op)
            else getattr(op, "data_format", None) == "channels_first"
            for op in graph_operations(container)
        )

    return "channels_first" if walk(model) else "channels_last"


def _input_dependencies(
    tensor: Any, memo: dict[int, frozenset[int]], input_ids: dict[int, int]
) -> frozenset[int]:
    """Indices of the model inputs that a KerasTensor depends on (walking ``_keras_history``)."""
    key = id(tensor)
    if key in memo:
        return memo[key]
    if key in input_ids:
        memo[key] = frozenset({input_ids[key]})
        return memo[key]
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        memo[key] = frozenset()
        return memo[key]
    node = history.operation._inbound_nodes[history.node_index]
    deps: frozenset[int] = frozenset()
    for t in node.input_tensors:
        deps = deps | _input_dependencies(t, memo, input_ids)
    memo[key] = deps
    return deps


def _spatial_sizes(node: TensorNode, fmt: str) -> list[Any]:
    rank = len(node.shape)
    axis = channel_axis(node.operation, rank, fmt)
    return [d for i, d in enumerate(node.shape) if i not in (0, axis)]


def _is_map(node: TensorNode, fmt: str) -> bool:
    return any(d is None or d > 1 for d in _spatial_sizes(node, fmt))


def auto_layer(
    model: keras.Model,
    input_index: int = 0,
    *,
    output: int | str | None = None,
    graph: ModelGraph | None = None,
) -> str:
    """Choose the CAM layer for model input ``input_index``: the map the head really sees.

    The candidates are the *dominators* of the explained output: the tensors through which every
    path from that input to the output passes (so never a tensor inside a residual or Inception
    branch), with the input's rank, produced by one unshared layer or operation, depending on
    that input alone. Among them the last one whose spatial size exceeds 1x1 is chosen. When
    later spatial tensors were passed over (1x1 maps of the network's trunk, or tensors in
    parallel branches), a WARNING names the layer chosen and why.

    Raises:
        ModelStructureError: when no layer has the input's rank (e.g. an MLP): CAM methods need a
            spatial layer; input-gradient methods still work.
    """
    model = check_graph_model(model)
    out_index = (
        resolve_output(model, output) if output is not None or len(model.outputs) == 1 else 0
    )
    graph = graph if graph is not None else ModelGraph(model)
    rank = len(model.inputs[input_index].shape)
    fmt = model_data_format(model)

    def eligible(n: TensorNode) -> bool:
        return (
            graph.unique(n.path)
            and len(n.shape) == rank
            and n.inputs == frozenset({input_index})
            and not isinstance(n.operation, _SKIPPED_FOR_AUTO)
        )

    on_path = [graph.nodes[i] for i in sorted(graph.between(out_index, input_index))]
    same_rank = [n for n in on_path if eligible(n)]
    if not same_rank or rank < 3:  # rank 2 is (batch, features): nothing spatial to map
        raise ModelStructureError(
            f"CAM methods need a layer with spatial output, but model {model.name!r} has no layer "
            f"whose output has the rank of input {input_index} ({rank}, e.g. (batch, height, "
            "width, channels)). Pass `layer=` to choose one, or use an input-gradient method "
            "(method='saliency' or 'smoothgrad'), which works on any differentiable model."
        )
    dominators = [n for n in graph.dominators(out_index, input_index) if eligible(n)]
    maps = [n for n in dominators if _is_map(n, fmt)]
    if not maps:
        chosen = (dominators or same_rank)[-1]
        log.warning(
            "xai: no spatial map larger than 1x1 carries every path from input %d of model %r to "
            "its output; using %r (output %s). Pass `layer=` to pick an earlier, larger feature "
            "map (or several branch layers, whose maps are fused).",
            input_index,
            model.name,
            chosen.path,
            chosen.shape,
        )
        return str(chosen.path)
    chosen = maps[-1]
    dominating = {n.index for n in dominators}
    later = [n for n in same_rank if n.index > chosen.index and not n.after_global_pooling]
    reasons = []
    small = [n.path for n in later if n.index in dominating]
    branch = [n.path for n in later if n.index not in dominating and _is_map(n, fmt)]
    if small:
        reasons.append(f"the later maps are 1x1 ({_listing(small)})")
    if branch:
        reasons.append(
            f"the later spatial tensors lie inside parallel branches ({_listing(branch)}) that "
            "do not carry every path to the output"
        )
    if reasons:
        log.warning(
            "xai: auto-selected layer %r (output %s) for input %d of model %r because %s. Pass "
            "`layer=` to choose another.",
            chosen.path,
            chosen.shape,
            input_index,
            model.name,
            " and ".join(reasons),
        )
    else:
        log.info(
            "xai: auto-selected layer %r (output %s) for input %d",
            chosen.path,
            chosen.shape,
            input_index,
        )
    return str(chosen.path)


def _listing(paths: list[Any], limit: int = 3) -> str:
    shown = ", ".join(repr(p) for p in paths[-limit:])
    return shown if len(paths) <= limit else f"{len(paths)} tensors, the last {shown}"


def model_output_names(model: keras.Model) -> list[str]:
    """Names of the model's outputs (the names of the layers that produce them)."""
    names = []
    for t in model.outputs:
        history = getattr(t, "_keras_history", None)
        names.append(history.operation.name if history is not None else str(t.name))
    return names


def resolve_output(model: keras.Model, output: int | str | None) -> int:
    """Index of the chosen model output; ``None`` is allowed only for single-output models."""
    names = model_output_names(model)
    n = len(names)
    listing = ", ".join(f"{i}: {name!r}" for i, name in enumerate(names))
    if output is None:
        if n == 1:
            return 0
        raise bad_value(
            "output",
            f"given for a model with {n} outputs",
            output,
            f"Choose one with output=<index or name>. The outputs are {listing}.",
        )
    if isinstance(output, bool) or not isinstance(output, (int, str)):
        raise bad_type("output", "an output index (int) or output layer name (str)", output)
    if isinstance(output, int):
        if not -n <= output < n:
            raise bad_value(
                "output", f"an index in [0, {n - 1}]", output, f"The outputs are {listing}."
            )
        return output % n
    if output not in names:
        raise bad_value(
            "output",
            "the name of one of the model's outputs",
            output,
            did_you_mean(output, names) + f" The outputs are {listing}.",
        )
    return names.index(output)


# --------------------------------------------------------------------------------------------
# The head: which operation produces the chosen output, and how to get its pre-activation
# --------------------------------------------------------------------------------------------


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
    if _is_nested_model(layer):
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


# --------------------------------------------------------------------------------------------
# Rebuilding graphs
# --------------------------------------------------------------------------------------------

# hook(layer, path, args, kwargs) -> output: replaces one layer call while a graph is replayed.
LayerHook = Callable[[keras.layers.Layer, str, tuple, dict], Any]


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
    top_names = {p.split(SEP, 1)[0] for p in wanted}
    captured: dict[str, Any] = {}
    head = _producer(model, output_index) if output_index is not None else None
    head_act = head_activation(model, output_index) if output_index is not None else "linear"
    strip_head = head is not None and (head_act in _PROBABILITY_HEADS or _is_nested_model(head))
    head_done = False

    def call_fn(layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        nonlocal head_done
        is_head = strip_head and layer is head and not head_done
        inner_wanted = [p.split(SEP, 1)[1] for p in wanted if p.startswith(layer.name + SEP)]
        inner_expand = [p.split(SEP, 1)[1] for p in expand if p.startswith(layer.name + SEP)]
        nested = _is_nested_model(layer)
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
        elif hook is not None:
            out = hook(layer, _prefix + layer.name, args, kwargs)
        else:
            out = layer(*args, **kwargs)
        if is_head:
            head_done = True
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
        source: the user's model the tap was built from (read-only; lets methods build other
            replays of it, such as a guided-backprop graph). Held weakly, so a cached tap does not
            keep a deleted model alive: None once the model is gone.
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
    source_ref: Callable[[], keras.Model | None] | None = field(default=None, repr=False)

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
        """
        model = check_graph_model(model)
        out_index = resolve_output(model, output)
        graph = ModelGraph(model)
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
        axes, owners = [], []
        for p, t in zip(paths, outs[1:]):
            axes.append(channel_axis(get_layer(model, p), len(t.shape), fmt))
            # A sub-layer depends on what the graph node that calls it depends on.
            node = graph.find(graph_prefix(model, p))
            deps = node.inputs if node is not None else frozenset()
            owners.append(
                next(iter(deps)) if len(deps) == 1 else (0 if len(model.inputs) == 1 else None)
            )
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
            source_ref=weakref.ref(model),
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
