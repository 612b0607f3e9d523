"""The export's batch loop: explain each batch, hand its pictures to the writer, commit rows."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from .. import targets as targets_mod
from .._version import __version__
from ..errors import XaiError
from .journal import (
    _ROW_KEYS,
    MANIFEST_NAME,
    SUMMARY_NAME,
    _compact,
    _empty_row,
    _iter_rows,
    _Manifest,
)
from .loader import _Loader
from .naming import output_paths
from .summary import ExportSummary
from .walk import _Entry
from .writer import _Committer, _Job, _Writer

log = logging.getLogger("xai.export")


def _explain_batch(
    explainer: Any,
    method: Any,
    x: np.ndarray,
    targets: Any,
    seed: int,
    params: Mapping[str, Any],
    devices: Sequence[str],
    pool: ThreadPoolExecutor | None,
) -> list[Any]:
    """Explanations covering ``x`` in order: one, or one per device shard."""

    from ..explainer import check_finite

    check_finite("images", x)  # e.g. a preprocess function that divides by zero
    tap = explainer.engine(method.needs_layer).tap
    run_params = method.resolve_params(dict(params))
    if method.stochastic:
        run_params["seed"] = int(seed)

    def one(sel: slice) -> Any:
        t = targets[sel] if isinstance(targets, np.ndarray) else targets
        xs = x[sel]
        resolved = targets_mod.resolve_for_tap(t, len(xs), tap)
        return explainer.run(method, run_params, [xs], [xs], resolved, batch_size=len(x))

    if len(devices) <= 1 or pool is None or len(x) < 2:
        return [one(slice(None))]
    import tensorflow as tf

    bounds = np.linspace(0, len(x), len(devices) + 1).round().astype(int)
    shards = [(d, slice(a, b)) for d, a, b in zip(devices, bounds[:-1], bounds[1:]) if b > a]

    def on_device(item: tuple[str, slice]) -> Any:
        with tf.device(item[0]):
            return one(item[1])

    return list(pool.map(on_device, shards))


@dataclass(frozen=True)
class _Plan:
    """What :func:`export` resolved and validated, for :func:`_run`."""

    explainer: Any
    method: Any
    out: Path
    formats: tuple[str, ...]
    batch_size: int
    seed: int
    params: dict[str, Any]  # the method parameters as given
    fixed_target: Any  # one class (or a region target) for every image
    target_map: dict[str, int] | None  # or one per relative path
    names: tuple[str, ...] | None
    row_params: dict[str, Any]  # the parameters the method ran with (manifest)
    layer: list[str] | None
    strategy: Any
    workers: int
    progress: bool
    settings: dict[str, Any]
    taken_dirs: frozenset[str] = frozenset()  # mirrored input folders (naming.output_dirs)


def _run(
    plan: _Plan,
    loader: _Loader,
    writer: _Writer,
    entries: list[_Entry],
    done: set[str],
    started: float,
) -> ExportSummary:
    from .._progress import progress_bar as tqdm

    out, method, batch_size = plan.out, plan.method, plan.batch_size
    target_map = plan.target_map

    manifest = _Manifest(out / MANIFEST_NAME)
    try:
        # Rows decided before any decoding: skipped files, walk errors, images without a target.
        early: list[dict[str, Any]] = []
        images: list[_Entry] = []
        for entry in entries:
            if entry.status is not None:
                early.append(_empty_row(entry.rel, entry.status, entry.reason))
            elif target_map is not None and entry.rel not in target_map:
                early.append(
                    _empty_row(entry.rel, "error", "The targets CSV has no row for this file.")
                )
            else:
                images.append(entry)
        manifest.append(early)

        # Fixed chunks of the sorted image list: a resumed run recomputes whole chunks, so every
        # image is computed in the same batch as in an uninterrupted run (bit-identical results).
        todo_chunks = sorted({i // batch_size for i, e in enumerate(images) if e.rel not in done})
        indices = [
            i
            for c in todo_chunks
            for i in range(c * batch_size, min((c + 1) * batch_size, len(images)))
        ]
        already_done = sum(1 for e in images if e.rel in done)
        log.info(
            "xai export: %d image(s) to explain, %d already done, %d other file(s); method %s%s",
            len(indices),
            already_done,
            len(early),
            method.name,
            f" on layer {', '.join(plan.layer)}" if plan.layer else "",
        )

        devices = list(plan.strategy.extended.worker_devices) if plan.strategy is not None else []
        bar = tqdm(
            total=len(indices),
            unit="img",
            desc=f"xai export {method.name}",
            disable=not plan.progress,
            smoothing=0.1,
            dynamic_ncols=True,
        )
        committer = _Committer(manifest, out, max_writes=2)
        committer.start()
        shard_pool = ThreadPoolExecutor(len(devices)) if len(devices) > 1 else None
        pool = ThreadPoolExecutor(plan.workers, thread_name_prefix="xai-export-write")
        processed = 0
        try:
            paths = [e.path or "" for e in images]
            for batch in loader.dataset(paths, indices, batch_size, prefetch=2) if indices else ():
                rows, jobs = _process_batch(plan, loader, images, done, batch, devices, shard_pool)
                committer.submit(rows, pool.submit(writer, jobs) if jobs else None)
                processed += len(rows) + len(jobs)
                bar.update(len(batch[0]))
                bar.set_postfix(failed=committer.failed, refresh=False)
        finally:
            pool.shutdown(wait=True)
            committer.close()  # rows of everything written so far reach the manifest
            bar.close()
            if shard_pool is not None:
                shard_pool.shutdown()
    finally:
        manifest.close()

    return _summarise(plan, entries, already_done, processed, started)


def _summarise(
    plan: _Plan, entries: list[_Entry], already_done: int, processed: int, started: float
) -> ExportSummary:
    """Rewrite the manifest in walk order, count it, and write ``summary.json``."""
    out = plan.out
    counts = _compact(out / MANIFEST_NAME, [e.rel for e in entries])
    elapsed = time.perf_counter() - started
    failures: list[tuple[str, str]] = []
    for _, row in _iter_rows(out / MANIFEST_NAME):
        if row.get("status") == "error" and len(failures) < 20:
            failures.append((row["path"], str(row.get("error"))))
    summary = ExportSummary(
        output_dir=out,
        manifest_path=out / MANIFEST_NAME,
        summary_path=out / SUMMARY_NAME,
        total=len(entries),
        ok=counts.get("ok", 0),
        failed=counts.get("error", 0),
        skipped=counts.get("skipped", 0),
        already_done=already_done,
        processed=processed,
        elapsed_s=elapsed,
        images_per_s=processed / elapsed if elapsed > 0 else 0.0,
        failures=tuple(failures),
    )
    io.write_json(
        out / SUMMARY_NAME,
        summary.to_dict() | {"settings": plan.settings, "xai_version": __version__},
    )
    return summary


def _process_batch(
    plan: _Plan,
    loader: _Loader,
    images: Sequence[_Entry],
    done: set[str],
    batch: Sequence[Any],
    devices: Sequence[str],
    shard_pool: ThreadPoolExecutor | None,
) -> tuple[list[dict[str, Any]], list[_Job]]:
    """Explain one pipeline batch: (final rows of failed images, write jobs of the others).

    Images already done (in a chunk recomputed for batch identity) get neither.
    """
    idx, x, heights, widths, tags, oks, errors = (t.numpy() for t in batch)
    rels = [images[int(i)].rel for i in idx]
    ok = [j for j in range(len(idx)) if oks[j]]
    originals = [loader.originals.pop(int(idx[j]), None) for j in ok]
    rows = [
        _empty_row(rels[j], "error", errors[j].decode("utf-8", "replace"))
        for j in range(len(idx))
        if not oks[j] and rels[j] not in done
    ]
    if not ok:
        return rows, []
    targets: Any = plan.fixed_target
    if plan.target_map is not None:
        targets = np.asarray([plan.target_map[rels[j]] for j in ok], np.int32)
    inputs = x if len(ok) == len(idx) else x[ok]
    try:
        explanations = _explain_batch(
            plan.explainer,
            plan.method,
            inputs,
            targets,
            plan.seed,
            plan.params,
            devices,
            shard_pool,
        )
    except Exception as exc:  # a batch the method rejects: error rows, not a crash
        reason = str(exc) if isinstance(exc, XaiError) else f"{type(exc).__name__}: {exc}"
        return rows + [_empty_row(rels[j], "error", reason) for j in ok if rels[j] not in done], []
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
        size = (int(heights[j]), int(widths[j]))
        outputs = output_paths(rels[j], plan.formats, plan.taken_dirs)
        row = _image_row(
            rels[j],
            size,
            e,
            r,
            pred,
            plan.names,
            plan.method.name,
            plan.row_params,
            plan.layer,
            outputs,
        )
        row["orientation"] = int(tags[j])
        jobs.append(_Job(rels[j], outputs, size, original, np.ascontiguousarray(e.raw[0][r]), row))
    return rows, jobs


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
