"""The engine: the only user of ``tf.GradientTape`` in xai.

An :class:`Engine` owns one :class:`~xai.taps.Tap` and compiles its gradient steps once per kind
of step (and per target callable), with a ``None`` batch dimension so a partial last batch does not
retrace. Every step runs the model with ``training=False`` and differentiates the *class logit*
(never the softmax probability). Activations and gradients come back as float32 NumPy arrays.

``jit_compile="auto"`` means XLA on an accelerator and plain ``tf.function`` on CPU, where XLA makes
depthwise/separable convolutions 10-80x slower (measured; see the README, "How it works").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import numpy as np
import tensorflow as tf

from . import targets as targets_mod
from .dense_targets import StructuredTarget
from .errors import XaiValueError, bad_value
from .taps import Tap

JitMode = Literal["auto"] | bool
T = TypeVar("T")
Reducer = Callable[[list[Any], list[Any]], Sequence[Any]]
"""``reduce(values, gradients) -> tensors``: reduces a step's float32 tensors inside the compiled
step (with ``keras.ops``), so that only its (small) result is copied back, e.g. the attention
rollout of every block's attention. It is part of the step's cache key: pass the same function
object for every batch (a module-level function, or one cached per parameter set)."""


def resolve_jit(jit_compile: JitMode) -> bool:
    """``"auto"`` -> True when TensorFlow sees a GPU/TPU, else False; booleans pass through."""
    if isinstance(jit_compile, bool):
        return jit_compile
    if jit_compile == "auto":
        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    raise bad_value("jit_compile", "'auto', True or False", jit_compile)


@dataclass(frozen=True)
class StepResult:
    """What one gradient step returns for a batch of ``B`` samples.

    Attributes:
        logits: raw logits of the chosen output, float32 ``(B, K)``.
        targets: class explained per sample, int32 ``(B,)`` (``-1`` for a callable target).
        scores: the differentiated score per sample, float32 ``(B,)``.
        values: the tensors differentiated against (layer activations or the inputs), float32.
        gradients: d(score)/d(values), float32, same shapes as ``values``.
    """

    logits: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    values: list[np.ndarray]
    gradients: list[np.ndarray]


class Engine:
    """Compiled, batched gradient steps over a tap.

    Args:
        tap: the tap whose model returns ``[logits, *activations]``.
        jit_compile: ``"auto"``, True or False (see module docstring).
        num_wrt: input gradients are taken w.r.t. the first ``num_wrt`` model inputs only; the
            others are context, passed at their own dtype and not differentiated (e.g. the token
            ids beside the embedding values of :mod:`xai.intervention`). None: every input.
    """

    def __init__(
        self, tap: Tap, jit_compile: JitMode = "auto", *, num_wrt: int | None = None
    ) -> None:
        self.tap = tap
        self.jit_compile = resolve_jit(jit_compile)
        self.num_wrt = num_wrt
        self._steps: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._derived: dict[Hashable, Any] = {}
        model = tap.model
        self._input_specs = [
            tf.TensorSpec((None, *t.shape[1:]), dtype=t.dtype) for t in model.inputs
        ]
        self.trace_count = 0  # number of times any step was traced (for tests and benchmarks)
        self._discrete_inputs = any(not s.dtype.is_floating for s in self._input_specs)

    # ---------------------------------------------------------------------------------------
    @property
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        """Per-input shapes without the batch axis."""
        return [tuple(s.shape[1:]) for s in self._input_specs]

    @property
    def input_dtypes(self) -> list[tf.DType]:
        return [s.dtype for s in self._input_specs]

    def _call_tap(self, inputs: Sequence[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        outs = self.tap.model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        return outs[0], outs[1:]

    def _score(
        self, logits: tf.Tensor, cls: tf.Tensor | None, target_fn: Any
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Per-sample score and resolved class of a batch of logits (inside the trace)."""
        if target_fn is not None:
            value = target_fn(logits)
            if value is None:
                raise XaiValueError(
                    "`targets` callable must return one score per sample, shape (batch,). "
                    "Received: None (did the function forget to return?). Example: "
                    "targets=lambda z: z[:, 3]."
                )
            score = tf.cast(value, tf.float32)
            if score.shape.rank != 1:
                raise XaiValueError(
                    "`targets` callable must return one score per sample, shape (batch,). "
                    f"Received: a tensor of shape {score.shape} from logits of shape "
                    f"{logits.shape}. Reduce it, e.g. lambda z: z[:, 3] or "
                    "lambda z: tf.reduce_sum(z[:, :, 0], axis=1)."
                )
            return score, tf.fill(tf.shape(score), targets_mod.PREDICTED)
        z = targets_mod.class_logits(logits, self.tap.head, self.tap.num_logits)
        assert cls is not None  # noqa: S101 - a class index tensor when there is no target_fn
        resolved = tf.where(cls < 0, tf.argmax(z, axis=-1, output_type=tf.int32), cls)
        return tf.gather(z, resolved, batch_dims=1), resolved

    def _build(
        self, kind: str, target_fn: Any, reduce: Reducer | None = None
    ) -> Callable[..., Any]:
        n_inputs = len(self._input_specs)
        signature = [*self._input_specs, tf.TensorSpec((None,), tf.int32)]
        structured = target_fn if isinstance(target_fn, StructuredTarget) else None
        if structured is not None:  # its per-sample arrays are step arguments, not constants
            signature += structured.specs()
            target_fn = None

        def score_of(logits: tf.Tensor, cls: tf.Tensor, arrays: Sequence[tf.Tensor]) -> Any:
            if structured is not None:
                return structured.score(logits, cls, *arrays), cls
            return self._score(logits, cls, target_fn)

        def step(*args: tf.Tensor) -> Any:
            self.trace_count += 1  # runs at trace time only
            inputs, cls = list(args[:n_inputs]), args[n_inputs]
            arrays = args[n_inputs + 1 :]
            if kind == "forward":
                logits, _ = self._call_tap(inputs)
                return tf.cast(logits, tf.float32)
            if kind == "values":  # activations without gradients (attention rollout)
                logits, acts = self._call_tap(inputs)
                score, resolved = score_of(logits, cls, arrays)
                values = [tf.cast(v, tf.float32) for v in self._as_maps(acts)]
                return (
                    tf.cast(logits, tf.float32),
                    resolved,
                    score,
                    list(reduce(values, [])) if reduce is not None else values,
                )
            # Watching the inputs records every op downstream of them, so gradients reach the
            # tapped activations even when the model is frozen (trainable=False): a tape that only
            # watched variables would record nothing there and return zeros.
            n_wrt = len(inputs) if self.num_wrt is None else self.num_wrt
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                inputs = [
                    tf.cast(x, tf.float32) if i < n_wrt and not x.dtype.is_floating else x
                    for i, x in enumerate(inputs)
                ]
                for x in inputs[:n_wrt]:
                    tape.watch(x)
                if kind == "layers" and self._discrete_inputs:
                    # Nothing downstream of integer ids is recorded (an Embedding's lookup is not
                    # differentiable in its ids): watch the variables, so the ops after the
                    # lookup are, and gradients reach the tapped activations.
                    for v in self.tap.model.variables:
                        if "float" in str(v.dtype):  # not integer states (seed generators)
                            tape.watch(getattr(v, "value", v))  # the backend variable
                logits, acts = self._call_tap(inputs)
                score, resolved = score_of(logits, cls, arrays)
            wrt = acts if kind == "layers" else inputs[:n_wrt]
            # Samples are independent in inference mode, so d(sum of scores) gives per-sample grads
            # (a vector target is differentiated as its sum)
            grads = tape.gradient(score, wrt, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            if kind == "layers":  # token activations as (B, h, w, C) maps, prefix rows dropped
                wrt, grads = self._as_maps(wrt), self._as_maps(grads)
            # The inputs are not returned (the caller has them): no copy back for input gradients.
            values = [tf.cast(v, tf.float32) for v in wrt] if kind == "layers" else []
            grads = [tf.cast(g, tf.float32) for g in grads]
            if reduce is not None:  # reduced in the compiled step: only the result comes back
                values, grads = list(reduce(values, grads)), []
            return (tf.cast(logits, tf.float32), resolved, score, values, grads)

        # autograph is not needed (no Python control flow on tensors) and would wrap our errors.
        # TensorFlow counts traces per code object, so every engine's `step` would look like one
        # function retraced over and over ("triggered tf.function retracing" warnings after five
        # engines) although each traces once; a partial is counted on its own.
        return tf.function(
            functools.partial(step),
            input_signature=signature,
            jit_compile=self.jit_compile,
            autograph=False,
        )

    def _as_maps(self, tensors: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """Tapped token activations ``(B, T, C)`` laid out on their patch grid (others as is)."""
        grids = self.tap.token_grids or (None,) * len(tensors)
        return [
            g.to_map(t) if g is not None and t.shape.rank == 3 else t
            for t, g in zip(tensors, grids)
        ]

    def _step(self, kind: str, target_fn: Any, reduce: Reducer | None = None) -> Callable[..., Any]:
        # A structured target's step depends on its structure only (its data are arguments).
        fn_key = target_fn.key if isinstance(target_fn, StructuredTarget) else target_fn
        key = (kind, fn_key, reduce)
        if key not in self._steps:
            self._steps[key] = self._build(kind, target_fn, reduce)
        return self._steps[key]

    def _prepare(self, inputs: Sequence[np.ndarray], cls: np.ndarray | None) -> list[tf.Tensor]:
        n = len(inputs[0])
        tensors = [
            tf.convert_to_tensor(x, dtype=s.dtype) for x, s in zip(inputs, self._input_specs)
        ]
        c = (
            np.full((n,), targets_mod.PREDICTED, np.int32)
            if cls is None
            else np.asarray(cls, np.int32)
        )
        return [*tensors, tf.convert_to_tensor(c)]

    def derived(self, key: Hashable, build: Callable[[Engine], T]) -> T:
        """A step derived from this engine's tap, built once by ``build(self)`` and kept here.

        For the compiled steps that some methods and callbacks need besides the gradient steps: the
        guided-backprop replay (``("guided",)``), an Ablation-CAM head per tapped layer
        (``("ablation_head", i)``), an activation recorder. They live as long as the engine (and
        so, for ``xai.explain``, as long as its cached taps), never in module-level caches.
        """
        if key not in self._derived:
            self._derived[key] = build(self)
        return cast(T, self._derived[key])

    # ---------------------------------------------------------------------------------------
    def forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Logits of the chosen output, float32 ``(B, K)``."""
        return self._step("forward", None)(*self._prepare(inputs, None)).numpy()

    def values(
        self,
        inputs: Sequence[np.ndarray],
        targets: np.ndarray | Callable[[Any], Any],
        *,
        reduce: Reducer | None = None,
    ) -> StepResult:
        """One compiled forward step returning the tapped activations (``gradients`` empty).

        ``reduce(values, [])`` (see :data:`Reducer`) runs inside the step when given.
        """
        logits, resolved, score, values = self._run("values", inputs, targets, reduce)
        return StepResult(
            logits=logits.numpy(),
            targets=resolved.numpy(),
            scores=score.numpy(),
            values=[v.numpy() for v in values],
            gradients=[],
        )

    def _run(
        self,
        kind: str,
        inputs: Sequence[np.ndarray],
        targets: Any,
        reduce: Reducer | None = None,
    ) -> Any:
        """Call the compiled step of ``kind`` for ``targets`` (classes, callable or structured)."""
        if isinstance(targets, StructuredTarget):
            args = self._prepare(inputs, targets.classes)
            args += [tf.convert_to_tensor(a, tf.float32) for a in targets.arrays]
            return self._step(kind, targets, reduce)(*args)
        target_fn = targets if callable(targets) else None
        cls = None if target_fn is not None else cast(np.ndarray, targets)
        return self._step(kind, target_fn, reduce)(*self._prepare(inputs, cls))

    def gradients(
        self,
        inputs: Sequence[np.ndarray],
        targets: np.ndarray | Callable[[Any], Any],
        wrt: Literal["layers", "inputs"],
        *,
        reduce: Reducer | None = None,
    ) -> StepResult:
        """One compiled gradient step on one batch.

        Args:
            inputs: one array per model input, each ``(B, ...)``.
            targets: int32 ``(B,)`` class indices (``-1`` = predicted), a callable on the logits,
                or a :class:`~xai.dense_targets.StructuredTarget` (region, box, D-RISE) of ``B``
                rows.
            wrt: ``"layers"`` for the tapped activations, ``"inputs"`` for the model inputs.
            reduce: optional ``reduce(values, gradients) -> tensors`` run inside the compiled
                step (see :data:`Reducer`); its result comes back as ``values`` and
                ``gradients`` is empty.
        """
        logits, resolved, score, values, grads = self._run(wrt, inputs, targets, reduce)
        if callable(targets) and score.shape[0] != len(inputs[0]):
            raise XaiValueError(
                "`targets` callable must return one score per sample, shape (batch,). "
                f"Received: a vector of {score.shape[0]} scores for a batch of "
                f"{len(inputs[0])} (flattened per-class scores?). Reduce it per sample, e.g. "
                "lambda z: z[:, 3] or lambda z: tf.reduce_sum(z, axis=1)."
            )
        if wrt == "inputs":
            values = [np.asarray(x, dtype=np.float32) for x in inputs]  # no copy for float32 arrays
        else:
            values = [v.numpy() for v in values]
        return StepResult(
            logits=logits.numpy(),
            targets=resolved.numpy(),
            scores=score.numpy(),
            values=values,
            gradients=[g.numpy() for g in grads],
        )
