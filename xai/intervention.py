"""Attribution at a layer's output: the model split at one tensor, the methods run on that tensor.

Input-space gradient methods (saliency, gradient x input, integrated gradients, the SmoothGrad
family) differentiate the model's inputs. To attribute at an intermediate tensor ``h`` instead
(the output of an ``Embedding``, of a conv block...), the model is split there without changing
it, from the user's own layer objects:

* the **prefix** ``x -> [logits, h, ...]`` is an ordinary :class:`~xai.taps.Tap` on the layer;
* the **suffix** ``(h, context) -> logits`` replays the model with that layer's (first) call
  *replaced* by a new ``keras.Input`` for ``h`` (a tap that intervenes, not only reads). The
  *context* is the original inputs the rest of the model still reads: the token ids an
  ``Embedding(mask_zero=True)`` derives its mask from (the mask is re-derived from them, so masked
  positions stay masked), BERT's ``padding_mask`` and ``segment_ids``. Inputs the suffix does not
  read are dropped.

A :class:`LayerEngine` is an :class:`~xai.engine.Engine` over the suffix whose input gradients are
taken w.r.t. ``h`` alone; the context of the current batch is bound to it and repeated to the
rows of each step (row ``r`` of a step uses sample ``r mod B``: the integration steps and noise
samples of the methods are stacked that way). The registered methods then run unchanged on
``h``: integrated gradients from a baseline value of ``h``, SmoothGrad with noise in ``h``'s space.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .engine import Engine, JitMode
from .errors import ModelStructureError, XaiValueError, bad_type, bad_value
from .graph import split_port
from .heads import head_activation
from .inspection import (
    InputInfo,
    _input_dependencies,
    channel_axis,
    check_graph_model,
    get_layer,
    input_layouts,
    model_data_format,
    resolve_output,
)
from .methods.registry import Method, MethodResult
from .taps import Tap, _rebuild

log = logging.getLogger(__name__)

# Methods whose rule only needs d(score)/d(input): they run on any tensor of the split model.
LAYER_METHODS = frozenset({"saliency", "gradient_x_input", "integrated_gradients"})


def supports_layer_attribution(method: Method) -> bool:
    """Whether ``method`` can attribute at a layer's output (``layer=`` on an input method)."""
    name = method.base if method.family == "smooth" and method.base else method.name
    return method.space == "input" and not method.needs_layer and name in LAYER_METHODS


class _Remask(keras.layers.Layer):
    """``[h, *args] -> h`` carrying the mask the replaced layer derived from its own arguments.

    Keras propagates masks (``Embedding(mask_zero=True)`` -> ``GRU``) on tensors; a fresh input
    for ``h`` would have none, so the masked positions would suddenly count. The mask function
    (the user layer's ``compute_mask``) is held in a tuple so that the user layer is not tracked
    as a sub-layer of this one.
    """

    def __init__(self, mask_fn: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._mask_fn = (mask_fn,)
        self.supports_masking = True

    def call(self, inputs: list[Any]) -> Any:
        return inputs[0]

    def compute_mask(self, inputs: list[Any], mask: Any = None) -> Any:
        arg = inputs[1]
        arg_mask = mask[1] if isinstance(mask, (list, tuple)) and len(mask) > 1 else None
        return self._mask_fn[0](arg, arg_mask)


def _layer_mask_fn(layer: Any) -> Callable[..., Any] | None:
    """The layer's ``compute_mask`` when it can produce a mask (``mask_zero``), else None."""
    if not getattr(layer, "supports_masking", False) and not getattr(layer, "mask_zero", False):
        return None

    def fn(arg: Any, arg_mask: Any) -> Any:
        return layer.compute_mask(arg, arg_mask)

    return fn


@dataclass(frozen=True, eq=False)
class LayerSplit:
    """A model split at one layer's output ``h``.

    Attributes:
        layer: path of the layer whose output is replaced.
        prefix: tap ``inputs -> [logits, h, *extra]`` (``extra``: the other tapped paths).
        suffix: tap whose model maps ``[h, *context] -> [logits]``.
        context: indices (into ``model.inputs``) of the inputs the suffix still reads.
        extra: the additional paths the prefix returns after ``h``.
        value_info: layout of ``h`` (spatial axes and channel axis, batch axis counted).
    """

    layer: str
    prefix: Tap
    suffix: Tap
    context: tuple[int, ...]
    extra: tuple[str, ...]
    value_info: InputInfo


def split_model(
    model: keras.Model,
    layer: str,
    *,
    output: int | str | None = None,
    extra: Sequence[str] = (),
) -> LayerSplit:
    """Split ``model`` at the output of ``layer`` (never modified; same variables).

    Args:
        model: a Functional or built Sequential model.
        layer: the node path whose output ``h`` the methods attribute to (``"outer/inner"`` in
            nested models, ``"block/sub"`` for a sub-layer called inside a layer). A layer called
            several times is replaced at its first call.
        output: which output of a multi-output model.
        extra: other node paths the prefix also returns (e.g. the token ids before an Embedding).

    Raises:
        ModelStructureError: the layer's output is not one tensor, or the layer is never called
            while the graph is replayed.
    """
    model = check_graph_model(model)
    if not isinstance(layer, str):
        raise bad_type("layer", "a layer name or 'outer/inner' path (str)", layer)
    out_index = resolve_output(model, output)
    node = get_layer(model, layer)
    port = split_port(layer)[1]
    if port is not None:
        raise ModelStructureError(
            f"Attribution at a layer replaces that layer's output, so it takes a layer, not a "
            f"port. Received: layer={layer!r}. Name the layer whose output is wanted (for a "
            "transformer's attention input, the normalisation layer before it)."
        )
    prefix = Tap.build(model, [layer, *[p for p in extra if p != layer]], output=out_index)
    h_sym = prefix.model.outputs[1]
    if not isinstance(h_sym, keras.KerasTensor) or h_sym.shape is None:
        raise ModelStructureError(
            f"`layer` must produce one tensor to attribute at. Received: layer={layer!r}."
        )
    h_in = keras.Input(batch_shape=(None, *h_sym.shape[1:]), dtype=h_sym.dtype, name="xai_value")
    replaced: list[str] = []

    def hook(lyr: keras.layers.Layer, path: str, args: tuple, kwargs: dict) -> Any:
        if path != layer or replaced:
            return lyr(*args, **kwargs)
        replaced.append(path)
        mask_fn = _layer_mask_fn(lyr)
        leaves = [v for v in keras.tree.flatten((args, kwargs)) if isinstance(v, keras.KerasTensor)]
        if mask_fn is not None and leaves:
            probe = lyr.compute_mask(leaves[0], getattr(leaves[0], "_keras_mask", None))
            if probe is not None:
                return _Remask(mask_fn, name=f"xai_remask_{lyr.name}")([h_in, leaves[0]])
        return h_in

    full, n_out = _rebuild(model, [], out_index, hook=hook, extra_inputs=[h_in], expand=[layer])
    if not replaced:
        raise ModelStructureError(
            f"Could not replace the output of layer {layer!r} in model {model.name!r}: it is not "
            "called as a layer while the graph is replayed (an operation or a nested model). "
            "Choose a layer inside it; xai.layer_paths(model) lists the paths."
        )
    logits = full.outputs[out_index if n_out > 1 else 0]
    originals = full.inputs[:-1]
    ids = {id(t): j for j, t in enumerate(originals)}
    needed = sorted(_input_dependencies(logits, {}, ids))
    suffix_inputs = [h_in, *(originals[j] for j in needed)]
    suffix_model = keras.Model(
        suffix_inputs if len(suffix_inputs) > 1 else h_in, logits, name=f"{model.name}_suffix"
    )
    fmt = model_data_format(model)
    rank = len(h_sym.shape)
    if rank <= 2:
        info = InputInfo(spatial=tuple(h_sym.shape[1:]), channel_axis=None)
    else:
        ch = channel_axis(node, rank, fmt)
        info = InputInfo(
            spatial=tuple(d for i, d in enumerate(h_sym.shape) if i not in (0, ch)),
            channel_axis=ch,
        )
    suffix = Tap(
        model=suffix_model,
        layers=(),
        output=0,
        head=head_activation(model, out_index),
        num_logits=prefix.num_logits,
        channel_axes=(),
        layer_inputs=(),
        num_inputs=len(suffix_inputs),
        data_format=fmt,
        input_layouts=input_layouts(suffix_model, fmt),
        source_ref=weakref.ref(model),
    )
    return LayerSplit(
        layer=layer,
        prefix=prefix,
        suffix=suffix,
        context=tuple(needed),
        extra=tuple(prefix.layers[1:]),
        value_info=info,
    )


class LayerEngine(Engine):
    """An engine over a split model: its one differentiated input is the layer value ``h``.

    :meth:`prefix_values` runs the prefix (compiled once); :meth:`bind` returns a view of the engine
    (sharing the compiled steps) with the current batch's context attached, which every step
    repeats to its number of rows.
    """

    def __init__(self, split: LayerSplit, jit_compile: JitMode = "auto") -> None:
        super().__init__(split.suffix, jit_compile, num_wrt=1)
        self.split = split
        self._context: tuple[np.ndarray, ...] = ()
        prefix = split.prefix.model
        specs = [tf.TensorSpec((None, *t.shape[1:]), dtype=t.dtype) for t in prefix.inputs]
        self.prefix_specs = specs

        def run(*xs: tf.Tensor) -> Any:
            outs = prefix(xs[0] if len(xs) == 1 else list(xs), training=False)
            return [tf.cast(o, tf.float32) if o.dtype.is_floating else o for o in outs]

        self._prefix_fn = tf.function(
            run, input_signature=specs, jit_compile=self.jit_compile, autograph=False
        )

    def prefix_values(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``[logits, h, *extra]`` of a batch of original inputs (float32 logits and ``h``)."""
        tensors = [
            tf.convert_to_tensor(x, dtype=s.dtype) for x, s in zip(inputs, self.prefix_specs)
        ]
        return [o.numpy() for o in self._prefix_fn(*tensors)]

    def bind(self, inputs: Sequence[np.ndarray]) -> LayerEngine:
        """A view of this engine for one batch of original inputs (all of them, in order)."""
        view = copy.copy(self)
        view._context = tuple(np.asarray(inputs[j]) for j in self.split.context)
        return view

    def _prepare(self, inputs: Sequence[np.ndarray], cls: np.ndarray | None) -> list[tf.Tensor]:
        rows = len(inputs[0])
        context = []
        for c in self._context:
            if rows % len(c):
                raise XaiValueError(
                    f"A step of {rows} rows does not repeat the {len(c)} samples of the bound "
                    "batch; attribution at a layer supports methods that stack their steps per "
                    "sample (gradients, integrated gradients, noise wrappers)."
                )
            context.append(np.tile(c, (rows // len(c),) + (1,) * (c.ndim - 1)))
        return super()._prepare([*inputs, *context], cls)


@dataclass(frozen=True)
class LayerResult:
    """What :func:`attribute` computed for ``N`` samples.

    Attributes:
        maps: signed float32 attributions at the layer, ``(N, *h_shape)``.
        values: the layer values ``h`` ``(N, *h_shape)``.
        extra: the prefix's extra tapped tensors, one array ``(N, ...)`` per path.
        logits, targets, scores: as in :class:`~xai.methods.registry.MethodResult`.
        baseline_scores: target score at the integrated-gradients baseline (None otherwise).
    """

    maps: np.ndarray
    values: np.ndarray
    extra: tuple[np.ndarray, ...]
    logits: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    baseline_scores: np.ndarray | None


def attribute(
    engine: LayerEngine,
    method: Method,
    params: dict[str, Any],
    inputs: Sequence[np.ndarray],
    targets: Any,
    *,
    batch_size: int = 32,
    baseline_fn: Callable[[np.ndarray, list[np.ndarray]], np.ndarray] | None = None,
    progress: Any = None,
) -> LayerResult:
    """Run ``method`` at the split layer over ``inputs`` (validated arrays, one per model input).

    Args:
        engine: the split model's engine.
        method: a method for which :func:`supports_layer_attribution` holds.
        params: its resolved parameters (with ``seed`` when stochastic).
        inputs: one array ``(N, ...)`` per model input, at the inputs' dtypes.
        targets: resolved targets (int32 ``(N,)``, ``-1`` = predicted, or a callable).
        batch_size: samples per batch.
        baseline_fn: for integrated gradients, ``baseline_fn(h, extra) -> baseline`` overriding the
            ``baseline`` parameter (e.g. the embedding of the padding token).
        progress: an iterable wrapper for the batches (a tqdm bar), or None.
    """
    from .methods.scoring import target_scores

    n = len(inputs[0])
    is_ig = (method.base if method.family == "smooth" else method.name) == "integrated_gradients"
    batches = range(0, n, int(batch_size))
    out: list[tuple[Any, ...]] = []
    for start in progress(batches) if progress is not None else batches:
        sl = slice(start, start + int(batch_size))
        batch = [x[sl] for x in inputs]
        _, h, *extra = engine.prefix_values(batch)
        bound = engine.bind(batch)
        t = targets if callable(targets) else targets[sl]
        run = dict(params)
        if is_ig and baseline_fn is not None:
            run["baseline"] = baseline_fn(h, extra)
        result: MethodResult = method.compute(bound, [h], t, **run)
        base_scores = None
        if is_ig and method.family != "smooth":
            from .methods.integrated import _baselines

            base = _baselines(
                [h],
                run["baseline"],
                seed=int(run.get("seed", 0)),
                blur_sigma=float(run["blur_sigma"]),
                is_channels_first=engine.tap.data_format == "channels_first",
            )
            rt = result.targets if not callable(targets) else targets
            base_scores = target_scores(bound, bound.forward(base), rt).astype(np.float32)
        out.append((result, h, extra, base_scores))
    maps = np.concatenate([r.maps[0] for r, *_ in out])
    extras = tuple(np.concatenate([e[i] for _, _, e, _ in out]) for i in range(len(out[0][2])))
    bases = [b for *_, b in out]
    return LayerResult(
        maps=maps.astype(np.float32),
        values=np.concatenate([h for _, h, _, _ in out]),
        extra=extras,
        logits=np.concatenate([r.logits for r, *_ in out]),
        targets=np.concatenate([r.targets for r, *_ in out]).astype(np.int32),
        scores=np.concatenate([r.scores for r, *_ in out]).astype(np.float32),
        baseline_scores=None if bases[0] is None else np.concatenate(bases),
    )


def check_inputs(model: keras.Model, inputs: Any) -> list[np.ndarray]:
    """Validate raw model inputs (any dtype: token ids, strings): one array per model input.

    Accepts an array (one-input models), a list in ``model.inputs`` order, or a dict keyed by the
    input names (keras-hub's ``token_ids``/``segment_ids``/``padding_mask``). A single sample
    (without the batch axis) gets one.
    """
    specs = list(model.inputs)
    names = [str(t.name) for t in specs]
    if isinstance(inputs, dict):
        missing = sorted(set(names) - set(inputs))
        if missing:
            raise bad_value(
                "inputs",
                f"a dict with the model's inputs {names}",
                sorted(inputs),
                f"Missing: {missing}.",
            )
        items = [inputs[k] for k in names]
    elif len(specs) > 1:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(specs):
            raise bad_value(
                "inputs", f"a list or dict with one array per model input {names}", inputs
            )
        items = list(inputs)
    else:
        items = [inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs]
    arrays = []
    for item, spec, name in zip(items, specs, names):
        arr = np.asarray(item)
        expected = tuple(spec.shape[1:])
        if arr.ndim == len(expected):
            arr = arr[None]
        if arr.ndim != len(expected) + 1 or any(
            w is not None and g != w for g, w in zip(arr.shape[1:], expected)
        ):
            raise bad_value(
                f"inputs[{name!r}]",
                f"one sample of shape {expected} or a batch (N, *{expected})",
                arr,
            )
        if spec.dtype == "string":
            if arr.dtype.kind not in "USO":
                raise bad_type(f"inputs[{name!r}]", "strings (the model's input is a string)", arr)
        elif arr.dtype.kind not in "biuf":
            raise bad_type(f"inputs[{name!r}]", "a numeric array", arr)
        elif np.issubdtype(np.dtype(spec.dtype), np.integer) and arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise bad_value(f"inputs[{name!r}]", "whole numbers (token ids)", arr)
        arrays.append(arr.astype(spec.dtype) if spec.dtype != "string" else arr.astype(object))
    if len({len(a) for a in arrays}) != 1:
        raise bad_value(
            "inputs", "the same number of samples for every input", [len(a) for a in arrays]
        )
    if len(arrays[0]) == 0:
        raise bad_value("inputs", "at least one sample", arrays[0])
    return arrays


__all__ = [
    "LAYER_METHODS",
    "LayerEngine",
    "LayerResult",
    "LayerSplit",
    "attribute",
    "check_inputs",
    "split_model",
    "supports_layer_attribution",
]
