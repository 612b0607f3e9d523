"""The loader: a ``tf.data`` pipeline that reads, decodes, resizes and preprocesses images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import io
from ..errors import XaiError, XaiValueError
from ..preprocessing import Preprocess

# ------------------------------------------------------------------------------------ loading


def _loader_threads() -> int:
    """Images decoded at once: one per core (OpenCV decodes without the GIL), at most 16."""
    return max(2, min(16, os.cpu_count() or 2))


class _Loader:
    """Reads one image for the ``tf.data`` pipeline; never raises (errors become messages)."""

    def __init__(
        self,
        size: tuple[int, int],
        channels: int,
        channels_first: bool,
        preprocess: Preprocess,
        keep_originals: bool,
        max_pixels: int | None,
        orientation: str = "exif",
    ) -> None:
        self.paths: Sequence[str] = ()
        self.size = size
        self.channels = channels
        self.channels_first = channels_first
        self.preprocess = preprocess
        self.keep_originals = keep_originals
        self.max_pixels = max_pixels
        self.orientation = orientation
        self.shape = (channels, *size) if channels_first else (*size, channels)
        # Originals for the overlays, keyed by position; the consumer pops them batch by batch,
        # so at most the images in flight are held.
        self.originals: dict[int, np.ndarray] = {}

    def model_input(self, image: np.ndarray) -> np.ndarray:
        x = io.resize_image(image, self.size).astype(np.float32)
        if self.channels == 1:  # ITU-R BT.601 luma, like OpenCV's RGB2GRAY
            x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        y = np.asarray(self.preprocess(x[None]), dtype=np.float32)
        expected = (1, *self.size, self.channels)
        if y.shape != expected:
            raise XaiValueError(
                f"The preprocessing function returned shape {y.shape} for a batch of shape "
                f"{expected}; it must keep the shape."
            )
        if not np.isfinite(y).all():
            raise XaiValueError("Preprocessing produced NaN or Inf values.")
        y = y[0]
        return np.ascontiguousarray(y.transpose(2, 0, 1) if self.channels_first else y)

    def __call__(
        self, index: np.ndarray
    ) -> tuple[np.ndarray, np.int32, np.int32, np.int32, np.bool_, bytes]:
        i = int(index)
        try:
            image, tag = io.read_image_oriented(
                self.paths[i], max_pixels=self.max_pixels, orientation=self.orientation
            )
            x = self.model_input(image)
            if self.keep_originals:
                self.originals[i] = image
            h, w = image.shape[:2]
            return x, np.int32(h), np.int32(w), np.int32(tag), np.bool_(True), b""
        except Exception as exc:  # every failure becomes a manifest row, never a crash
            message = str(exc) if isinstance(exc, XaiError) else f"{type(exc).__name__}: {exc}"
            return (
                np.zeros(self.shape, np.float32),
                np.int32(0),
                np.int32(0),
                np.int32(0),
                np.bool_(False),
                message.encode("utf-8", "backslashreplace"),
            )

    def dataset(
        self, paths: Sequence[str], indices: Sequence[int], batch_size: int, prefetch: int
    ) -> Any:
        """Batches ``(index, model input, height, width, EXIF orientation, ok, error)``."""
        import tensorflow as tf

        self.paths = paths

        def load(i: tf.Tensor) -> tuple[tf.Tensor, ...]:
            x, h, w, tag, ok, err = tf.numpy_function(
                self,
                [i],
                [tf.float32, tf.int32, tf.int32, tf.int32, tf.bool, tf.string],
                stateful=True,
            )
            x.set_shape(self.shape)
            for t in (h, w, tag, ok, err):
                t.set_shape(())
            return i, x, h, w, tag, ok, err

        ds = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))
        ds = ds.map(load, num_parallel_calls=_loader_threads(), deterministic=True)
        # No autotuning: destroying the iterator waits for the autotuner's background thread,
        # which often notices only at its next timed wake-up (here 20.5 s after the start), so an
        # export sat idle after its last batch (2,000 images: 20.6 s instead of 13.5 s, in a third
        # to half of the runs; with fixed parallelism: 8 runs of 8 without the wait).
        options = tf.data.Options()
        options.autotune.enabled = False
        return ds.batch(batch_size).prefetch(prefetch).with_options(options)
