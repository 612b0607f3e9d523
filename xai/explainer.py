"""``explain()``: one verb for every method; ``Explainer`` reuses compiled steps across calls."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

import keras
import numpy as np

from . import _validation, postprocess
from . import methods as methods_mod
from . import targets as targets_mod
from ._progress import progress_bar as tqdm
from .dense_targets import StructuredTarget
from .engine import Engine, JitMode, resolve_jit
from .errors import ModelStructureError, bad_type, bad_value
from .explanation import ExplainedInput, Explanation
from .graph import split_port
from .inspection import InputInfo, input_layouts
from .layer_choice import attention_ports
from .methods.registry import Method, MethodResult
from .taps import Tap, check_graph_model, model_data_format, resolve_layers, resolve_output
from .tokens import TokenGrid, check_token_grid, grid_for, patch_size

log = logging.getLogger(__name__)

ImagesLike = Any  # np.ndarray | tf.Tensor | list of those (one per model input)


def check_finite(name: str, array: np.ndarray) -> None:
    """Refuse NaN and Inf in model inputs (the maps of such inputs are meaningless)."""
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise bad_value(name, "finite (no NaN or Inf)", array, f"It holds {bad} non-finite values.")


def _check_spatial(tap: Tap, token_grid: Any = None) -> None:
    """Layer-space methods need maps: a tapped tensor must have spatial axes besides channels.

    A transformer's ``(B, T, C)`` tokens of an image input count when they lay out on the patch
    grid (:mod:`xai.tokens`); when they do not, the error says how to give the grid.
    """
    grids = tap.token_grids or (None,) * len(tap.layers)
    for path, t, grid, owner in zip(tap.layers, tap.model.outputs[1:], grids, tap.layer_inputs):
        if split_port(path)[1] == "attention":
            raise ModelStructureError(
                f"`layer={path!r}` reads attention probabilities, which are not a feature map "
                "for CAM methods. Use method='attention_rollout' or 'generic_attention' for "
                "attention, or tap the tokens (layer=None picks them)."
            )
        info = tap.input_layouts[owner] if owner is not None and tap.input_layouts else None
        if grid is None and len(t.shape) == 3 and info is not None and len(info.spatial) == 2:
            patch = patch_size(tap.source) if tap.source is not None else None
            grid_for(path, tuple(t.shape), info.spatial, patch=patch, override=token_grid)
        if len(t.shape) < 3:
            raise ModelStructureError(
                f"`layer` must have a spatial output (batch, *spatial, channels) for CAM methods. "
                f"Received: layer={path!r} with output shape {tuple(t.shape)}, which has no "
                "spatial axis (a Dense, pooled or flattened tensor). Choose a convolutional "
                "layer before the pooling, or leave layer=None to pick the map the head sees."
            )


class Explainer:
    """Explains one model; keeps its taps and compiled steps so repeated calls do not retrace.

    Args:
        model: a Functional or built Sequential Keras model (never modified).
        layer: CAM layer path(s) (``"outer/inner"`` for nested models), or None to auto-select one
            per input (logged, and recorded in every Explanation).
        output: for multi-output models, which output to explain (index or name).
        jit_compile: ``"auto"`` (XLA on GPU, plain ``tf.function`` on CPU), True or False.
        class_names: optional names of the classes, used in captions and saved manifests.
        token_grid: for a transformer whose tokens' patch grid cannot be inferred (see
            :mod:`xai.tokens`): ``(rows, columns)`` or a :class:`~xai.tokens.TokenGrid`.
        attribute_at: a layer path at whose output the input-gradient methods (saliency,
            gradient x input, integrated gradients, the SmoothGrad family) attribute instead of
            the inputs (see :mod:`xai.intervention`); token models do it at their embedding
            without it (see :mod:`xai.tokens_text`).
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        layer: str | Sequence[str] | None = None,
        output: int | str | None = None,
        jit_compile: JitMode = "auto",
        class_names: Sequence[str] | None = None,
        token_grid: TokenGrid | tuple[int, int] | None = None,
        attribute_at: str | None = None,
        _engines: dict[Any, Any] | None = None,
    ) -> None:
        self.model = check_graph_model(model)
        self.token_grid = check_token_grid(token_grid)
        self.layer = layer
        self.output = output
        self.jit_compile = jit_compile
        self.class_names = tuple(str(c) for c in class_names) if class_names is not None else None
        self._engines: dict[Any, Any] = {} if _engines is None else _engines
        resolve_output(self.model, output)  # validate now; taps are built lazily, once
        if layer is not None:  # validate early, with did-you-mean
            resolve_layers(self.model, layer)
        self.attribute_at = attribute_at
        if attribute_at is not None:
            resolve_layers(self.model, attribute_at)
        self.data_format = model_data_format(self.model)
        self.layouts = input_layouts(self.model, self.data_format)  # computed once

    # --------------------------------------------------------------------------------- engines
    def engine(self, with_layers: bool | str) -> Engine:
        """The engine for layer-space (``True``), input-space (``False``) or attention
        (``"attention"``: every attention layer's probabilities) methods, built once."""
        if with_layers not in self._engines:
            if with_layers == "attention":
                layers: Any = attention_ports(self.model, self.layer)
            elif with_layers:
                layers = self.layer if self.layer is not None else "auto"
            else:
                layers = None
            tap = Tap.build(self.model, layers, output=self.output, token_grid=self.token_grid)
            if with_layers:
                log.info("xai: explaining layer(s) %s", ", ".join(tap.layers))
            self._engines[with_layers] = Engine(tap, self.jit_compile)
        return self._engines[with_layers]

    @staticmethod
    def engine_kind(m: Method) -> bool | str:
        """Which :meth:`engine` a method runs on."""
        return "attention" if m.family == "attention" else m.needs_layer

    @property
    def num_inputs(self) -> int:
        return len(self.model.inputs)

    # --------------------------------------------------------------------------------- inputs
    def _input_info(self, j: int) -> InputInfo:
        return self.layouts[j]

    def prepare(
        self, images: ImagesLike, preprocess: Callable[[np.ndarray], Any] | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Validate ``images`` and return (raw batched arrays, model-ready float arrays)."""
        n_in = self.num_inputs
        if n_in > 1:
            if not isinstance(images, (list, tuple)) or len(images) != n_in:
                raise bad_value(
                    "images",
                    f"a list with one array per model input ({n_in} inputs: "
                    + ", ".join(str(t.name) for t in self.model.inputs)
                    + ")",
                    images,
                )
            items = list(images)
        else:
            if isinstance(images, (list, tuple)) and len(images) == 1 and np.ndim(images[0]) > 1:
                items = [images[0]]
            else:
                items = [images]
        raw, ready = [], []
        n_samples = None
        for j, item in enumerate(items):
            name = "images" if n_in == 1 else f"images[{j}]"
            try:
                arr = np.asarray(item)
            except Exception as exc:
                raise bad_type(name, "an array (numpy or tensor)", item) from exc
            if arr.dtype == object or not (
                np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
            ):
                raise bad_type(name, "a numeric array", item)
            expected = tuple(self.model.inputs[j].shape[1:])
            dims = ", ".join(str(d) for d in expected)
            if arr.ndim == len(expected):
                arr = arr[None]
            if arr.ndim != len(expected) + 1:
                raise bad_value(
                    name,
                    f"one sample of shape {expected} or a batch (N, {dims})",
                    arr,
                    "Add or remove a batch axis, e.g. images[None] for one image.",
                )
            raw.append(arr)
            model_in = np.asarray(preprocess(arr) if preprocess is not None else arr)
            if model_in.ndim != len(expected) + 1 or len(model_in) != len(arr):
                raise bad_value(
                    "preprocess",
                    f"a function returning a batch of shape (N, {dims})",
                    model_in,
                )
            mismatch = [
                (i, got, want)
                for i, (got, want) in enumerate(zip(model_in.shape[1:], expected))
                if want is not None and got != want
            ]
            if mismatch:
                i, got, want = mismatch[0]
                is_channel = len(expected) >= 2 and (
                    i == len(expected) - 1 if self.data_format == "channels_last" else i == 0
                )
                what = "channel count" if is_channel else f"size of axis {i + 1}"
                fix = (
                    "Convert grayscale/RGBA images to the channels the model expects."
                    if is_channel
                    else "Resize the images to the model's input size (or pass preprocess=)."
                )
                raise bad_value(
                    name,
                    f"shaped like the model input (N, {dims}); its {what} is {got}, "
                    f"expected {want}",
                    model_in,
                    fix,
                )
            model_in = (
                model_in.astype(np.float32)
                if not np.issubdtype(model_in.dtype, np.floating)
                else model_in
            )
            check_finite(name, model_in)
            if n_samples is None:
                n_samples = len(model_in)
            elif len(model_in) != n_samples:
                raise bad_value(
                    "images", "the same number of samples for every input", [len(r) for r in raw]
                )
            ready.append(model_in)
        if n_samples == 0:
            raise bad_value("images", "at least one sample", raw[0])
        return raw, ready

    def _image_inputs(self, raw: list[np.ndarray]) -> list[np.ndarray | None]:
        """The raw inputs that are 2-D channels-last images (shown by overlays), else None."""
        out: list[np.ndarray | None] = []
        for j, arr in enumerate(raw):
            is_image = (
                arr.ndim == 4
                and self.data_format == "channels_last"
                and arr.shape[-1] in (1, 3, 4)
                and len(self._input_info(j).spatial) == 2
            )
            out.append(arr if is_image else None)
        return out

    def _signal_inputs(self, raw: list[np.ndarray]) -> list[np.ndarray | None]:
        """The raw inputs that are sequences (one spatial axis and a channel axis), else None."""
        out: list[np.ndarray | None] = []
        for j, arr in enumerate(raw):
            info = self._input_info(j)
            is_signal = len(info.spatial) == 1 and info.channel_axis is not None and arr.ndim == 3
            out.append(arr if is_signal else None)
        return out

    # --------------------------------------------------------------------------------- explain
    def explain(
        self,
        images: ImagesLike,
        method: str | Method = "gradcam",
        *,
        targets: targets_mod.TargetSpec = None,
        batch_size: int = 32,
        seed: int | None = None,
        preprocess: Callable[[np.ndarray], Any] | None = None,
        value_range: tuple[float, float] | None = None,
        progress: bool | None = None,
        **params: Any,
    ) -> Explanation:
        """Explain ``images``; see :func:`xai.explain` for the arguments."""
        m = methods_mod.get(method)
        from .tokens_text import route

        routed = route(
            self,
            m,
            images,
            targets=targets,
            batch_size=batch_size,
            seed=seed,
            preprocess=preprocess,
            value_range=value_range,
            progress=progress,
            params=params,
        )
        if routed is not None:  # attribution at a layer / token models (xai.intervention)
            return routed
        run_params = m.resolve_params(params)
        if value_range is not None:
            from .viz import check_value_range

            value_range = check_value_range(value_range)
        batch_size = _validation.positive_int("batch_size", batch_size)
        seed = _validation.optional_seed(seed)
        if m.stochastic:
            if seed is None:
                seed = int(cast(int, np.random.SeedSequence().entropy) % (2**31 - 1))
            run_params["seed"] = int(seed)
        raw, ready = self.prepare(images, preprocess)
        tap = self.engine(self.engine_kind(m)).tap
        resolved = targets_mod.resolve_for_tap(targets, len(ready[0]), tap)
        return self.run(
            m,
            run_params,
            raw,
            ready,
            resolved,
            batch_size=batch_size,
            progress=progress,
            value_range=value_range,
        )

    def run(
        self,
        m: Method,
        run_params: dict[str, Any],
        raw: list[np.ndarray],
        ready: list[np.ndarray],
        resolved: np.ndarray | Callable[[Any], Any],
        *,
        batch_size: int = 32,
        progress: bool | None = False,
        value_range: tuple[float, float] | None = None,
    ) -> Explanation:
        """The trusted per-batch kernel under :meth:`explain`: no argument is checked again.

        For callers that validated once at their own boundary and then explain many batches (the
        export, the training callbacks): ``m`` a registered method, ``run_params`` the output of
        ``m.resolve_params`` (with ``"seed"`` for a stochastic method), ``raw``/``ready`` as
        :meth:`prepare` returns them, ``resolved`` as :func:`xai.targets.resolve` returns it.
        """
        n = len(ready[0])
        engine = self.engine(self.engine_kind(m))
        tap = engine.tap
        if m.needs_layer and self.num_inputs > 1 and None in tap.layer_inputs:
            mixed = [p for p, o in zip(tap.layers, tap.layer_inputs) if o is None]
            raise ModelStructureError(
                f"Layer(s) {mixed} combine several model inputs, so their CAM cannot be drawn over "
                "one input. Choose one layer inside each input branch, e.g. layer=['left_conv', "
                "'right_conv'], or leave layer=None to auto-select one per input."
            )
        if m.needs_layer and m.family != "attention":
            _check_spatial(tap, self.token_grid)

        results: list[MethodResult] = []
        batches = range(0, n, int(batch_size))
        bar = tqdm(
            batches,
            desc=f"xai {m.name}",
            unit="batch",
            disable=(True if len(batches) < 2 else None) if progress is None else not progress,
            leave=False,
        )
        for start in bar:
            sl = slice(start, start + int(batch_size))
            t = resolved if callable(resolved) else resolved[sl]
            results.append(m.compute(engine, [x[sl] for x in ready], t, **run_params))

        maps = [np.concatenate([r.maps[i] for r in results]) for i in range(len(results[0].maps))]
        logits = np.concatenate([r.logits for r in results])
        infos = tuple(self._input_info(j) for j in range(self.num_inputs))
        layer_maps: dict[str, np.ndarray] = {}
        fused = [False] * self.num_inputs
        if m.family == "attention" and self.num_inputs > 1:
            raise ModelStructureError(
                f"Method {m.name!r} explains one image input; model {self.model.name!r} has "
                f"{self.num_inputs} inputs."
            )
        if m.needs_layer and m.family != "attention":
            layer_maps = dict(zip(tap.layers, maps))
            per_input: list[np.ndarray] = []
            for j in range(self.num_inputs):
                owned = [
                    mp
                    for mp, o in zip(maps, tap.layer_inputs)
                    if o == j or (o is None and self.num_inputs == 1)
                ]
                if not owned:
                    raise ModelStructureError(
                        f"No tapped layer belongs to model input {j}; pass one layer per "
                        "input branch."
                    )
                if len(owned) == 1:
                    per_input.append(owned[0])
                else:  # several layers: mean of their normalised heatmaps (at input resolution)
                    # input-space maps (e.g. guided Grad-CAM) still carry the input's channel axis
                    axis = infos[j].channel_axis if m.space == "input" else None
                    per_input.append(
                        postprocess.fuse(
                            [
                                postprocess.heatmap(mp, infos[j].spatial, m.display, axis)
                                for mp in owned
                            ]
                        )
                    )
                    fused[j] = True
            maps = per_input
        return Explanation(
            method=m.name,
            params=run_params,
            layer=tap.layers if m.needs_layer else None,
            inputs=tuple(
                ExplainedInput(raw=r, info=info, image=image, signal=signal, fused=f)
                for r, info, image, signal, f in zip(
                    maps, infos, self._image_inputs(raw), self._signal_inputs(raw), fused
                )
            ),
            targets=np.concatenate([r.targets for r in results]).astype(np.int32),
            scores=np.concatenate([r.scores for r in results]).astype(np.float32),
            logits=logits,
            probabilities=targets_mod.probabilities(logits, tap.head, tap.num_logits),
            display=m.display,
            value_range=value_range,
            layer_maps=layer_maps,
            class_names=self.class_names,
            target=resolved.record() if isinstance(resolved, StructuredTarget) else None,
        )


def explain(
    model: keras.Model,
    images: ImagesLike,
    method: str | Method = "gradcam",
    *,
    targets: targets_mod.TargetSpec = None,
    layer: str | Sequence[str] | None = None,
    output: int | str | None = None,
    batch_size: int = 32,
    seed: int | None = None,
    preprocess: Callable[[np.ndarray], Any] | None = None,
    value_range: tuple[float, float] | None = None,
    jit_compile: JitMode = "auto",
    class_names: Sequence[str] | None = None,
    progress: bool | None = None,
    token_grid: TokenGrid | tuple[int, int] | None = None,
    **params: Any,
) -> Explanation:
    """Explain what ``model`` saw in ``images``.

    Args:
        model: any Functional or built Sequential Keras model (softmax/sigmoid heads are handled:
            gradients are always taken of the pre-activation class logit). Never modified.
        images: one sample ``(H, W, C)`` or a batch ``(N, H, W, C)`` (any input rank: 1-D signals,
            volumes), uint8 or float; for a multi-input model, a list with one array per input.
        method: a registered method name (``xai.methods.available()``) or a Method object.
        targets: ``None``/``"predicted"`` (the top class), an int for every sample, one int per
            sample, or a callable ``f(logits) -> (batch,)`` scores.
        layer: CAM layer path(s); None auto-selects (the last spatial layer, nested models
            included). Several layers are fused (mean of normalised maps). For saliency,
            gradient x input, integrated gradients and the SmoothGrad family, the layer at whose
            output they attribute (:mod:`xai.intervention`; token models: the embedding).
        output: which output of a multi-output model (index or name).
        batch_size: samples per compiled step (memory bound).
        seed: seed of stochastic methods; None draws one and records it in ``params``.
        preprocess: function applied to the batched images before the model (e.g. a
            ``keras.applications`` ``preprocess_input``); attributions refer to its output.
        value_range: display range of float images for overlays (default (0, 1); uint8 is 0-255).
        jit_compile: ``"auto"``, True or False.
        class_names: optional class names for captions.
        progress: show a tqdm bar (None: only for several batches on a terminal).
        token_grid: for Vision Transformers whose patch grid cannot be inferred:
            ``(rows, columns)`` or a :class:`~xai.tokens.TokenGrid` (see :mod:`xai.tokens`).
        **params: the method's own parameters (e.g. ``num_samples``, ``noise_level``).

    Returns:
        An :class:`~xai.explanation.Explanation`.

    Repeated calls on the same model object are as fast as an :class:`Explainer`: the taps and
    compiled steps of earlier calls with the same ``layer``, ``output`` and ``jit_compile`` are
    reused (held in a cache keyed weakly by the model, so deleting the model frees them; they share
    the model's variables, so training between calls is seen). :func:`clear_cache` drops them.
    """
    if isinstance(method, str) and method not in methods_mod.available():
        methods_mod.get(method)  # fail fast with did-you-mean, before building anything
    model = check_graph_model(model)
    attribute_at = None
    if layer is not None and isinstance(layer, str):
        from .intervention import supports_layer_attribution

        if supports_layer_attribution(methods_mod.get(method)):
            attribute_at, layer = layer, None  # an input method's layer= means "attribute there"
    explainer = Explainer(
        model,
        layer=layer,
        output=output,
        jit_compile=jit_compile,
        class_names=class_names,
        token_grid=token_grid,
        attribute_at=attribute_at,
        _engines=_cached_engines(model, layer, output, jit_compile, token_grid),
    )
    return explainer.explain(
        images,
        method,
        targets=targets,
        batch_size=batch_size,
        seed=seed,
        preprocess=preprocess,
        value_range=value_range,
        progress=progress,
        **params,
    )


# model -> {(layer, output, jit): engines of an Explainer}. Weak keys: a deleted model is freed
# (taps hold their source model weakly, so the values do not keep the key alive).
_Engines = dict[Any, Any]
_ENGINES: weakref.WeakKeyDictionary[keras.Model, dict[tuple[Any, ...], _Engines]] = (
    weakref.WeakKeyDictionary()
)


def _cached_engines(
    model: keras.Model, layer: Any, output: Any, jit_compile: JitMode, token_grid: Any = None
) -> _Engines:
    """The engines shared by every one-shot ``explain`` call with these settings."""
    key_layer = tuple(layer) if isinstance(layer, (list, tuple)) else layer
    key_grid = tuple(token_grid) if isinstance(token_grid, list) else token_grid
    key = (key_layer, output, resolve_jit(jit_compile), key_grid)
    return _ENGINES.setdefault(model, {}).setdefault(key, {})


def clear_cache(model: keras.Model | None = None) -> None:
    """Drop the taps and compiled steps that :func:`explain` keeps for ``model`` (None: all).

    Only memory is freed: the next call rebuilds them (one trace). Explainers are not affected.
    """
    if model is None:
        _ENGINES.clear()
    else:
        _ENGINES.pop(model, None)


__all__ = ["Explainer", "clear_cache", "explain"]
