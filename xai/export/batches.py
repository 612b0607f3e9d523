"""The export's batch loop: plan fixed chunks, run an engine over them, commit rows, summarise."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from .._version import __version__
from .core import BatchExplainer, Decoded
from .journal import MANIFEST_NAME, SUMMARY_NAME, _compact, _empty_row, _iter_rows, _Manifest
from .loader import _Loader
from .summary import ExportSummary
from .walk import _Entry
from .writer import _Committer, _Writer

log = logging.getLogger("xai.export")


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

    def core(
        self, devices: Sequence[str] = (), shard_pool: ThreadPoolExecutor | None = None
    ) -> BatchExplainer:
        """The batch-in, maps-out core of this export (both engines run one)."""
        return BatchExplainer(
            explainer=self.explainer,
            method=self.method,
            formats=self.formats,
            seed=self.seed,
            params=self.params,
            fixed_target=self.fixed_target,
            names=self.names,
            row_params=self.row_params,
            layer=self.layer,
            taken_dirs=self.taken_dirs,
            devices=devices,
            shard_pool=shard_pool,
        )


@dataclass(frozen=True)
class _Work:
    """The images to explain, as fixed chunks of the sorted image list."""

    images: list[_Entry]  # every image to explain, in walk order
    chunks: list[list[int]]  # positions in ``images``, ``batch_size`` per chunk, to compute
    done: set[str]  # images finished by an earlier run (written neither again nor twice)
    already_done: int


# An engine explains and writes ``work`` and appends the rows to the manifest, in any order;
# it returns the number of images it processed.
Engine = Callable[["_Plan", _Work, _Manifest], int]


def _run(
    plan: _Plan, engine: Engine, entries: list[_Entry], done: set[str], started: float
) -> ExportSummary:
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
        chunks = [
            list(range(c * batch_size, min((c + 1) * batch_size, len(images)))) for c in todo_chunks
        ]
        already_done = sum(1 for e in images if e.rel in done)
        log.info(
            "xai export: %d image(s) to explain, %d already done, %d other file(s); method %s%s",
            sum(len(c) for c in chunks),
            already_done,
            len(early),
            method.name,
            f" on layer {', '.join(plan.layer)}" if plan.layer else "",
        )
        work = _Work(images, chunks, done, already_done)
        processed = engine(plan, work, manifest) if chunks else 0
    finally:
        manifest.close()

    return _summarise(plan, entries, already_done, processed, started)


def _progress(plan: _Plan, total: int) -> Any:
    from .._progress import progress_bar as tqdm

    return tqdm(
        total=total,
        unit="img",
        desc=f"xai export {plan.method.name}",
        disable=not plan.progress,
        smoothing=0.1,
        dynamic_ncols=True,
    )


def _decoded(
    batch: Sequence[Any], images: Sequence[_Entry], target_map: Any
) -> tuple[np.ndarray, Decoded]:
    """(positions, the core's numpy batch) of a ``tf.data`` batch of :meth:`_Loader.dataset`."""
    idx, x, heights, widths, tags, oks, errors = (t.numpy() for t in batch)
    rels = [images[int(i)].rel for i in idx]
    return idx, Decoded(
        rels=rels,
        x=x,
        heights=heights,
        widths=widths,
        tags=tags,
        oks=oks,
        errors=[e.decode("utf-8", "replace") for e in errors],
        targets=None if target_map is None else np.asarray([target_map[r] for r in rels]),
    )


def _local_engine(loader: _Loader, writer: _Writer) -> Engine:
    """The local engine: a ``tf.data`` loader, the core, a writer thread pool, group commit."""

    def run(plan: _Plan, work: _Work, manifest: _Manifest) -> int:
        out, batch_size = plan.out, plan.batch_size
        images, done = work.images, work.done
        indices = [i for chunk in work.chunks for i in chunk]
        devices = list(plan.strategy.extended.worker_devices) if plan.strategy is not None else []
        bar = _progress(plan, len(indices))
        committer = _Committer(manifest, out, max_writes=2)
        committer.start()
        shard_pool = ThreadPoolExecutor(len(devices)) if len(devices) > 1 else None
        pool = ThreadPoolExecutor(plan.workers, thread_name_prefix="xai-export-write")
        core = plan.core(devices, shard_pool)
        processed = 0
        try:
            paths = [e.path or "" for e in images]
            for batch in loader.dataset(paths, indices, batch_size, prefetch=2):
                idx, decoded = _decoded(batch, images, plan.target_map)
                originals = [
                    loader.originals.pop(int(i), None) for i, ok in zip(idx, decoded.oks) if ok
                ]
                rows, jobs = core(decoded, originals, done)
                committer.submit(rows, pool.submit(writer, jobs) if jobs else None)
                processed += len(rows) + len(jobs)
                bar.update(len(decoded.rels))
                bar.set_postfix(failed=committer.failed, refresh=False)
        finally:
            pool.shutdown(wait=True)
            committer.close()  # rows of everything written so far reach the manifest
            bar.close()
            if shard_pool is not None:
                shard_pool.shutdown()
        return processed

    return run


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
