"""The automatic CAM layer: the map the head really sees (the last dominating spatial tensor).

See :func:`auto_layer`; the dominators come from :class:`xai.graph.ModelGraph`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import keras

from .errors import ModelStructureError
from .graph import (
    ModelGraph,
    TensorNode,
    get_node,
    graph_prefix,
    is_attention,
    node_paths,
    split_port,
)
from .inspection import channel_axis, check_graph_model, model_data_format, resolve_output
from .tokens import infer_grid, patch_size

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
    image_size = _image_size(model, input_index, fmt)
    patch: Any = patch_size(model) if image_size is not None else None
    if image_size is not None:
        chosen_tokens = _transformer_layer(model, input_index, graph, image_size, patch)
        if chosen_tokens is not None:
            return chosen_tokens

    def is_tokens(n: TensorNode) -> bool:
        """A ``(B, T, C)`` tensor of an image model whose tokens lay out on the patch grid."""
        return (
            image_size is not None
            and len(n.shape) == 3
            and n.shape[1] is not None
            and infer_grid(int(n.shape[1]), image_size, patch=patch) is not None
        )

    def eligible(n: TensorNode) -> bool:
        return (
            graph.unique(n.path)
            and (len(n.shape) == rank or is_tokens(n))
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


def _image_size(model: keras.Model, input_index: int, fmt: str) -> tuple[int, int] | None:
    """``(H, W)`` of a 2-D image input with known size, else None."""
    shape = tuple(model.inputs[input_index].shape[1:])
    if len(shape) != 3:
        return None
    spatial = shape[1:] if fmt == "channels_first" else shape[:2]
    if any(d is None for d in spatial):
        return None
    return int(spatial[0]), int(spatial[1])


def _transformer_layer(
    model: keras.Model,
    input_index: int,
    graph: ModelGraph,
    image_size: tuple[int, int],
    patch: tuple[int, int] | None,
) -> str | None:
    """The CAM layer of a Vision Transformer: the input of its last ``MultiHeadAttention``.

    That is the normalised token sequence the last block attends over (``blocks[-1].norm1`` in
    timm/pytorch-grad-cam terms). Its patch tokens still reach the head through that attention,
    also when the head reads only the class token; at the last block's *output* they do not
    (their gradients are exactly zero there). None when the model has no attention layer
    (Swin-style windowed attention is not a MultiHeadAttention: the dominator rule below
    then picks its last token map).
    """
    attention = attention_layers(model)
    if len(model.inputs) > 1:  # keep the ones that depend on this input only
        attention = [
            p
            for p in attention
            if (node := graph.find(graph_prefix(model, p))) is not None
            and node.inputs == frozenset({input_index})
        ]
    if not attention:
        return None
    # The query tokens must lay out on the image's patch grid (a CNN with an attention head over
    # other tokens keeps the dominator rule); a sub-layer's shape may be unknown: then trust it.
    layer = get_node(model, attention[-1])
    nodes = getattr(layer, "_inbound_nodes", [])
    shape = tuple(nodes[0].input_tensors[0].shape) if nodes and nodes[0].input_tensors else None
    if shape is not None:
        if len(shape) != 3 or shape[1] is None:
            return None
        if infer_grid(int(shape[1]), image_size, patch=patch) is None:
            return None
    chosen = attention[-1] + ":input"
    log.info(
        "xai: auto-selected layer %r for input %d of transformer %r: the tokens its last "
        "attention layer attends over (the patch tokens still reach the head there)",
        chosen,
        input_index,
        model.name,
    )
    return chosen


def attention_layers(model: keras.Model) -> list[str]:
    """Paths of every ``keras.layers.MultiHeadAttention`` of ``model`` in graph order (nested
    models and sub-layers included, e.g. keras-hub's ``vit_encoder/transformer_block_0/mha``)."""
    return [p for p in node_paths(model) if is_attention(get_node(model, p))]


def attention_ports(model: keras.Model, layer: str | Sequence[str] | None = None) -> list[str]:
    """The ``":attention"`` ports an attention method taps: every attention layer, or ``layer``.

    Raises:
        ModelStructureError: the model has no ``MultiHeadAttention`` (attention methods need
            one; CAM and gradient methods work on any model).
    """
    if layer is None:
        paths = attention_layers(model)
        if not paths:
            raise ModelStructureError(
                f"Attention methods read the attention probabilities of "
                f"keras.layers.MultiHeadAttention layers, and model {model.name!r} has none "
                "(windowed attention such as Swin's is not a MultiHeadAttention). Use a CAM "
                "method (method='gradcam') or a gradient method instead."
            )
    else:
        paths = [layer] if isinstance(layer, str) else list(layer)
    return [split_port(p)[0] + ":attention" for p in paths]


def _listing(paths: list[Any], limit: int = 3) -> str:
    shown = ", ".join(repr(p) for p in paths[-limit:])
    return shown if len(paths) <= limit else f"{len(paths)} tensors, the last {shown}"
