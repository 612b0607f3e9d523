"""The automatic CAM layer: the map the head really sees (the last dominating spatial tensor).

See :func:`auto_layer`; the dominators come from :class:`xai.graph.ModelGraph`.
"""

from __future__ import annotations

import logging
from typing import Any

import keras

from .errors import ModelStructureError
from .graph import (
    ModelGraph,
    TensorNode,
)
from .inspection import channel_axis, check_graph_model, model_data_format, resolve_output

log = logging.getLogger("xai.taps")

_SKIPPED_FOR_AUTO = (
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
)


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
