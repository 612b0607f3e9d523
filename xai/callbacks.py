"""Keras callbacks that explain and record a model while it trains.

* :class:`ExplainCallback` explains a fixed probe batch with any registered method every
  ``every_n_epochs`` epochs and writes the overlays to TensorBoard and/or PNG files.
* :class:`ActivationRecorder` records chosen layers' activations (or their per-channel mean, std
  and sparsity) on a fixed probe batch, in memory and optionally as ``.npz`` files.

Both follow the rules of the rest of xai:

* The model is read-only. Everything runs in inference mode (``training=False``: no
  BatchNormalization update, no Dropout draw) on a *tap*, a functional graph that reuses the
  model's layers and variables (:mod:`xai.taps`), which also reaches into nested backbones (the
  "Graph disconnected" failure of tf-explain). Nothing draws from the global Keras/TensorFlow
  random state (stochastic methods get a fixed ``seed`` and use stateless ops), so a seeded ``fit``
  gives the same weights with and without these callbacks.
* The tap is built once, in ``on_train_begin``, on ``self.model``; the compiled step (a
  ``tf.function`` over the tap, capturing the model's variables) is reused every epoch. It is
  rebuilt only when the model's variables change (another model, or variables added or replaced),
  never because the *values* changed. ``trace_count`` counts the traces.
* Arguments are validated in the constructor where they can be, and against the model in
  ``on_train_begin``, before the first epoch runs. Directories are created in ``on_train_begin``.
* Training waits only for the part that needs the current weights (the compiled step on the
  probe batch). Rendering and writing (overlays, PNG encoding, atomic writes with their fsyncs,
  TensorBoard events, ``.npz`` files) run on one background thread per callback, in order;
  ``on_train_end`` waits for them, so every file is complete when ``fit`` returns, and a failed
  write is raised there (or at the next epoch end). ``background_writes=False`` writes inline.

Epoch numbers in file names and in :attr:`ActivationRecorder.epochs` are 1-based, like Keras's
progress bar and ``ModelCheckpoint``'s ``{epoch}``; TensorBoard steps are Keras's 0-based epoch
index, so the images line up with the ``epoch_*`` scalars of ``keras.callbacks.TensorBoard``.
"""

from __future__ import annotations

import io as _stdlib_io
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, cast

import keras
import numpy as np
import tensorflow as tf

from . import _validation, viz
from . import io as xai_io
from . import methods as methods_mod
from . import targets as targets_mod
from .engine import Engine
from .errors import XaiValueError, bad_type, bad_value, did_you_mean
from .explain import Explainer
from .explanation import Explanation
from .taps import Tap, check_graph_model

log = logging.getLogger(__name__)

REDUCTIONS = ("stats", "full")
STATISTICS = ("mean", "std", "sparsity")


# -------------------------------------------------------------------------------------- helpers


def _check_every(every_n_epochs: Any) -> int:
    if not _validation.is_int(every_n_epochs):
        raise bad_type("every_n_epochs", "a positive int", every_n_epochs)
    if every_n_epochs < 1:
        raise bad_value("every_n_epochs", "a positive int (1 = every epoch)", every_n_epochs)
    return int(every_n_epochs)


def _check_dir(param: str, value: Any) -> Path | None:
    if value is None:
        return None
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise bad_type(param, "a directory path (str or os.PathLike) or None", value)
    path = Path(os.fspath(value))
    if path.exists() and not path.is_dir():
        raise bad_value(param, "a directory (it is an existing file)", str(path))
    return path


def _check_images(images: Any) -> list[np.ndarray]:
    """The probe batch as numeric arrays (copied, so later changes by the caller do not leak in).

    The shapes are checked against the model in ``on_train_begin`` (:meth:`Explainer.prepare`).
    """
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    out = []
    for j, item in enumerate(items):
        name = "images" if len(items) == 1 else f"images[{j}]"
        try:
            arr = np.array(item)  # a copy: the probe batch is fixed when the callback is made
        except Exception as exc:
            raise bad_type(name, "an array (numpy or tensor)", item) from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise bad_type(name, "a numeric array, a batch of probe samples (N, ...)", item)
        if arr.ndim < 2 or len(arr) == 0:
            raise bad_value(
                name,
                "a non-empty batch of probe samples (N, H, W, C) for images",
                arr,
                "Add a batch axis for one sample, e.g. images[None].",
            )
        out.append(arr)
    if len({len(a) for a in out}) > 1:
        raise bad_value(
            "images", "the same number of samples for every input", [len(a) for a in out]
        )
    return out


def _check_seed(seed: Any) -> int:
    return _validation.seed(seed, hint="A fixed seed gives every epoch the same noise.")


def _same_variables(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Whether two variable lists hold the same variable objects, in the same order."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _epoch_dir(root: Path, epoch: int) -> Path:
    return root / f"epoch_{epoch + 1:03d}"


class _ProbeCallback(keras.callbacks.Callback):
    """What both callbacks share: the fixed probe batch, ``every_n_epochs``, lazy rebuilds, and
    the background writer.

    Only the part that needs the current weights (the compiled step on the probe batch) runs in
    ``on_epoch_end``; rendering and writing (PNG encoding, atomic writes with their fsyncs,
    TensorBoard events) are handed to one background thread, in order, so training does not wait
    for the disk. ``on_train_end`` waits for every pending write; an error in a write is raised
    at the next epoch end or at ``on_train_end``.
    """

    def __init__(self, images: Any, every_n_epochs: int, background_writes: bool) -> None:
        super().__init__()
        self._probe = _check_images(images)
        self.every_n_epochs = _check_every(every_n_epochs)
        if not isinstance(background_writes, bool):
            raise bad_type("background_writes", "True or False", background_writes)
        self.background_writes = background_writes
        self._variables: list[Any] = []  # the model variables the compiled step was built over
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    @property
    def images(self) -> np.ndarray | list[np.ndarray]:
        """The probe batch (a list with one array per input for a multi-input model)."""
        return self._probe_arg()

    def _probe_arg(self) -> Any:
        return self._probe[0] if len(self._probe) == 1 else list(self._probe)

    def _due(self, epoch: int) -> bool:
        return (int(epoch) + 1) % self.every_n_epochs == 0

    def _needs_rebuild(self) -> bool:
        """True before the first build and when the model's variables are no longer those the
        compiled step captured (another model, or variables added or replaced)."""
        return not self._variables or not _same_variables(self._variables, self.model.weights)

    # ------------------------------------------------------------------------------- writing
    def _start_writer(self) -> None:
        if self.background_writes and self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"xai-{type(self).__name__}"
            )

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the writer thread (or now, without one); raise earlier failures."""
        self._raise_failed(wait=False)
        if self._pool is None:
            fn(*args)
        else:
            self._pending.append(self._pool.submit(fn, *args))

    def _raise_failed(self, wait: bool) -> None:
        futures, self._pending = self._pending, []
        error: BaseException | None = None
        for future in futures:
            if not wait and not future.done():
                self._pending.append(future)
                continue
            exc = future.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None:
            raise error

    def _stop_writer(self) -> None:
        """Wait for every pending write, stop the thread, and raise the first write error."""
        try:
            self._raise_failed(wait=True)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


# ----------------------------------------------------------------------------- ExplainCallback


class ExplainCallback(_ProbeCallback):
    """Explain a fixed probe batch during training; overlays to TensorBoard and/or PNG files.

    Every ``every_n_epochs`` epochs (at the end of the epoch) the probe batch is explained with
    ``method`` on the current weights, in inference mode, and the overlays are written:

    * to TensorBoard (``log_dir``): an image summary ``explanations/<method>`` with one image per
      probe sample at step = epoch index, whose description lists each sample's predicted class
      and probability (and the explained class where ``targets`` chose another one); the same
      captions as a text summary ``explanations/<method>/captions``, one per step (TensorBoard
      shows the description of the first step only);
    * as files (``output_dir``): ``epoch_003/overlay_0000.png ...`` plus ``attributions.npy``,
      ``heatmaps.npy`` and ``manifest.json`` (classes, probabilities, parameters), written
      atomically by :meth:`Explanation.save`.

    Only the explanation itself runs while training waits; the rendering and writing run on a
    background thread (``background_writes``) and are complete when ``fit`` returns.

    Args:
        images: the probe batch, ``(N, H, W, C)`` images as the model takes them (uint8 or float;
            a list with one array per input for multi-input models). Copied when the callback is
            made.
        method: a registered method name (``xai.methods.available()``) or Method object.
        every_n_epochs: explain after every ``every_n_epochs``-th epoch (epochs are counted from 1).
        targets: ``None``/``"predicted"`` (the class predicted at that epoch), one class index for
            all samples, one per sample, or a callable ``f(logits) -> (batch,)``.
        layer: CAM layer path(s) (``"outer/inner"`` for nested models); None auto-selects.
        log_dir: TensorBoard log directory (event files are written directly into it), or None.
            Needs the ``tensorboard`` package (``pip install xai[tensorboard]``).
        output_dir: directory for per-epoch PNG overlays and arrays, or None. At least one of
            ``log_dir`` and ``output_dir`` is required.
        seed: seed of stochastic methods (SmoothGrad, RISE...). It is the same every epoch, so a
            change in the overlays comes from the model, not from the noise. Never drawn from the
            global random state.
        class_names: class names for captions and manifests.
        preprocess: function applied to the probe batch before the model (see :func:`xai.explain`).
        value_range: display range of float images (see :func:`xai.explain`).
        alpha: weight of the colour map in the overlays (0 = image only, 1 = colour map only).
        colormap: colour map name (``xai.viz.COLORMAPS``).
        batch_size: samples per compiled step (memory bound; does not change the result).
        background_writes: render and write on a background thread (True) or inside
            ``on_epoch_end`` (False).
        **params: the method's own parameters (e.g. ``num_samples=10`` for SmoothGrad).

    Attributes:
        latest: the :class:`~xai.explanation.Explanation` of the last explained epoch (None before).
        files: every file written during the current ``fit`` (complete after ``fit``).
        trace_count: how many times the explanation step was traced (once per compiled step
            kind for a whole ``fit``: 1 for Grad-CAM).

    Example:
        >>> cb = ExplainCallback(x_val[:8], "gradcam", log_dir="logs/xai", class_names=names)
        >>> model.fit(train_ds, epochs=10, callbacks=[cb])
    """

    def __init__(
        self,
        images: Any,
        method: str | methods_mod.Method = "gradcam",
        *,
        every_n_epochs: int = 1,
        targets: targets_mod.TargetSpec = None,
        layer: str | Sequence[str] | None = None,
        log_dir: str | os.PathLike | None = None,
        output_dir: str | os.PathLike | None = None,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        preprocess: Callable[[np.ndarray], Any] | None = None,
        value_range: tuple[float, float] | None = None,
        alpha: float = 0.4,
        colormap: str = "jet",
        batch_size: int = 32,
        background_writes: bool = True,
        **params: Any,
    ) -> None:
        super().__init__(images, every_n_epochs, background_writes)
        self.method = methods_mod.get(method)  # did-you-mean for unknown names
        self.method_params = self.method.resolve_params(params)  # unknown parameter names fail now
        self.log_dir = _check_dir("log_dir", log_dir)
        self.output_dir = _check_dir("output_dir", output_dir)
        if self.log_dir is None and self.output_dir is None:
            raise XaiValueError(
                "ExplainCallback needs somewhere to write: pass `log_dir` (TensorBoard) and/or "
                "`output_dir` (PNG overlays). Received: log_dir=None, output_dir=None."
            )
        if self.log_dir is not None:
            _image_metadata()  # fail now, not after the first epoch, when tensorboard is missing
        if isinstance(targets, str) and targets != "predicted":
            raise bad_value("targets", "None, 'predicted', class index(es) or a callable", targets)
        if layer is not None and not isinstance(layer, str):
            if not isinstance(layer, Sequence) or not all(isinstance(p, str) for p in layer):
                raise bad_type("layer", "a layer path, a list of layer paths, or None", layer)
        if class_names is not None and (
            isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names)
        ):
            raise bad_type("class_names", "a sequence of str or None", class_names)
        if preprocess is not None and not callable(preprocess):
            raise bad_type("preprocess", "a function or None", preprocess)
        batch_size = _validation.positive_int("batch_size", batch_size)
        self.style = viz.OverlayStyle.checked(alpha, colormap)
        if value_range is not None:
            value_range = viz.check_value_range(value_range)
        self.targets = targets
        self.layer = layer
        self.seed = _check_seed(seed)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.preprocess = preprocess
        self.value_range = value_range
        self.alpha = self.style.alpha
        self.colormap = self.style.colormap
        self.batch_size = int(batch_size)
        self.tag = f"explanations/{self.method.name}"
        self.latest: Explanation | None = None
        self.files: list[Path] = []
        self._explainer: Explainer | None = None
        self._prepared: tuple[Any, ...] | None = None  # probe checked once (see _build)
        self._image_inputs: list[int] = []
        self._writer: Any = None

    # ------------------------------------------------------------------------------- state
    @property
    def explainer(self) -> Explainer | None:
        """The :class:`~xai.explain.Explainer` (tap + compiled steps) in use, once built."""
        return self._explainer

    @property
    def trace_count(self) -> int:
        """Traces of the explanation step so far (0 before the first explained epoch)."""
        if self._explainer is None:
            return 0
        return self._explainer.engine(self.method.needs_layer).trace_count

    def _build(self) -> None:
        model = check_graph_model(self.model)
        if self._explainer is not None:
            log.info("xai: the model's variables changed; rebuilding the explanation step")
        explainer = Explainer(model, layer=self.layer, class_names=self.class_names)
        engine = explainer.engine(self.method.needs_layer)  # the tap, built once
        raw, ready = explainer.prepare(self._probe_arg(), self.preprocess)  # shapes vs the model
        resolved = targets_mod.resolve(
            self.targets, len(raw[0]), engine.tap.head, engine.tap.num_logits
        )
        run_params = self.method.resolve_params(dict(self.method_params))
        if self.method.stochastic:
            run_params["seed"] = int(self.seed)
        # Checked once here; every due epoch runs the trusted kernel on them (Explainer.run).
        self._prepared = (raw, ready, resolved, run_params)
        image_inputs = [
            j
            for j, arr in enumerate(raw)
            if arr.ndim == 4
            and explainer.data_format == "channels_last"
            and arr.shape[-1] in (1, 3, 4)
        ]
        if not image_inputs:
            raise bad_value(
                "images",
                "a batch of 2-D images (N, H, W, 1|3|4) for a channels_last model: overlays are "
                "drawn over them",
                raw[0],
                "For other inputs, call xai.explain() on the probe batch and plot the heatmaps.",
            )
        self._image_inputs = image_inputs
        self._explainer = explainer
        self._variables = list(model.weights)

    # ------------------------------------------------------------------------------- Keras hooks
    def on_train_begin(self, logs: dict | None = None) -> None:
        self.latest = None
        self.files = []
        if self._needs_rebuild():
            self._build()
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        self._start_writer()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._due(epoch):
            return
        if self._explainer is None or self._needs_rebuild():
            self._build()
        self.latest = self.explain_now()  # the only part that needs the current weights
        self._submit(self._write, self.latest, int(epoch))

    def on_train_end(self, logs: dict | None = None) -> None:
        try:
            self._stop_writer()
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    # ------------------------------------------------------------------------------- work
    def explain_now(self) -> Explanation:
        """Explain the probe batch with the current weights (what every due epoch does)."""
        if self._explainer is None:
            self._build()
        assert self._explainer is not None and self._prepared is not None
        raw, ready, resolved, run_params = self._prepared
        return self._explainer.run(
            self.method,
            run_params,
            raw,
            ready,
            resolved,
            batch_size=self.batch_size,
            value_range=self.value_range,
        )

    def captions(self, explanation: Explanation) -> list[str]:
        """One line per sample: predicted class and probability (and the explained class)."""
        return [_caption(explanation, i) for i in range(len(explanation))]

    def _write(self, explanation: Explanation, epoch: int) -> None:
        """Render and write one epoch's explanation (on the writer thread)."""
        if self.output_dir is not None:
            self.files.extend(
                explanation.save(
                    _epoch_dir(self.output_dir, epoch), alpha=self.alpha, colormap=self.colormap
                )
            )
        if self._writer is not None:
            self._write_tensorboard(explanation, epoch)

    def _write_tensorboard(self, explanation: Explanation, step: int) -> None:
        lines = self.captions(explanation)
        description = (
            f"{self.method.name} overlays of the {len(lines)} probe samples (alpha={self.alpha}, "
            f"colormap={self.colormap}):\n\n" + "\n".join(f"{i}. {c}" for i, c in enumerate(lines))
        )
        table = "| sample | explained | predicted | p |\n|---|---|---|---|\n" + "\n".join(
            _caption_row(explanation, i) for i in range(len(explanation))
        )
        with self._writer.as_default(step=step):
            for j in self._image_inputs:
                overlays = explanation.overlay(self.alpha, self.colormap, input_index=j)
                tag = self.tag if len(self._image_inputs) == 1 else f"{self.tag}/input{j}"
                # The image plugin's format, [width, height, png, png, ...]; encoding with OpenCV
                # here is several times faster than tf.summary.image's eager PNG ops.
                height, width = overlays.shape[1:3]
                data = [
                    str(width).encode(),
                    str(height).encode(),
                    *(xai_io.encode_png(o) for o in overlays),
                ]
                tf.summary.write(tag, tf.constant(data), metadata=_image_metadata(description))
            tf.summary.text(f"{self.tag}/captions", table)
        self._writer.flush()


def _image_metadata(description: str = "") -> Any:
    """TensorBoard's image-plugin summary metadata (TensorBoard's own function)."""
    try:
        from tensorboard.plugins.image import metadata
    except ImportError as exc:  # pragma: no cover - tensorboard is in the test extra
        raise ImportError(
            "ExplainCallback(log_dir=...) writes TensorBoard image summaries and needs the "
            "tensorboard package: pip install 'xai[tensorboard]' (or pass only output_dir=)."
        ) from exc
    return metadata.create_summary_metadata(display_name=None, description=description)


def _class_name(explanation: Explanation, index: int) -> str:
    names = explanation.class_names
    return names[index] if names is not None and 0 <= index < len(names) else str(index)


def _caption_parts(explanation: Explanation, i: int) -> tuple[str, str, str]:
    target = int(explanation.targets[i])
    predicted = int(explanation.predictions[i])
    probs = explanation.probabilities
    explained = _class_name(explanation, target) if target >= 0 else "custom score"
    if probs is not None:
        p = f"{probs[i, predicted]:.3f}"
    else:
        p = f"score {explanation.scores[i]:.4g}"
    return explained, _class_name(explanation, predicted), p


def _caption(explanation: Explanation, i: int) -> str:
    explained, predicted, p = _caption_parts(explanation, i)
    head = (
        f"predicted {predicted} (p={p})"
        if not p.startswith("score")
        else f"predicted {predicted} ({p})"
    )
    return head if explained == predicted else f"{head}, explaining {explained}"


def _caption_row(explanation: Explanation, i: int) -> str:
    explained, predicted, p = _caption_parts(explanation, i)
    return f"| {i} | {explained} | {predicted} | {p} |"


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


__all__ = ["ActivationRecorder", "ExplainCallback"]
