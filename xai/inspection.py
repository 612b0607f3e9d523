"""Reading a user's model without changing it: validation, node paths, outputs, data format.

Everything here only reads the model (its graph, its layers' ``data_format``, its outputs); the
surgery that builds new graphs is in :mod:`xai.taps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

from .errors import ModelStructureError, bad_type, bad_value, did_you_mean
from .graph import (
    get_node,
    graph_operations,
    is_functional,
    is_nested_model,
    node_paths,
)

SEP = "/"


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
    if not is_functional(model):
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


@dataclass(frozen=True)
class InputInfo:
    """How one model input is laid out: spatial size and channel axis (None when it has none).

    ``channel_axis`` counts the batch axis (``3`` for ``(N, H, W, C)``, ``1`` for channels first).
    """

    spatial: tuple[int, ...]
    channel_axis: int | None


def input_layouts(model: keras.Model, data_format: str) -> tuple[InputInfo, ...]:
    """The layout of every model input, from its shape and the model's data format (once)."""
    out = []
    for t in model.inputs:
        shape = tuple(t.shape[1:])
        rank = len(shape)
        if rank <= 1:
            out.append(InputInfo(spatial=shape, channel_axis=None))
        elif data_format == "channels_first":
            out.append(InputInfo(spatial=shape[1:], channel_axis=1))
        else:
            out.append(InputInfo(spatial=shape[:-1], channel_axis=rank))
    return tuple(out)
