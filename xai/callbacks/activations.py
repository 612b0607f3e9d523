"""``ActivationRecorder``: chosen layers' activations (or statistics) on a probe batch."""

from __future__ import annotations

import io as _stdlib_io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import tensorflow as tf

from .. import _validation
from .. import io as xai_io
from ..engine import Engine
from ..errors import bad_type, bad_value, did_you_mean
from ..explainer import Explainer
from ..taps import Tap, check_graph_model
from .probe import (
    _check_dir,
    _ProbeCallback,
)

log = logging.getLogger("xai.callbacks")

REDUCTIONS = ("stats", "full")
STATISTICS = ("mean", "std", "sparsity")


# --------------------------------------------------------------------------- ActivationRecorder


class ActivationRecorder(_ProbeCallback):
    """Record chosen layers' activations on a fixed probe batch during training.

    Every ``every_n_epochs`` epochs (at the end of the epoch) the probe batch goes through the
    model once, in inference mode, and the outputs of ``layers`` are recorded:

    * ``reduce="stats"``: per channel, over the probe samples and all spatial positions, the
      ``mean``, the ``std`` (population) and the ``sparsity`` (the fraction of values that are
      exactly zero: dead units after a ReLU). Each is a float32 array ``(E, C)`` over the ``E``
      recorded epochs, in :attr:`stats` ``[layer][statistic]``.
    * ``reduce="full"``: the activations themselves, float32 ``(E, N, *layer_shape)`` in
      :attr:`activations` ``[layer]``.

    With ``output_dir``, each recorded epoch is also written (atomically) to
    ``output_dir/epoch_003.npz`` with keys ``"<layer>/mean"``, ``"<layer>/std"``,
    ``"<layer>/sparsity"`` (stats) or ``"<layer>"`` (full), and ``"epoch"``. Layer paths of
    nested models contain ``/`` too (``"backbone/out_relu/mean"``); split at the last ``/``.

    Args:
        images: the probe batch, as the model takes it (a list with one array per input for a
            multi-input model). Copied when the callback is made.
        layers: layer path(s) (``"outer/inner"`` reaches into nested models), ``"auto"`` or
            ``"all"``.
        every_n_epochs: record after every ``every_n_epochs``-th epoch (epochs counted from 1).
        reduce: ``"stats"`` (per-channel mean/std/sparsity, small) or ``"full"`` (every value).
        output_dir: directory for the per-epoch ``.npz`` files, or None (memory only).
        batch_size: probe samples per forward pass (memory bound; does not change the result).
        background_writes: write the ``.npz`` files on a background thread (True) or inside
            ``on_epoch_end`` (False). They are complete when ``fit`` returns either way.

    Attributes:
        epochs: int ``(E,)`` the recorded epoch numbers (1-based).
        stats: ``{layer: {"mean"|"std"|"sparsity": float32 (E, C)}}`` (``reduce="stats"``).
        activations: ``{layer: float32 (E, N, ...)}`` (``reduce="full"``).
        layers: the resolved layer paths (after the first ``on_train_begin``).
        files: the ``.npz`` files written during the current ``fit``.
        trace_count: how many times the forward step was traced (1 for a whole ``fit``).

    Records start afresh at each ``fit`` (like ``keras.callbacks.History``).
    """

    def __init__(
        self,
        images: Any,
        layers: str | Sequence[str],
        *,
        every_n_epochs: int = 1,
        reduce: Literal["stats", "full"] = "stats",
        output_dir: str | os.PathLike | None = None,
        batch_size: int = 32,
        background_writes: bool = True,
    ) -> None:
        super().__init__(images, every_n_epochs, background_writes)
        if isinstance(layers, str):
            if not layers:
                raise bad_value(
                    "layers", "a layer path, a list of layer paths, 'auto' or 'all'", layers
                )
        elif (
            not isinstance(layers, Sequence)
            or not layers
            or not all(isinstance(p, str) and p for p in layers)
        ):
            raise bad_type(
                "layers", "a layer path, a non-empty list of layer paths, 'auto' or 'all'", layers
            )
        if not isinstance(reduce, str) or reduce not in REDUCTIONS:
            raise bad_value(
                "reduce",
                "'stats' (per-channel mean, std, sparsity) or 'full' (every activation)",
                reduce,
                did_you_mean(str(reduce), REDUCTIONS),
            )
        batch_size = _validation.positive_int("batch_size", batch_size)
        self.requested_layers = layers
        self.reduce = reduce
        self.output_dir = _check_dir("output_dir", output_dir)
        self.batch_size = int(batch_size)
        self.layers: tuple[str, ...] = ()
        self.files: list[Path] = []
        self.trace_count = 0
        self._tap: Tap | None = None
        self._step: Callable[..., Any] | None = None
        self._engine: Engine | None = None  # owns the recording step
        self._ready: list[np.ndarray] = []
        self._epochs: list[int] = []
        self._records: list[dict[str, np.ndarray]] = []

    # ------------------------------------------------------------------------------- results
    @property
    def epochs(self) -> np.ndarray:
        return np.asarray(self._epochs, dtype=np.int64)

    @property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        if self.reduce != "stats":
            return {}
        return {p: {s: self._stack(f"{p}/{s}") for s in STATISTICS} for p in self.layers}

    @property
    def activations(self) -> dict[str, np.ndarray]:
        if self.reduce != "full":
            return {}
        return {p: self._stack(p) for p in self.layers}

    def _stack(self, key: str) -> np.ndarray:
        if not self._records:
            return np.zeros((0,), np.float32)
        return np.stack([r[key] for r in self._records])

    # ------------------------------------------------------------------------------- building
    def _build(self) -> None:
        model = check_graph_model(self.model)
        tap = Tap.build(model, self.requested_layers)
        if not tap.layers:
            raise bad_value("layers", "at least one layer", self.requested_layers)
        # Validate the probe batch against the model once; keep the model-ready arrays.
        _, ready = Explainer(model).prepare(self._probe_arg())
        specs = [tf.TensorSpec((None, *t.shape[1:]), dtype=t.dtype) for t in tap.model.inputs]
        axes = tap.channel_axes
        full = self.reduce == "full"

        def step(*inputs: tf.Tensor) -> list[tf.Tensor]:
            self.trace_count += 1  # runs at trace time only
            outs = tap.model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            results: list[tf.Tensor] = []
            for act, axis in zip(outs[1:], axes):
                act = tf.cast(act, tf.float32)
                if full:
                    results.append(act)
                    continue
                # Per-channel count, mean, sum of squared deviations and zeros of this batch;
                # batches are combined exactly (Chan et al.) in float64 outside the graph.
                rank = len(act.shape)
                reduce_axes = [i for i in range(rank) if i != axis]
                count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(act), reduce_axes)), tf.float32)
                mean = tf.reduce_mean(act, axis=reduce_axes)
                shape = [1] * rank
                shape[axis] = -1
                m2 = tf.reduce_sum(tf.square(act - tf.reshape(mean, shape)), axis=reduce_axes)
                zeros = tf.reduce_sum(tf.cast(tf.equal(act, 0.0), tf.float32), axis=reduce_axes)
                results.extend([count, mean, m2, zeros])
            return results

        if self._tap is not None:
            log.info("xai: the model's variables changed; rebuilding the activation step")
        engine = Engine(tap, jit_compile=False)
        self._step = engine.derived(
            ("activations", self.reduce),
            lambda e: tf.function(step, input_signature=specs, autograph=False),
        )
        self._engine = engine
        self._tap = tap
        self._ready = [x.astype(s.dtype.as_numpy_dtype, copy=False) for x, s in zip(ready, specs)]
        self.layers = tap.layers
        self._variables = list(model.weights)

    def record_now(self) -> dict[str, np.ndarray]:
        """The probe batch's activations (or statistics) under the current weights, flat arrays."""
        if self._step is None:
            self._build()
        assert self._step is not None
        n = len(self._ready[0])
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, self.batch_size):
            batch = [tf.convert_to_tensor(x[start : start + self.batch_size]) for x in self._ready]
            chunks.append([t.numpy() for t in self._step(*batch)])
        out: dict[str, np.ndarray] = {}
        if self.reduce == "full":
            for k, p in enumerate(self.layers):
                out[p] = np.concatenate([c[k] for c in chunks]).astype(np.float32)
            return out
        for k, p in enumerate(self.layers):
            count: Any = None
            mean: Any = None
            m2: Any = None
            zeros: Any = None
            for c in chunks:
                b_count, b_mean, b_m2, b_zeros = (
                    np.asarray(v, np.float64) for v in c[4 * k : 4 * k + 4]
                )
                if count is None:
                    count, mean, m2, zeros = b_count, b_mean, b_m2, b_zeros
                    continue
                total = count + b_count
                delta = b_mean - mean
                mean = mean + delta * (b_count / total)
                m2 = m2 + b_m2 + delta**2 * (count * b_count / total)
                zeros = zeros + b_zeros
                count = total
            out[f"{p}/mean"] = mean.astype(np.float32)
            out[f"{p}/std"] = np.sqrt(np.maximum(m2 / count, 0.0)).astype(np.float32)
            out[f"{p}/sparsity"] = (zeros / count).astype(np.float32)
        return out

    # ------------------------------------------------------------------------------- Keras hooks
    def on_train_begin(self, logs: dict | None = None) -> None:
        self._epochs = []
        self._records = []
        self.files = []
        if self._needs_rebuild():
            self._build()
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._start_writer()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._due(epoch):
            return
        if self._step is None or self._needs_rebuild():
            self._build()
        record = self.record_now()
        self._epochs.append(int(epoch) + 1)
        self._records.append(record)
        if self.output_dir is not None:
            self._submit(self._write, record, int(epoch) + 1)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._stop_writer()

    def _write(self, record: dict[str, np.ndarray], epoch: int) -> None:
        buffer = _stdlib_io.BytesIO()
        cast(Any, np.savez)(buffer, epoch=np.int64(epoch), **record)
        assert self.output_dir is not None  # noqa: S101 - only called with an output_dir
        path = self.output_dir / f"epoch_{epoch:03d}.npz"
        self.files.append(xai_io.atomic_write_bytes(path, buffer.getvalue()))


__all__ = ["REDUCTIONS", "STATISTICS", "ActivationRecorder"]
