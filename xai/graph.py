"""The model's graph as xai sees it: every node by its path, and which tensors dominate an output.

Paths (what :func:`node_paths` lists and :func:`get_node` resolves):

* a layer **or a Keras operation** of a functional graph, by the name ``model.operations`` and
  ``model.summary()`` give it: ``"conv2d"``, ``"add_17"`` (``x + y``), ``"concatenate"``;
* a node inside a nested model: ``"outer/inner"``, at any depth;
* a **sub-layer called inside another layer's** ``call()``: ``"block/conv"`` (any depth). Such a
  sub-layer is not a node of the user's graph; :func:`trace_call` runs the outer layer's own
  ``call()`` on fresh symbolic ``keras.Input`` tensors, so every sub-layer call and Keras
  operation in it becomes a node of a new functional graph (the same layer objects, the same
  variables). Nothing is assigned on any layer and no ``call`` is replaced: the tensor is *read*
  from the traced graph. It works for ``call()`` written with Keras layers and ``keras.ops``
  (what runs on every backend); a ``call()`` that needs concrete tensors gets a clear error.

:class:`ModelGraph` flattens the graph (nested models included) into tensors with their
predecessors, and computes **dominators**: the tensors through which *every* path from one model
input to the explained output passes. The automatic CAM layer is chosen among them
(:func:`xai.layer_choice.auto_layer`), never inside a parallel (residual) branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

from .errors import ModelStructureError, bad_type, did_you_mean

SEP = "/"
_GLOBAL_POOLING = (
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)


def is_functional(model: Any) -> bool:
    """True for a Functional model (keras.applications included), which has a layer graph."""
    from keras.src.models.functional import Functional  # Keras has no public alias for this class

    return isinstance(model, Functional)


def is_nested_model(layer: Any) -> bool:
    """True for a Functional or Sequential model used as a node of another graph."""
    return isinstance(layer, keras.Model) and (
        isinstance(layer, keras.Sequential) or is_functional(layer)
    )


def graph_operations(container: keras.Model) -> list[Any]:
    """The nodes of a graph model in graph order: layers and Keras operations, no InputLayer."""
    ops = container.layers if isinstance(container, keras.Sequential) else container.operations
    return [op for op in ops if not isinstance(op, keras.layers.InputLayer)]


def sublayers(layer: Any) -> list[keras.layers.Layer]:
    """The layers tracked directly by a (non-graph) layer: those its ``call()`` may use."""
    if is_nested_model(layer) or not isinstance(layer, keras.layers.Layer):
        return []
    return list(layer._flatten_layers(include_self=False, recursive=False))


def node_paths(
    model: keras.Model, *, leaves_only: bool = False, include_sublayers: bool = True
) -> list[str]:
    """Every addressable path of ``model`` in graph order.

    Args:
        model: a Functional or built Sequential model.
        leaves_only: skip the entries that are nested models themselves (their nodes are kept).
        include_sublayers: also list the sub-layers called inside layers' ``call()``.
    """
    paths: list[str] = []

    def walk_sub(layer: Any, prefix: str) -> None:
        for sub in sublayers(layer):
            paths.append(prefix + sub.name)
            walk_sub(sub, prefix + sub.name + SEP)

    def walk(container: keras.Model, prefix: str) -> None:
        for op in graph_operations(container):
            path = prefix + op.name
            if is_nested_model(op):
                if not leaves_only:
                    paths.append(path)
                walk(op, path + SEP)
                continue
            paths.append(path)
            if include_sublayers:
                walk_sub(op, path + SEP)

    walk(model, "")
    return paths


PORTS = ("input", "attention")
"""What a ``"path:port"`` reads instead of the node's output: ``input``, the first tensor the
layer is called on (e.g. the normalised tokens a ``MultiHeadAttention`` attends over); and
``attention``, the attention probabilities ``(B, heads, T_query, T_key)`` of a
``keras.layers.MultiHeadAttention`` (the layer is called with ``return_attention_scores=True``
in the new graph, which also takes Keras's explicit softmax path instead of the fused one)."""


def split_port(path: str) -> tuple[str, str | None]:
    """``"block/mha:attention"`` -> ``("block/mha", "attention")``; no port -> ``(path, None)``."""
    node, sep, port = path.rpartition(":")
    if sep and port in PORTS and SEP not in port:
        return node, port
    return path, None


def is_attention(layer: Any) -> bool:
    """True for a ``keras.layers.MultiHeadAttention`` (keras-hub's attention layers subclass it)."""
    return isinstance(layer, keras.layers.MultiHeadAttention)


def get_node(model: keras.Model, path: str) -> Any:
    """The layer or operation at ``path``, with a did-you-mean error naming the valid paths.

    ``path`` may end in a port (``":input"``, ``":attention"``, see :data:`PORTS`); the layer
    is returned and the port is checked to apply to it.
    """
    if not isinstance(path, str) or not path:
        raise bad_type("layer", "a layer name or 'outer/inner' path (str)", path)
    node_path, port = split_port(path)
    if port is not None:
        layer = get_node(model, node_path)
        if is_nested_model(layer) or not isinstance(layer, keras.layers.Layer):
            raise ModelStructureError(
                f"`layer={path!r}`: the ':{port}' port reads a layer's call, but "
                f"{node_path!r} is {'a nested model' if is_nested_model(layer) else 'an operation'}"
                ". Name a layer inside it, or leave the port out."
            )
        if port == "attention" and not is_attention(layer):
            raise ModelStructureError(
                f"`layer={path!r}`: ':attention' reads the attention probabilities of a "
                f"keras.layers.MultiHeadAttention, but {node_path!r} is a "
                f"{type(layer).__name__}. xai.layer_paths(model) lists the layers."
            )
        return layer
    current: Any = model
    for part in path.split(SEP):
        options = graph_operations(current) if is_nested_model(current) else sublayers(current)
        found = next((op for op in options if op.name == part), None)
        if found is None:
            raise ModelStructureError(
                f"`layer` must name a layer or operation of model {model.name!r}. Received: "
                f"layer={path!r}. "
                + did_you_mean(path, node_paths(model))
                + " Nodes inside a nested model or sub-layers called inside a layer are written "
                "'outer_name/inner_name'; xai.layer_paths(model) lists them all."
            )
        current = found
    return current


def graph_prefix(model: keras.Model, path: str) -> str:
    """The longest prefix of ``path`` that is a node of the (flattened) graph, not a sub-layer."""
    parts = split_port(path)[0].split(SEP)
    current: Any = model
    for i, part in enumerate(parts):
        if not is_nested_model(current):
            return SEP.join(parts[:i])
        current = next(op for op in graph_operations(current) if op.name == part)
    return path


# --------------------------------------------------------------------------------------------
# Tracing a layer's call() into a graph
# --------------------------------------------------------------------------------------------


def _is_symbolic(value: Any) -> bool:
    return isinstance(value, keras.KerasTensor)


def trace_call(layer: keras.layers.Layer, args: tuple, kwargs: dict) -> keras.Model:
    """A functional model whose graph is ``layer.call(*args, **kwargs)`` traced symbolically.

    Every symbolic tensor in ``args``/``kwargs`` becomes a fresh ``keras.Input`` (inputs in
    ``tree.flatten`` order); non-tensor arguments are passed as they are. The sub-layers that
    ``call()`` uses become nodes of the new graph, named as they are named, so their outputs can
    be tapped like any layer's. ``layer`` itself is not called and not changed.

    Raises:
        ModelStructureError: when ``call()`` cannot run on symbolic tensors (e.g. it uses raw
            TensorFlow ops or needs concrete shapes).
    """
    flat = keras.tree.flatten((args, kwargs))
    fresh = [
        keras.Input(batch_shape=(None, *v.shape[1:]), dtype=v.dtype) if _is_symbolic(v) else v
        for v in flat
    ]
    new_args, new_kwargs = keras.tree.pack_sequence_as((args, kwargs), fresh)
    inputs = [v for v in fresh if _is_symbolic(v)]
    try:
        outputs = layer.call(*new_args, **new_kwargs)
        model = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs, outputs, name=f"{layer.name}_traced"
        )
    except Exception as exc:
        raise ModelStructureError(
            f"Could not reach the sub-layers of layer {layer.name!r} ({type(layer).__name__}): "
            "xai traces its call() on symbolic Keras tensors to reach them, and that failed with "
            f"{type(exc).__name__}: {exc}. This works when call() is written with Keras layers "
            "and keras.ops. Tap the layer's own output instead (layer="
            f"{layer.name!r}), or build the block with the functional API."
        ) from exc
    return model


# --------------------------------------------------------------------------------------------
# The flattened tensor graph and its dominators
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorNode:
    """One tensor of the flattened graph.

    Attributes:
        index: position in topological order (every predecessor has a smaller index).
        path: path of the node that produces it (None for model inputs and multi-output nodes).
        shape: its symbolic shape, batch axis included.
        operation: the layer or operation that produces it.
        preds: indices of the tensors it is computed from.
        inputs: indices of the model inputs it depends on.
        data_format: the producing layer's ``data_format`` (None when it has none).
        after_global_pooling: computed from the output of a global pooling layer.
    """

    index: int
    path: str | None
    shape: tuple[Any, ...]
    operation: Any
    preds: tuple[int, ...]
    inputs: frozenset[int]
    data_format: str | None
    after_global_pooling: bool


class ModelGraph:
    """The tensors of a graph model, nested models flattened into their nodes.

    A nested model's inputs are identified with the tensors it is called on and its outputs with
    its inner output tensors, so ``"backbone/out_relu"`` is one tensor of the flattened graph.
    """

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.nodes: list[TensorNode] = []
        self._index: dict[tuple[tuple[int, ...], int], int] = {}
        self._alias: dict[tuple[tuple[int, ...], int], tuple[Any, tuple[int, ...], str]] = {}
        self._counts: dict[str, int] = {}
        top_inputs = {id(t): j for j, t in enumerate(model.inputs)}
        self.inputs = [self._visit(t, (), "", top_inputs) for t in model.inputs]
        self.outputs = [self._visit(t, (), "", top_inputs) for t in model.outputs]
        succ: list[list[int]] = [[] for _ in self.nodes]
        for node in self.nodes:
            for p in node.preds:
                succ[p].append(node.index)
        self._succ = succ

    # ---------------------------------------------------------------------------- building
    def _visit(self, tensor: Any, scope: tuple[int, ...], prefix: str, top_inputs: dict) -> int:
        """Index of ``tensor`` (seen in ``scope``), adding it and its ancestors (iteratively)."""
        stack: list[tuple[Any, tuple[int, ...], str]] = [(tensor, scope, prefix)]
        while stack:
            t, sc, pre = stack[-1]
            key = (sc, id(t))
            if key in self._index:
                stack.pop()
                continue
            needed = self._dependencies(t, sc, pre, top_inputs)
            missing = [d for d in needed if (d[1], id(d[0])) not in self._index]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            self._index[key] = self._add(t, sc, pre, needed, top_inputs)
        return self._index[(scope, id(tensor))]

    def _dependencies(self, t: Any, sc: tuple[int, ...], pre: str, top_inputs: dict) -> list:
        key = (sc, id(t))
        if key in self._alias:  # an inner input of a nested model: the tensor it was called on
            return [self._alias[key]]
        if not sc and id(t) in top_inputs:
            return []
        history = getattr(t, "_keras_history", None)
        if history is None:
            return []
        op = history.operation
        node = op._inbound_nodes[history.node_index]
        if is_nested_model(op):
            call_scope = (*sc, id(node))
            inner_pre = pre + op.name + SEP
            for inner, outer in zip(op.inputs, node.input_tensors):
                self._alias[(call_scope, id(inner))] = (outer, sc, pre)
            return [(op.outputs[history.tensor_index], call_scope, inner_pre)]
        return [(x, sc, pre) for x in node.input_tensors]

    def _add(self, t: Any, sc: tuple[int, ...], pre: str, needed: list, top_inputs: dict) -> int:
        key = (sc, id(t))
        if key in self._alias or (needed and is_nested_model(t._keras_history.operation)):
            d = needed[0]
            return self._index[(d[1], id(d[0]))]  # the same tensor under another name
        preds = tuple(sorted({self._index[(d[1], id(d[0]))] for d in needed}))
        history = getattr(t, "_keras_history", None)
        op = history.operation if history is not None else None
        if not sc and id(t) in top_inputs:
            path, deps, after_pool = None, frozenset({top_inputs[id(t)]}), False
        else:
            deps = frozenset().union(*(self.nodes[p].inputs for p in preds))
            after_pool = isinstance(op, _GLOBAL_POOLING) or any(
                self.nodes[p].after_global_pooling for p in preds
            )
            path = None
            if (
                op is not None
                and history is not None
                and not isinstance(op, keras.layers.InputLayer)
            ):
                node = op._inbound_nodes[history.node_index]
                if len(node.outputs) == 1:
                    path = pre + op.name
                    self._counts[path] = self._counts.get(path, 0) + 1
        self.nodes.append(
            TensorNode(
                index=len(self.nodes),
                path=path,
                shape=tuple(t.shape),
                operation=op,
                preds=preds,
                inputs=deps,
                data_format=getattr(op, "data_format", None),
                after_global_pooling=after_pool,
            )
        )
        return len(self.nodes) - 1

    # ---------------------------------------------------------------------------- queries
    def unique(self, path: str | None) -> bool:
        """True when ``path`` names exactly one tensor (its layer is not shared)."""
        return path is not None and self._counts.get(path) == 1

    def find(self, path: str) -> TensorNode | None:
        """The first tensor produced by the node at ``path`` (None if it has no single output)."""
        return next((n for n in self.nodes if n.path == path), None)

    def between(self, output: int, input_index: int) -> set[int]:
        """Indices of the tensors on some path from model input ``input_index`` to ``output``."""
        source, sink = self.inputs[input_index], self.outputs[output]
        forward = {source}
        for node in self.nodes[source + 1 :]:
            if any(p in forward for p in node.preds):
                forward.add(node.index)
        if sink not in forward:
            return set()
        backward, todo = {sink}, [sink]
        while todo:
            for p in self.nodes[todo.pop()].preds:
                if p in forward and p not in backward:
                    backward.add(p)
                    todo.append(p)
        return backward

    def dominators(self, output: int, input_index: int) -> list[TensorNode]:
        """The tensors every path from input ``input_index`` to ``output`` passes through.

        In graph order, from the input to the output (both included); empty when the output
        does not depend on that input. Computed as the immediate-dominator chain of the output
        (the DAG form of Cooper, Harvey & Kennedy's algorithm, in topological order).
        """
        on_path = self.between(output, input_index)
        source, sink = self.inputs[input_index], self.outputs[output]
        if not on_path:
            return []
        idom = {source: source}

        def meet(a: int, b: int) -> int:
            while a != b:
                while a > b:
                    a = idom[a]
                while b > a:
                    b = idom[b]
            return a

        for i in sorted(on_path):
            if i == source:
                continue
            preds = [p for p in self.nodes[i].preds if p in on_path]
            d = preds[0]
            for p in preds[1:]:
                d = meet(d, p)
            idom[i] = d
        chain = [sink]
        while chain[-1] != source:
            chain.append(idom[chain[-1]])
        return [self.nodes[i] for i in reversed(chain)]
