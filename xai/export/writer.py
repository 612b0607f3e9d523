"""Writing outputs: pictures coloured and encoded by a thread pool, atomic files, group commit."""

from __future__ import annotations

import contextlib
import io as _io
import os
import queue
import secrets
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import io, postprocess, viz
from ..errors import STORAGE_ERRNOS, OutputStorageError, XaiError
from ..explanation import heatmaps_at
from .journal import _empty_row, _Manifest
from .naming import _Containment

_HEATMAP_PIXELS = 1 << 24  # heatmaps resized per call (64 MiB of float32)

# ------------------------------------------------------------------------------------ writing


def _write_file(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temporary file + rename), without an fsync.

    Readers and a killed process never see a partial ``target``. Durability against power loss
    comes from one :func:`_sync_filesystem` per batch, before the batch's manifest rows are
    appended: fsyncing every file (as :mod:`xai.io` does for single writes) costs 5-10 ms per file
    on a virtual disk and would make writing, not compute, the bottleneck.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name[:100]}.{secrets.token_hex(4)}.tmp")  # xai.io's pattern
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = _io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _filesystem_sync(path: Path) -> Callable[[], None]:
    """A function that flushes the file system holding ``path`` to disk.

    Linux: ``syncfs`` on that file system only; other POSIX systems: ``os.sync``; elsewhere a no-op
    (atomic renames still protect against a killed process, not against power loss).
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            syncfs = None
        if syncfs is not None:

            def flush() -> None:
                fd = os.open(path, os.O_RDONLY)
                try:
                    syncfs(fd)
                finally:
                    os.close(fd)

            return flush
    return getattr(os, "sync", lambda: None)


@dataclass
class _Job:
    rel: str
    outputs: dict[str, str]
    size: tuple[int, int]
    original: np.ndarray | None
    raw: np.ndarray
    row: dict[str, Any]


@dataclass
class _Writer:
    """Colours, encodes and writes the outputs of a batch of images (runs in a writer thread)."""

    root: Path
    display: postprocess.Display
    channel_axis: int | None
    fused: bool
    style: viz.OverlayStyle
    containment: _Containment = field(init=False)

    def __post_init__(self) -> None:
        self.containment = _Containment(self.root)

    def heatmaps(self, jobs: Sequence[_Job]) -> list[np.ndarray | None]:
        """Each job's heatmap at its original size, float32 in [0, 1] (None if not needed).

        Maps of the same size are resized together (one call per group of at most
        ``_HEATMAP_PIXELS`` pixels): per-call overhead is paid once per batch, not per image.
        """
        out: list[np.ndarray | None] = [None] * len(jobs)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, job in enumerate(jobs):
            if set(job.outputs) & {"overlay", "heatmap"}:
                groups.setdefault(job.size, []).append(i)
        for size, members in groups.items():
            step = max(1, _HEATMAP_PIXELS // (size[0] * size[1]))
            for k in range(0, len(members), step):
                chunk = members[k : k + step]
                raws = np.stack([jobs[i].raw for i in chunk])
                maps = heatmaps_at(raws, size, self.display, self.channel_axis, self.fused)
                for i, m in zip(chunk, maps):
                    out[i] = m
        return out

    def write(self, job: _Job, heat: np.ndarray | None) -> dict[str, Any]:
        """Encode and write an image's outputs; return its manifest row (error row on failure)."""
        try:
            for kind, rel_out in job.outputs.items():
                target = self.root / rel_out
                self.containment.check(target)
                if kind == "overlay":
                    assert heat is not None and job.original is not None  # noqa: S101
                    data = io.encode_png(
                        self.style.draw(job.original, heat), self.style.png_compression
                    )
                elif kind == "heatmap":
                    assert heat is not None  # noqa: S101 - heatmaps() made one for this job
                    grey = np.floor(heat * 65535.0 + 0.5).astype(np.uint16)
                    data = io.encode_png(grey, self.style.png_compression)
                else:
                    data = _npy_bytes(job.raw)
                _write_file(target, data)
        except OSError as exc:
            if exc.errno in STORAGE_ERRNOS:  # every later write would fail too: stop the export
                raise OutputStorageError.from_os_error(exc, self.root) from exc
            return _failed_row(job, exc)
        except Exception as exc:
            return _failed_row(job, exc)
        return job.row

    def __call__(self, jobs: Sequence[_Job], pool: Executor | None = None) -> list[dict[str, Any]]:
        """Write one batch (runs in a writer thread); returns its rows in order.

        With ``pool``, the images are encoded and written by its threads (a Ray actor writes
        each batch itself); otherwise one after the other in the calling thread.
        """
        try:
            heats = self.heatmaps(jobs)
        except Exception as exc:
            return [_failed_row(job, exc) for job in jobs]
        if pool is not None:
            return list(pool.map(self.write, jobs, heats))
        return [self.write(job, heat) for job, heat in zip(jobs, heats)]


def _failed_row(job: _Job, exc: Exception) -> dict[str, Any]:
    reason = (
        str(exc)
        if isinstance(exc, XaiError)
        else f"Writing the outputs failed: {type(exc).__name__}: {exc}"
    )
    row = _empty_row(job.rel, "error", reason)
    row.update(height=job.row["height"], width=job.row["width"])
    return row


class _Committer(threading.Thread):
    """Commits batches in order: waits for their writes, flushes the disk, appends their rows.

    Group commit: each pass takes every batch queued so far, waits for their writes, flushes the
    file system once and appends all their rows, so a slow flush (a busy or throttled disk) makes
    the groups larger instead of stalling the pipeline. :meth:`submit` blocks while
    ``max_writes`` batches are still being written, which bounds the memory held by pictures in
    flight whatever the folder size (a written batch only holds its manifest rows).
    """

    def __init__(self, manifest: _Manifest, root: Path, max_writes: int) -> None:
        super().__init__(name="xai-export-commit", daemon=True)
        self.manifest = manifest
        self.sync = _filesystem_sync(root)
        self.slots = threading.BoundedSemaphore(max_writes)
        self.queue: queue.Queue[
            tuple[list[dict[str, Any]], Future[list[dict[str, Any]]] | None] | None
        ] = queue.Queue()
        self.failed = 0
        self.error: BaseException | None = None

    def submit(
        self, rows: list[dict[str, Any]], written: Future[list[dict[str, Any]]] | None
    ) -> None:
        """Queue a batch: ``rows`` already final, ``written`` the rows of its writer job."""
        if self.error is not None:
            raise self.error
        if written is not None:
            self.slots.acquire()
            written.add_done_callback(lambda _: self.slots.release())
        self.queue.put((rows, written))

    def _take(self) -> tuple[list[Any], bool]:
        """Every queued batch (waiting for the first); True when the end marker was among them."""
        items = [self.queue.get()]
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        end = None in items
        return [i for i in items if i is not None], end

    def run(self) -> None:
        end = False
        while not end:
            items, end = self._take()
            if self.error is not None:
                continue  # keep draining so that submit() never blocks forever
            try:
                rows: list[dict[str, Any]] = []
                for batch_rows, written in items:
                    rows += batch_rows
                    if written is not None:
                        rows += written.result()
                if any(written is not None for _, written in items):
                    self.sync()  # the files exist on disk before a manifest line says so
                self.manifest.append(rows)
                self.failed += sum(r["status"] == "error" for r in rows)
            except BaseException as exc:  # re-raised in the main thread by close()
                self.error = exc

    def close(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error
