"""Token-sequence models: attribution at the embedding, one signed score per token.

Gradients do not flow into integer token ids, so for a model whose integer (or string) input
feeds an ``Embedding`` (directly, or behind a ``TextVectorization`` / ``StringLookup`` /
``IntegerLookup`` inside the model, which are not differentiable) the gradient methods attribute
at the embedding output instead (:mod:`xai.intervention`) and sum over the embedding axis:

    score[i, l] = sum_d A[i, l, d]       (A: the method's attribution w.r.t. the embedding output)

* The embedding is found automatically: the graph node that is (or contains) a
  ``keras.layers.Embedding`` (keras-hub's ``ReversibleEmbedding`` and custom token-and-position
  layers included) fed by a non-float input; with several, the one with the largest vocabulary
  (BERT's token embedding, not its segment embedding). The choice is logged and recorded in
  ``Explanation.layer``; ``layer=`` picks another.
* Integrated gradients start, by default, from ``baseline="padding"``: the embedding of a sequence
  of padding tokens (id 0), captum's ``TokenReferenceBase``; ``"zeros"`` (the zero embedding) or
  an array are accepted too.
* Padding gets no attribution: positions where the ids are 0 under ``Embedding(mask_zero=True)``,
  or where an input named ``padding_mask`` is 0 (keras-hub); they are zero in the scores and not
  drawn.
* Occlusion replaces ``window`` consecutive tokens (default 1, stride 1) by ``fill_value``
  (default 0.0, the padding id) and records the score drop.

The result is a :class:`TokenExplanation`: ``token_scores`` ``(N, L)``, the token ids, the mask,
and, given a vocabulary (found in the model's lookup layer, or passed as ``vocabulary=`` to
``explain``, or later with :meth:`TokenExplanation.with_vocabulary`), coloured tokens in Jupyter,
as standalone HTML (:meth:`TokenExplanation.to_html`) and as a matplotlib figure; ``save()``
writes both.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import keras
import numpy as np

from . import _validation
from . import targets as targets_mod
from .errors import ModelStructureError, XaiValueError, bad_type, bad_value
from .explanation import ExplainedInput, Explanation
from .graph import ModelGraph, is_nested_model
from .inspection import InputInfo, get_layer
from .intervention import (
    LayerEngine,
    attribute,
    check_inputs,
    split_model,
    supports_layer_attribution,
)
from .methods.registry import Method

if TYPE_CHECKING:
    from .explainer import Explainer

log = logging.getLogger(__name__)

LOOKUP_LAYERS = (
    keras.layers.TextVectorization,
    keras.layers.StringLookup,
    keras.layers.IntegerLookup,
)
PADDING_ID = 0


@dataclass(frozen=True)
class TokenModel:
    """Where a token model's embedding is and how its ids and padding are found.

    Attributes:
        layer: path of the embedding node (the attribution layer).
        ids_input: the model input holding the ids, when the embedding reads one directly.
        ids_path: the node producing the ids (a lookup layer inside the model), else None.
        vocabulary: the lookup layer's vocabulary (index -> token), if any.
        mask_zero: whether the embedding masks id 0.
        padding_mask_input: index of an input named ``padding_mask`` (keras-hub), else None.
    """

    layer: str
    ids_input: int | None
    ids_path: str | None
    vocabulary: tuple[str, ...] | None
    mask_zero: bool
    padding_mask_input: int | None


def _embeddings(layer: Any) -> list[keras.layers.Embedding]:
    if isinstance(layer, keras.layers.Embedding):
        return [layer]
    if is_nested_model(layer) or not isinstance(layer, keras.layers.Layer):
        return []
    return [
        sub
        for sub in layer._flatten_layers(include_self=False, recursive=True)
        if isinstance(sub, keras.layers.Embedding)
    ]


def _is_float(dtype: Any) -> bool:
    return "float" in str(dtype)


def find_token_model(model: keras.Model) -> TokenModel | None:
    """The embedding of a token model (see the module docstring), or None for other models."""
    discrete = {j for j, t in enumerate(model.inputs) if not _is_float(t.dtype)}
    if not discrete:
        return None
    graph = ModelGraph(model)
    best: tuple[int, Any] | None = None
    for node in graph.nodes:
        if node.path is None or not (node.inputs & discrete):
            continue
        embeddings = _embeddings(node.operation)
        if not embeddings:
            continue
        size = max(int(e.input_dim) for e in embeddings)
        if best is None or size > best[0]:
            best = (size, node)
    if best is None:
        return None
    node = best[1]
    ids_input = ids_path = None
    vocabulary = None
    if node.preds:
        pred = graph.nodes[node.preds[0]]
        if pred.index in graph.inputs:
            ids_input = graph.inputs.index(pred.index)
        elif pred.path is not None:
            ids_path = pred.path
            producer = get_layer(model, pred.path)
            if isinstance(producer, LOOKUP_LAYERS):
                vocabulary = tuple(str(v) for v in producer.get_vocabulary())
    names = [str(t.name) for t in model.inputs]
    found = TokenModel(
        layer=str(node.path),
        ids_input=ids_input,
        ids_path=ids_path,
        vocabulary=vocabulary,
        mask_zero=any(bool(getattr(e, "mask_zero", False)) for e in _embeddings(node.operation)),
        padding_mask_input=names.index("padding_mask") if "padding_mask" in names else None,
    )
    log.info("xai: token model; attributing at the embedding %r", found.layer)
    return found


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TokenExplanation(Explanation):
    """An :class:`~xai.explanation.Explanation` of a token model: one signed score per token.

    ``attributions`` (``raw[0]``) is ``token_scores``; ``layer_maps[layer]`` keeps the full
    attribution at the embedding ``(N, L, D)``.

    Attributes:
        token_ids: int ``(N, L)`` the ids the embedding saw (None if they could not be read).
        token_mask: bool ``(N, L)``: True where a token counts (False: padding).
        vocabulary: index -> token string, for display (None: ids are shown as ``#id``).
        token_texts: explicit token strings per sample (overrides the vocabulary).
        baseline_scores: float32 ``(N,)`` target score at the integrated-gradients baseline.
    """

    token_ids: np.ndarray | None = None
    token_mask: np.ndarray | None = None
    vocabulary: tuple[str, ...] | None = None
    token_texts: tuple[tuple[str, ...], ...] | None = None
    baseline_scores: np.ndarray | None = None

    @property
    def token_scores(self) -> np.ndarray:
        """float32 ``(N, L)``: signed attribution per token (0 at padding)."""
        return self.raw[0]

    @property
    def mask(self) -> np.ndarray:
        """bool ``(N, L)``: the positions that count."""
        if self.token_mask is not None:
            return self.token_mask
        return np.ones(self.token_scores.shape, bool)

    @property
    def tokens(self) -> list[list[str]]:
        """The token strings of every sample (``#id`` where no vocabulary is known)."""
        if self.token_texts is not None:
            return [list(t) for t in self.token_texts]
        n, length = self.token_scores.shape[:2]
        if self.token_ids is None:
            return [[f"#{i}" for i in range(length)] for _ in range(n)]
        vocab = self.vocabulary
        return [
            [
                vocab[int(i)] if vocab is not None and 0 <= int(i) < len(vocab) else f"#{int(i)}"
                for i in row
            ]
            for row in self.token_ids
        ]

    @property
    def convergence_delta(self) -> np.ndarray | None:
        """Integrated gradients' completeness gap per sample: ``sum(A) - (S(x) - S(baseline))``
        summed over the embedding (None for other methods)."""
        if self.baseline_scores is None or not self.layer:
            return None
        full = self.layer_maps[self.layer[0]]
        total = full.reshape(len(full), -1).sum(axis=1, dtype=np.float64)
        return (total - (self.scores - self.baseline_scores)).astype(np.float32)

    def with_vocabulary(self, vocabulary: Sequence[str]) -> TokenExplanation:
        """A copy that shows tokens through ``vocabulary`` (index -> token string)."""
        return replace(self, vocabulary=check_vocabulary(vocabulary), token_texts=None)

    def with_tokens(self, tokens: Sequence[Sequence[str]]) -> TokenExplanation:
        """A copy that shows the given token strings (one list of ``L`` strings per sample)."""
        return replace(self, token_texts=check_tokens(tokens, self.token_scores.shape))

    def __getitem__(self, index: Any) -> TokenExplanation:
        sub = super().__getitem__(index)
        rows = np.atleast_1d(np.arange(len(self))[index])

        def take(a: Any) -> Any:
            return None if a is None else a[rows]

        texts = None if self.token_texts is None else tuple(self.token_texts[r] for r in rows)
        return replace(
            cast(TokenExplanation, sub),
            token_ids=take(self.token_ids),
            token_mask=take(self.token_mask),
            baseline_scores=take(self.baseline_scores),
            token_texts=texts,
        )

    # ----------------------------------------------------------------------------- pictures
    def _rows(self, indices: Sequence[int]) -> list[Any]:
        from .viz.text import TokenRow

        tokens = self.tokens
        return [
            TokenRow(
                caption=f"#{i} {self.method}: {self.label(i)}",
                tokens=tokens[i],
                scores=self.token_scores[i],
                mask=self.mask[i],
            )
            for i in indices
        ]

    def to_html(self, *, max_samples: int | None = None, standalone: bool = True) -> str:
        """Coloured tokens as HTML (escaped): a standalone page, or a fragment."""
        from .viz import text

        n = len(self) if max_samples is None else min(len(self), int(max_samples))
        fragment = text.tokens_html(self._rows(range(n)))
        if standalone:
            return text.html_document(fragment, title=f"xai {self.method}: token attributions")
        return text.inline_style() + fragment

    def _repr_html_(self) -> str:
        more = f" (first 8 of {len(self)})" if len(self) > 8 else ""
        layer = html.escape(", ".join(self.layer or ()))
        return (
            f"<div><b>Explanation</b> method={html.escape(self.method)}, layer={layer}, "
            f"{len(self)} sequence(s){more}</div>" + self.to_html(max_samples=8, standalone=False)
        )

    def plot(  # type: ignore[override]
        self, index: int | Sequence[int] = 0, ax: Any = None, *, width: int = 80
    ) -> Any:
        """A matplotlib Figure of coloured tokens for sample(s) ``index``; never calls show()."""
        from .viz.text import plot_tokens

        indices = [index] if isinstance(index, (int, np.integer)) else list(index)
        for i in indices:
            if (
                isinstance(i, bool)
                or not isinstance(i, (int, np.integer))
                or not 0 <= i < len(self)
            ):
                raise bad_value("index", f"an int in [0, {len(self) - 1}] (or a list)", index)
        return plot_tokens(self._rows([int(i) for i in indices]), ax=ax, width=width)

    def _extra_files(self) -> list[tuple[str, Any, Any]]:
        from . import io
        from .demo import _figure_png

        png = _figure_png(self.plot(list(range(min(len(self), 32)))))
        return [
            (
                "token_ids.npy",
                io.write_npy,
                self.token_ids if self.token_ids is not None else np.zeros(0),
            ),
            ("token_mask.npy", io.write_npy, self.mask),
            ("tokens.html", io.atomic_write_text, self.to_html()),
            ("tokens.png", io.atomic_write_bytes, png),
        ]

    def to_dict(self) -> dict[str, Any]:
        delta = self.convergence_delta
        return super().to_dict() | {
            "tokens": self.tokens,
            "token_scores": self.token_scores.tolist(),
            "convergence_delta": None if delta is None else delta.tolist(),
        }


def check_vocabulary(vocabulary: Any) -> tuple[str, ...]:
    """A vocabulary as a tuple of strings (a list, or a dict token -> index)."""
    if isinstance(vocabulary, dict):
        if not all(isinstance(v, (int, np.integer)) for v in vocabulary.values()):
            raise bad_type("vocabulary", "a list of tokens or a dict token -> index", vocabulary)
        size = max(vocabulary.values()) + 1 if vocabulary else 0
        out = [f"#{i}" for i in range(size)]
        for token, i in vocabulary.items():
            out[int(i)] = str(token)
        return tuple(out)
    if isinstance(vocabulary, str) or not isinstance(vocabulary, Sequence):
        raise bad_type("vocabulary", "a list of tokens (index -> token) or a dict", vocabulary)
    return tuple(str(v) for v in vocabulary)


def check_tokens(tokens: Any, shape: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
    """Token strings checked against the ``(N, L)`` scores."""
    if isinstance(tokens, str) or not isinstance(tokens, Sequence) or len(tokens) != shape[0]:
        raise bad_value("tokens", f"one list of {shape[1]} strings per sample ({shape[0]})", tokens)
    out = tuple(tuple(str(t) for t in row) for row in tokens)
    if any(len(row) != shape[1] for row in out):
        raise bad_value("tokens", f"lists of {shape[1]} strings (one per position)", tokens)
    return out


# --------------------------------------------------------------------------------------------
# explain() for token models and layer attribution
# --------------------------------------------------------------------------------------------


def token_model_of(explainer: Explainer) -> TokenModel | None:
    """The explainer's token model info, found once (kept with its engines)."""
    cache = explainer._engines
    if ("token_model",) not in cache:
        cache[("token_model",)] = find_token_model(explainer.model)
    return cast("TokenModel | None", cache[("token_model",)])


def layer_engine(explainer: Explainer, layer: str, extra: Sequence[str] = ()) -> LayerEngine:
    """The explainer's engine for attribution at ``layer``, built once."""
    key = ("at_layer", layer, tuple(extra))
    cache = explainer._engines
    if key not in cache:
        split = split_model(explainer.model, layer, output=explainer.output, extra=extra)
        cache[key] = LayerEngine(split, explainer.jit_compile)
    return cast(LayerEngine, cache[key])


def route(
    explainer: Explainer,
    method: Method,
    images: Any,
    *,
    targets: Any,
    batch_size: int,
    seed: int | None,
    preprocess: Callable[[np.ndarray], Any] | None,
    value_range: Any,
    progress: bool | None,
    params: dict[str, Any],
) -> Explanation | None:
    """Explain through :mod:`xai.intervention` when it applies, else None (the usual path).

    It applies to the layer-attribution methods when ``attribute_at`` is set or the model is a
    token model, and to occlusion on a token model.
    """
    at = getattr(explainer, "attribute_at", None)
    layer_method = supports_layer_attribution(method)
    if at is not None and layer_method:
        info = token_model_of(explainer)
        if info is not None and at != info.layer:
            info = None  # another layer of a token model: a plain layer attribution
    elif any(not _is_float(t.dtype) for t in explainer.model.inputs):
        info = token_model_of(explainer)
        if (
            info is not None
            and method.space == "input"
            and not (layer_method or method.name == "occlusion")
        ):
            raise ModelStructureError(
                f"Method {method.name!r} perturbs or differentiates the model's inputs, which for "
                f"token model {explainer.model.name!r} are integer token ids: the result would "
                "mean nothing. Use integrated_gradients, saliency, gradient_x_input or the "
                "smoothgrad family (they attribute at the embedding), occlusion (tokens replaced "
                "by the padding id), or a CAM method on a layer."
            )
        if info is None or not (layer_method or method.name == "occlusion"):
            return None
        at = info.layer
    else:
        return None
    params = dict(params)
    vocabulary = params.pop("vocabulary", None)
    tokens = params.pop("tokens", None)
    if info is None and (vocabulary is not None or tokens is not None):
        raise bad_value("vocabulary", "given only for token models", vocabulary)
    run_params = method.resolve_params(params)
    batch_size = _validation.positive_int("batch_size", batch_size)
    seed = _validation.optional_seed(seed)
    if method.stochastic:
        if seed is None:
            seed = int(cast(int, np.random.SeedSequence().entropy) % (2**31 - 1))
        run_params["seed"] = int(seed)
    if info is None:
        return _layer_explanation(
            explainer, method, run_params, images, targets, at, batch_size, preprocess, value_range
        )
    if preprocess is not None:
        raise bad_value("preprocess", "None for a token model (its inputs are ids)", preprocess)
    arrays = check_inputs(explainer.model, images)
    if method.name == "occlusion":
        return _token_occlusion(explainer, info, run_params, arrays, targets, vocabulary, tokens)
    extra = [info.ids_path] if info.ids_path else []
    engine = layer_engine(explainer, info.layer, extra)
    n = len(arrays[0])
    resolved = targets_mod.resolve(targets, n, engine.tap.head, engine.tap.num_logits)
    baseline_fn = None
    is_ig = (method.base if method.family == "smooth" else method.name) == "integrated_gradients"
    if is_ig:
        if "baseline" not in params:
            run_params["baseline"] = "padding"
        if isinstance(run_params["baseline"], str) and run_params["baseline"] == "padding":
            layer_obj = get_layer(explainer.model, info.layer)

            def baseline_fn(h: np.ndarray, extra_values: list[np.ndarray]) -> np.ndarray:
                ids_dtype = (
                    extra_values[0].dtype if extra_values else arrays[info.ids_input or 0].dtype
                )
                pad = np.full((1, h.shape[1]), PADDING_ID, dtype=ids_dtype)
                return np.asarray(layer_obj(pad), np.float32)[0]

    result = attribute(
        engine,
        method,
        run_params,
        arrays,
        resolved,
        batch_size=batch_size,
        baseline_fn=baseline_fn,
    )
    ids = (
        result.extra[0]
        if info.ids_path
        else (arrays[info.ids_input] if info.ids_input is not None else None)
    )
    maps = result.maps
    per_token = maps.reshape(*maps.shape[:2], -1).sum(axis=2) if maps.ndim > 2 else maps
    mask = _token_mask(info, ids, arrays, per_token.shape)
    return _token_explanation(
        explainer,
        method.name,
        run_params,
        per_token * mask,
        mask,
        ids,
        info,
        logits=result.logits,
        targets=result.targets,
        scores=result.scores,
        layer_maps={info.layer: maps},
        baseline_scores=result.baseline_scores,
        vocabulary=vocabulary,
        tokens=tokens,
        display=method.display,
        head=(engine.tap.head, engine.tap.num_logits),
    )


def _token_mask(
    info: TokenModel, ids: np.ndarray | None, arrays: list[np.ndarray], shape: tuple[int, ...]
) -> np.ndarray:
    if info.mask_zero and ids is not None:
        return np.asarray(ids) != PADDING_ID
    if info.padding_mask_input is not None:
        return np.asarray(arrays[info.padding_mask_input]) != 0
    return np.ones(shape, bool)


def _token_explanation(
    explainer: Explainer,
    method: str,
    run_params: dict[str, Any],
    per_token: np.ndarray,
    mask: np.ndarray,
    ids: np.ndarray | None,
    info: TokenModel,
    *,
    logits: np.ndarray,
    targets: np.ndarray,
    scores: np.ndarray,
    layer_maps: dict[str, np.ndarray],
    baseline_scores: np.ndarray | None,
    vocabulary: Any,
    tokens: Any,
    display: Any,
    head: tuple[str, int],
) -> TokenExplanation:
    vocab = check_vocabulary(vocabulary) if vocabulary is not None else info.vocabulary
    texts = check_tokens(tokens, per_token.shape) if tokens is not None else None
    return TokenExplanation(
        method=method,
        params=run_params,
        layer=(info.layer,),
        inputs=(
            ExplainedInput(
                raw=per_token.astype(np.float32),
                info=InputInfo(spatial=(per_token.shape[1],), channel_axis=None),
            ),
        ),
        targets=targets,
        scores=scores,
        logits=logits,
        probabilities=targets_mod.probabilities(logits, *head),
        display=display,
        layer_maps=layer_maps,
        class_names=explainer.class_names,
        token_ids=None if ids is None else np.asarray(ids),
        token_mask=mask.astype(bool),
        vocabulary=vocab,
        token_texts=texts,
        baseline_scores=baseline_scores,
    )


def _token_occlusion(
    explainer: Explainer,
    info: TokenModel,
    run_params: dict[str, Any],
    arrays: list[np.ndarray],
    targets: Any,
    vocabulary: Any,
    tokens: Any,
) -> TokenExplanation:
    """Occlusion of ``window`` consecutive tokens by ``fill_value`` (default: the padding id)."""
    from .methods.perturbation import occlusion_windows
    from .methods.scoring import check_positive_int, clean_targets, target_scores

    fill = run_params["fill_value"]
    if isinstance(fill, bool) or not isinstance(fill, (int, float, np.number)) or fill != int(fill):
        raise bad_value("fill_value", "a token id (a whole number) for a token model", fill)
    chunk_size = check_positive_int("chunk_size", run_params["chunk_size"])
    window = 1 if run_params["window"] is None else run_params["window"]
    stride = 1 if run_params["stride"] is None else run_params["stride"]
    if info.ids_input is not None:
        engine: Any = explainer.engine(False)
        j = info.ids_input
        ids = arrays[j]

        def forward(rows_ids: np.ndarray, reps: int) -> np.ndarray:
            feed = [
                rows_ids if k == j else np.tile(a, (reps,) + (1,) * (a.ndim - 1))
                for k, a in enumerate(arrays)
            ]
            return engine.forward(feed)
    elif info.ids_path is not None:
        split_engine = layer_engine(explainer, info.ids_path)
        ids = split_engine.prefix_values(arrays)[1]
        bound = split_engine.bind(arrays)
        engine = bound

        def forward(rows_ids: np.ndarray, reps: int) -> np.ndarray:
            return bound.forward([rows_ids])
    else:
        raise XaiValueError(
            f"Occlusion needs the token ids of the embedding {info.layer!r}, which this model "
            "computes with an operation xai cannot split at; use integrated_gradients."
        )
    ids = np.asarray(ids)
    n, length = ids.shape[:2]
    resolved = targets_mod.resolve(targets, n, engine.tap.head, engine.tap.num_logits)
    logits = forward(ids, 1)
    resolved, scores = clean_targets(engine, logits, resolved)
    mask = _token_mask(info, ids, arrays, ids.shape)
    _, windows = occlusion_windows((length,), window, stride)
    total = np.zeros((n, length), np.float64)
    coverage = np.zeros(length, np.float64)
    for win in windows:
        coverage[win[0]] += 1.0
    per_call = max(1, chunk_size // n)
    for start in range(0, len(windows), per_call):
        chunk = windows[start : start + per_call]
        rows = np.tile(ids, (len(chunk),) + (1,) * (ids.ndim - 1))
        for k, win in enumerate(chunk):
            rows[k * n : (k + 1) * n, win[0]] = np.where(
                mask[:, win[0]], np.asarray(fill).astype(ids.dtype), ids[:, win[0]]
            )
        t = resolved if callable(resolved) else np.tile(resolved, len(chunk))
        drop = np.repeat(scores[None], len(chunk), 0).reshape(-1) - target_scores(
            engine, forward(rows, len(chunk)), t
        )
        for k, win in enumerate(chunk):
            total[:, win[0]] += drop[k * n : (k + 1) * n, None]
    per_token = np.divide(total, coverage, out=np.zeros_like(total), where=coverage > 0)
    from .methods import get

    return _token_explanation(
        explainer,
        "occlusion",
        run_params | {"window": window, "stride": stride},
        (per_token * mask).astype(np.float32),
        mask,
        ids,
        info,
        logits=logits,
        targets=np.full(n, -1, np.int32) if callable(resolved) else resolved,
        scores=scores,
        layer_maps={},
        baseline_scores=None,
        vocabulary=vocabulary,
        tokens=tokens,
        display=get("occlusion").display,
        head=(engine.tap.head, engine.tap.num_logits),
    )


def _layer_explanation(
    explainer: Explainer,
    method: Method,
    run_params: dict[str, Any],
    images: Any,
    targets: Any,
    layer: str,
    batch_size: int,
    preprocess: Callable[[np.ndarray], Any] | None,
    value_range: Any,
) -> Explanation:
    """Attribution at ``layer`` of a model with float inputs: maps at that layer's resolution."""
    raw, ready = explainer.prepare(images, preprocess)
    engine = layer_engine(explainer, layer)
    n = len(ready[0])
    resolved = targets_mod.resolve(targets, n, engine.tap.head, engine.tap.num_logits)
    if value_range is not None:
        from .viz import check_value_range

        value_range = check_value_range(value_range)
    result = attribute(engine, method, run_params, ready, resolved, batch_size=batch_size)
    info = engine.split.value_info
    image = explainer._image_inputs(raw)[0] if explainer.num_inputs == 1 else None
    if len(info.spatial) != 2:
        image = None
    return Explanation(
        method=method.name,
        params=run_params,
        layer=(layer,),
        inputs=(ExplainedInput(raw=result.maps, info=info, image=image),),
        targets=result.targets,
        scores=result.scores,
        logits=result.logits,
        probabilities=targets_mod.probabilities(
            result.logits, engine.tap.head, engine.tap.num_logits
        ),
        display=method.display,
        value_range=value_range,
        layer_maps={layer: result.maps},
        class_names=explainer.class_names,
    )


__all__ = ["TokenExplanation", "TokenModel", "find_token_model", "route"]
