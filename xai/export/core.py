"""The export's one batch-in, maps-out core, shared by the local and the Ray engines.

:class:`BatchExplainer` takes a decoded batch (:class:`Decoded`: the model inputs of a fixed chunk
of the sorted image list, with each image's original size, EXIF tag and decoding error) and
returns the manifest rows of the images that failed and one write job per explained image
(predictions, scores, targets and the raw signed map; the :class:`~xai.export.writer._Writer`
turns a job into its heatmap, overlay and files). The local engine feeds it from its ``tf.data``
loader; each Ray actor builds its own from the model path and feeds it from the same
:class:`~xai.export.loader._Loader`, so both engines run the same code on the same batches and
write the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import targets as targets_mod
from ..errors import XaiError
from .journal import _ROW_KEYS, _empty_row
from .naming import output_paths
from .writer import _Job


@dataclass(frozen=True)
class Decoded:
    """One decoded batch: a chunk of images in walk order (numpy, no TensorFlow).

    Attributes:
        rels: each image's path relative to the input folder.
        x: model inputs, float32 ``(N, H, W, C)`` (``(N, C, H, W)`` for channels-first models);
            zeros where decoding failed.
        heights, widths: each image's original size (0 where decoding failed).
        tags: each image's EXIF orientation tag.
        oks: False where decoding failed, with the reason in ``errors``.
        errors: the decoding error of each image ("" where it decoded).
        targets: each image's class (from a targets CSV or mapping), or None when one target (or
            the prediction) applies to every image.
    """

    rels: Sequence[str]
    x: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    tags: np.ndarray
    oks: np.ndarray
    errors: Sequence[str]
    targets: np.ndarray | None = None


@dataclass
class BatchExplainer:
    """Explains decoded batches with one method: rows of failures and write jobs out.

    Holds the :class:`~xai.explainer.Explainer`, whose compiled steps are traced once and reused by
    every batch. ``devices``/``shard_pool`` split each batch over several devices
    (``MirroredStrategy``).
    """

    explainer: Any
    method: Any
    formats: tuple[str, ...]
    seed: int
    params: dict[str, Any]  # the method parameters as given
    fixed_target: Any  # one class or region target for every image (None: predicted/per image)
    names: tuple[str, ...] | None
    row_params: dict[str, Any]  # the parameters the method ran with (manifest)
    layer: list[str] | None
    taken_dirs: frozenset[str] = frozenset()  # mirrored input folders (naming.output_dirs)
    devices: Sequence[str] = ()
    shard_pool: ThreadPoolExecutor | None = None

    def __call__(
        self, batch: Decoded, originals: Sequence[np.ndarray | None], done: Collection[str]
    ) -> tuple[list[dict[str, Any]], list[_Job]]:
        """(final rows of failed images, write jobs of the others) of one batch.

        ``originals`` are the decoded images of the ``oks`` entries, in order (None when no
        overlay is written). Images in ``done`` (finished by an earlier run, in a chunk recomputed
        for batch identity) get neither a row nor a job.
        """
        rels, oks = batch.rels, batch.oks
        ok = [j for j in range(len(rels)) if oks[j]]
        rows = [
            _empty_row(rels[j], "error", batch.errors[j])
            for j in range(len(rels))
            if not oks[j] and rels[j] not in done
        ]
        if not ok:
            return rows, []
        targets: Any = self.fixed_target
        if batch.targets is not None:
            targets = np.asarray([batch.targets[j] for j in ok], np.int32)
        x = batch.x
        inputs = x if len(ok) == len(rels) else x[ok]
        try:
            explanations = self.explain(inputs, targets)
        except Exception as exc:  # a batch the method rejects: error rows, not a crash
            reason = str(exc) if isinstance(exc, XaiError) else f"{type(exc).__name__}: {exc}"
            failed = [_empty_row(rels[j], "error", reason) for j in ok if rels[j] not in done]
            return rows + failed, []
        # a dense output (segmentation map) has no single predicted class: -1
        per_image = (
            (e, r, int(p) if np.ndim(p) == 0 else -1)
            for e in explanations
            for r, p in enumerate(e.predictions)
        )
        jobs = []
        for j, original, (e, r, pred) in zip(ok, originals, per_image):
            if rels[j] in done:
                continue
            size = (int(batch.heights[j]), int(batch.widths[j]))
            outputs = output_paths(rels[j], self.formats, self.taken_dirs)
            row = _image_row(
                rels[j],
                size,
                e,
                r,
                pred,
                self.names,
                self.method.name,
                self.row_params,
                self.layer,
                outputs,
            )
            row["orientation"] = int(batch.tags[j])
            jobs.append(
                _Job(rels[j], outputs, size, original, np.ascontiguousarray(e.raw[0][r]), row)
            )
        return rows, jobs

    def explain(self, x: np.ndarray, targets: Any) -> list[Any]:
        """Explanations covering ``x`` in order: one, or one per device shard."""
        from ..explainer import check_finite

        check_finite("images", x)  # e.g. a preprocess function that divides by zero
        explainer, method = self.explainer, self.method
        tap = explainer.engine(method.needs_layer).tap
        run_params = method.resolve_params(dict(self.params))
        if method.stochastic:
            run_params["seed"] = int(self.seed)

        def one(sel: slice) -> Any:
            t = targets[sel] if isinstance(targets, np.ndarray) else targets
            xs = x[sel]
            resolved = targets_mod.resolve_for_tap(t, len(xs), tap)
            return explainer.run(method, run_params, [xs], [xs], resolved, batch_size=len(x))

        devices, pool = self.devices, self.shard_pool
        if len(devices) <= 1 or pool is None or len(x) < 2:
            return [one(slice(None))]
        import tensorflow as tf

        bounds = np.linspace(0, len(x), len(devices) + 1).round().astype(int)
        shards = [(d, slice(a, b)) for d, a, b in zip(devices, bounds[:-1], bounds[1:]) if b > a]

        def on_device(item: tuple[str, slice]) -> Any:
            with tf.device(item[0]):
                return one(item[1])

        return list(pool.map(on_device, shards))


def _finite(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _image_row(
    rel: str,
    size: tuple[int, int],
    e: Any,
    r: int,
    pred: int,
    names: tuple[str, ...] | None,
    method: str,
    params: dict[str, Any],
    layer: list[str] | None,
    outputs: dict[str, str],
) -> dict[str, Any]:
    def label(c: int) -> str | None:
        return names[c] if names is not None and 0 <= c < len(names) else None

    probs = e.probabilities
    target = int(e.targets[r])
    row = dict.fromkeys(_ROW_KEYS)
    row.update(
        path=rel,
        status="ok",
        height=size[0],
        width=size[1],
        predicted=pred,
        predicted_label=label(pred),
        probability=None if probs is None else _finite(probs[r, pred]),
        target=target,
        target_label=label(target),
        target_probability=None if probs is None or target < 0 else _finite(probs[r, target]),
        score=_finite(e.scores[r]),
        method=method,
        params=params,
        layer=layer,
        outputs=outputs,
    )
    return row
