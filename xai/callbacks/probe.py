"""What both callbacks share: argument checks and the probe-batch callback base class."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import _validation
from ..errors import bad_type, bad_value

log = logging.getLogger("xai.callbacks")


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
