"""``ExplainCallback``: explanations of a fixed probe batch, written every few epochs."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from .. import _validation, viz
from .. import io as xai_io
from .. import methods as methods_mod
from .. import targets as targets_mod
from ..errors import XaiValueError, bad_type, bad_value
from ..explainer import Explainer
from ..explanation import Explanation
from ..taps import check_graph_model
from .probe import (
    _check_dir,
    _check_seed,
    _epoch_dir,
    _ProbeCallback,
)

log = logging.getLogger("xai.callbacks")


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
        """The :class:`~xai.explainer.Explainer` (tap + compiled steps) in use, once built."""
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
        resolved = targets_mod.resolve_for_tap(self.targets, len(raw[0]), engine.tap)
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
