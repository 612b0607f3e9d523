"""``xai export``: explain every image of a folder tree, fast, resumably and safely.

``export(model, input_dir, output_dir, ...)`` walks ``input_dir`` (nested folders included), explains
every image with one method and writes, mirroring the folder structure::

    output_dir/
      overlay/<rel path>.png     heatmap over the ORIGINAL image, at its original resolution (RGB)
      heatmap/<rel path>.png     the heatmap at the original resolution, 16-bit grey (0..65535)
      raw/<rel path>.npy         raw signed float32 attributions at their native resolution
      manifest.jsonl             one JSON line per input file (see below)
      summary.json               counts, throughput and the settings, written at the end
      .xai-export.json           the run's settings (checked when the folder is used again)

``<rel path>`` is the input's path relative to ``input_dir`` *including its extension*
(``cats/tom.jpg`` -> ``overlay/cats/tom.jpg.png``), so ``tom.jpg`` and ``tom.png`` never collide.
Names are sanitised (control characters and ``<>:"\\|?*`` become ``_``, leading dots and trailing
dots/spaces are replaced, Windows device names get a ``_`` prefix, long names are shortened); a
sanitised name gets ``~`` and 8 hex digits of a hash of the original path, so two inputs never map
to one output. Every output path is checked to resolve inside ``output_dir`` (a symbolic link in
there cannot redirect a write elsewhere).

**Manifest.** One line per input, in the walk order (sorted names, depth first)::

    {"path": "cats/tom.jpg", "status": "ok", "error": null, "height": 480, "width": 640,
     "predicted": 3, "predicted_label": "cat", "probability": 0.91, "target": 3,
     "target_label": "cat", "target_probability": 0.91, "score": 7.25, "method": "gradcam",
     "params": {}, "layer": ["conv5"], "outputs": {"overlay": "overlay/cats/tom.jpg.png", ...}}

``status`` is ``"ok"``, ``"error"`` (an image file that could not be explained: corrupt,
truncated, empty, too large, unreadable, ... with the reason in ``error``) or ``"skipped"`` (not an
image by its suffix, a hidden file, a symbolic-link loop, ... with the reason in ``error``).
``probability`` is ``null`` for a model without a softmax/sigmoid head. Read it with
``pandas.read_json(path, lines=True)``.

**Pipeline.** A ``tf.data`` pipeline reads, decodes (:func:`xai.io.read_image`, so CMYK and 16-bit
files, grey and RGBA images all come out RGB, and decompression bombs are refused from the header),
resizes and preprocesses images in parallel and prefetches batches while the compiled step of the
:class:`~xai.explain.Explainer` runs; the pictures are coloured, encoded and written by a small
thread pool with a bounded queue. Memory does not grow with the number of images beyond a few
hundred bytes of bookkeeping per file (the file list and the set of finished files).

**Resuming.** Every output is written atomically (temporary file + rename, named like
:mod:`xai.io`'s) before its manifest line; after each batch the file system is flushed (``syncfs``
on Linux: one flush per batch instead of an fsync per file, which costs 5-10 ms each on a virtual
disk) and then the batch's manifest lines are appended, flushed and fsynced. Running the same
command again skips the images already done (their manifest line says ``ok`` and their files exist)
and retries the failed ones; a run killed at any point (even ``SIGKILL``) leaves only complete
output files (a killed write can leave a hidden ``.*.tmp`` file, which the next run deletes).
Batches are formed from fixed positions of the sorted file list (chunks of ``batch_size``), and the
methods' noise depends only on ``seed`` (never on the batch), so a resumed run writes byte-identical
files to an uninterrupted one. At the end the manifest is rewritten in walk order with one line per
input, so it is byte-identical too. A folder written with other settings (model weights, method,
parameters, layer, targets, image size, preprocessing, formats, overlay style) is refused unless
``overwrite=True`` (``--overwrite``), which deletes the files listed in its manifest and starts
afresh.

**Several GPUs.** Pass ``strategy=tf.distribute.MirroredStrategy()`` (``--multi-gpu`` on the command
line): the model is loaded under ``strategy.scope()`` (build it there yourself when you pass a model
object), each batch of ``batch_size`` images is split evenly over the replicas' devices and their
compiled steps run concurrently; the results are the same as on one device up to float rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import hashlib
import io as _io
import json
import logging
import math
import os
import queue
import re
import secrets
import stat
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import io, models_io, postprocess, viz
from . import methods as methods_mod
from . import targets as targets_mod
from ._version import __version__
from .errors import XaiError, XaiValueError, bad_type, bad_value, did_you_mean
from .preprocessing import PRESETS, Preprocess, get_preprocess

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "IMAGE_SUFFIXES", "ExportSummary", "add_parser", "export", "run"]

FORMATS: tuple[str, ...] = ("overlay", "heatmap", "raw")
"""Output kinds: overlay PNG (RGB), heatmap PNG (16-bit grey), raw attributions (``.npy``)."""

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .tif .tiff .webp .gif .pbm .pgm .ppm .pnm .pfm .sr "
    ".ras .jp2 .avif .exr .hdr .pic".split()
)
"""File suffixes treated as images (case-insensitive); other files are listed as skipped."""

CONFIG_NAME = ".xai-export.json"
MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".xai-export.lock"
_OUR_FILES = frozenset({CONFIG_NAME, MANIFEST_NAME, SUMMARY_NAME, LOCK_NAME})
_EXTENSIONS = {"overlay": ".png", "heatmap": ".png", "raw": ".npy"}
_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # xai.io's atomic-write temporaries
_HEATMAP_PIXELS = 1 << 24  # heatmaps resized per call (64 MiB of float32)
_MAX_NAME_BYTES = 200  # leaves room for "~hash" and the added extension within 255 bytes
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
_ROW_KEYS = (
    "path", "status", "error", "height", "width", "predicted", "predicted_label", "probability",
    "target", "target_label", "target_probability", "score", "method", "params", "layer", "outputs",
)  # fmt: skip


# ------------------------------------------------------------------------------------ summary


@dataclass(frozen=True)
class ExportSummary:
    """What an export run did.

    Attributes:
        output_dir: the output folder.
        manifest_path: ``output_dir/manifest.jsonl``.
        summary_path: ``output_dir/summary.json``.
        total: input files found (images and others).
        ok: images explained, in this run or an earlier one.
        failed: image files that could not be explained (status ``"error"``).
        skipped: files that are not images, hidden files, symbolic-link loops...
        already_done: images skipped because an earlier run had explained them.
        processed: images explained or attempted in this run.
        elapsed_s: wall time of this run, seconds.
        images_per_s: ``processed / elapsed_s``.
        failures: up to 20 ``(path, reason)`` of failed images.
    """

    output_dir: Path
    manifest_path: Path
    summary_path: Path
    total: int
    ok: int
    failed: int
    skipped: int
    already_done: int
    processed: int
    elapsed_s: float
    images_per_s: float
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def exit_code(self) -> int:
        """0 when no image failed, 1 otherwise (the command line's exit status)."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "already_done": self.already_done,
            "processed": self.processed,
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(self.images_per_s, 2),
            "failures": [{"path": p, "error": e} for p, e in self.failures],
        }

    def __str__(self) -> str:
        text = (
            f"{self.ok} of {self.total} files explained ({self.failed} failed, {self.skipped} "
            f"skipped, {self.already_done} already done) in {self.elapsed_s:.1f} s "
            f"({self.images_per_s:.1f} images/s) -> {self.manifest_path}"
        )
        return text


# ------------------------------------------------------------------------------------ walking


@dataclass(frozen=True)
class _Entry:
    """One input file: ``status`` None means "to explain"; otherwise the row is final."""

    rel: str
    path: str | None
    status: str | None = None
    reason: str | None = None


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(root: Path, exclude: set[tuple[int, int]]) -> list[_Entry]:
    """Every file under ``root`` in sorted depth-first order; folder symlinks followed once.

    A folder reached a second time (a symbolic-link loop, or a second link to it) is listed as
    skipped and not entered again; folders in ``exclude`` (the output folder) are left out.
    """
    entries: list[_Entry] = []
    root_stat = os.stat(root)
    visited = {(root_stat.st_dev, root_stat.st_ino)}
    # Explicit stack of (folder path, relative prefix, remaining sorted items): no recursion limit.
    stack: list[tuple[str, str, list[os.DirEntry[str]]]] = []

    def listing(path: str, prefix: str) -> None:
        try:
            with os.scandir(path) as it:
                items = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            entries.append(
                _Entry(
                    prefix.rstrip("/") or ".",
                    None,
                    "error",
                    f"Could not list the folder: {exc.strerror or exc}.",
                )  # fmt: skip
            )
            return
        stack.append((path, prefix, items))

    listing(str(root), "")
    while stack:
        _, prefix, items = stack[-1]
        if not items:
            stack.pop()
            continue
        item = items.pop()
        rel = prefix + item.name
        if _is_hidden(item.name):
            entries.append(
                _Entry(rel, None, "skipped", "Hidden file or folder (name starts with '.').")
            )
            continue
        is_link = False
        try:
            is_link = item.is_symlink()
            st = os.stat(item.path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                entries.append(
                    _Entry(rel, None, "skipped", "Symbolic link loop: the link resolves to itself.")
                )
            elif exc.errno == errno.ENOENT and is_link:
                is_image = os.path.splitext(item.name)[1].lower() in IMAGE_SUFFIXES
                entries.append(
                    _Entry(
                        rel,
                        None,
                        "error" if is_image else "skipped",
                        "Broken symbolic link: its target does not exist.",
                    )  # fmt: skip
                )
            else:
                entries.append(
                    _Entry(rel, None, "error", f"Could not stat the file: {exc.strerror or exc}.")
                )
            continue
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in exclude:
                continue
            if key in visited:
                entries.append(
                    _Entry(
                        rel,
                        None,
                        "skipped",
                        "Folder already visited (a symbolic link loop, or a second link to "
                        "the same folder): not entered again.",
                    )  # fmt: skip
                )
                continue
            visited.add(key)
            listing(item.path, rel + "/")
        elif stat.S_ISREG(st.st_mode):
            suffix = os.path.splitext(item.name)[1].lower()
            if suffix in IMAGE_SUFFIXES:
                entries.append(_Entry(rel, item.path))
            else:
                entries.append(
                    _Entry(
                        rel,
                        None,
                        "skipped",
                        f"Not an image file name (suffix {suffix or 'none'!r}).",
                    )  # fmt: skip
                )
        else:
            entries.append(
                _Entry(rel, None, "skipped", "Not a regular file (FIFO, socket or device).")
            )
    return entries


# ------------------------------------------------------------------------------------ naming

_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _safe_component(name: str) -> str:
    s = unicodedata.normalize("NFC", name)
    s = _UNSAFE_CHARS.sub("_", s)
    s = "".join("_" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)  # undecodable bytes
    s = s.rstrip(" .")
    if not s:
        return "_"
    if s.startswith("."):
        s = "_" + s[1:]
    if s.split(".")[0].upper() in _WINDOWS_RESERVED:
        s = "_" + s
    if len(s.encode("utf-8")) > _MAX_NAME_BYTES:
        s = s.encode("utf-8")[:_MAX_NAME_BYTES].decode("utf-8", "ignore")
    return s


def output_stem(rel: str) -> str:
    """The sanitised relative path (POSIX) that the outputs of input ``rel`` are named after.

    A clean name maps to itself; a changed one gets ``~`` and a hash of ``rel``, so distinct inputs
    never share outputs.
    """
    parts = rel.split("/")
    safe = [_safe_component(p) for p in parts]
    if safe != parts:
        safe[-1] = f"{safe[-1]}~{_short_hash(rel)}"
    return "/".join(safe)


def output_paths(rel: str, formats: Sequence[str]) -> dict[str, str]:
    """Output files (relative to the output folder, POSIX) of input ``rel`` for each format."""
    stem = output_stem(rel)
    return {f: f"{f}/{stem}{_EXTENSIONS[f]}" for f in formats}


class _Containment:
    """Checks that output folders resolve inside the output root (cached per folder)."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self._ok: set[str] = set()
        self._lock = threading.Lock()

    def check(self, target: Path) -> None:
        parent = str(target.parent)
        if parent in self._ok:
            return
        real = os.path.realpath(parent)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise XaiValueError(
                f"Refusing to write {str(target)!r}: its folder resolves to {real!r}, outside the "
                f"output folder {self.root!r} (a symbolic link inside the output folder?)."
            )
        with self._lock:
            self._ok.add(parent)


# ------------------------------------------------------------------------------------ manifest


def _dump_row(row: Mapping[str, Any]) -> bytes:
    line = json.dumps(row, ensure_ascii=False, allow_nan=False)
    try:
        return (line + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a file name with undecodable bytes: escape it (still valid JSON)
        return (json.dumps(row, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def _empty_row(rel: str, status: str, reason: str | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_ROW_KEYS)
    row.update(path=rel, status=status, error=reason, outputs={})
    return row


class _Manifest:
    """Append-only JSONL; each :meth:`append` is flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        self._file.write(b"".join(_dump_row(r) for r in rows))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _repair_tail(path: Path) -> None:
    """Cut a partial last line (a run killed mid-write) so appends start on a fresh line."""
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        pos = size
        while pos > 0:
            step = min(65536, pos)
            handle.seek(pos - step)
            chunk = handle.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(pos - step + cut + 1)
                return
            pos -= step
        handle.truncate(0)


def _iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset, row) of every readable line of a manifest."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        offset = 0
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("path"), str):
                yield offset, row
            offset += len(line)


def _done_set(path: Path, root: Path) -> set[str]:
    """Inputs whose last manifest line says ok and whose output files all exist."""
    last: dict[str, bool] = {}
    for _, row in _iter_rows(path):
        ok = row.get("status") == "ok" and isinstance(row.get("outputs"), dict)
        if ok:
            ok = all(isinstance(p, str) and (root / p).is_file() for p in row["outputs"].values())
        last[row["path"]] = ok
    return {rel for rel, ok in last.items() if ok}


def _compact(path: Path, order: Sequence[str]) -> dict[str, int]:
    """Rewrite the manifest atomically with the last line of each input of ``order``, in order.

    Returns counts per status.
    """
    offsets: dict[str, int] = {}
    for offset, row in _iter_rows(path):
        offsets[row["path"]] = offset
    counts = {"ok": 0, "error": 0, "skipped": 0}
    with open(path, "rb") as source, io._atomic_open(path) as target:
        for rel in order:
            offset = offsets.get(rel)
            if offset is None:
                continue
            source.seek(offset)
            line = source.readline()
            target.write(line)
            status = json.loads(line).get("status")
            counts[status] = counts.get(status, 0) + 1
    return counts


def _clean_temporaries(root: Path) -> int:
    """Delete the hidden temporaries a killed atomic write left behind; returns how many."""
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if _TEMP_FILE.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


# ------------------------------------------------------------------------------------ settings


def _parse_image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×,]\s*(\d+))?\s*", value)
        if not m:
            raise bad_value("image_size", "'HxW' (e.g. '224x224') or one int for a square", value)
        h = int(m[1])
        w = int(m[2]) if m[2] else h
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        h = w = int(value)
    elif isinstance(value, Sequence) and len(value) == 2:
        h, w = value
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (h, w)):
            raise bad_type("image_size", "(height, width) ints", value)
        h, w = int(h), int(w)
    else:
        raise bad_type("image_size", "None, an int, (height, width) or 'HxW'", value)
    if h < 1 or w < 1:
        raise bad_value("image_size", "positive sizes", value)
    return h, w


def _parse_formats(formats: Any) -> tuple[str, ...]:
    if isinstance(formats, str):
        items = [f.strip().lower() for f in formats.split(",") if f.strip()]
    elif isinstance(formats, Sequence):
        items = [str(f).strip().lower() for f in formats]
    else:
        raise bad_type(
            "formats", "a sequence of 'overlay', 'heatmap', 'raw' or a comma list", formats
        )
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise bad_value(
            "formats",
            "one or more of 'overlay', 'heatmap', 'raw' (comma-separated on the command line)",
            formats,
            did_you_mean(bad[0], FORMATS) if bad else "Example: --formats overlay,raw.",
        )
    return tuple(f for f in FORMATS if f in items)  # canonical order, no duplicates


def _load_class_names(class_names: Any) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (str, os.PathLike)):
        p = Path(class_names)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise bad_value(
                "labels", "a readable text file with one class name per line", str(p), str(exc)
            ) from exc
        names = text.splitlines()
        while names and not names[-1].strip():
            names.pop()
        names = [n.strip() for n in names]
        if not names or any(not n for n in names):
            raise bad_value(
                "labels",
                "a text file with one non-empty class name per line (line i = class i)",
                str(p),
                "Remove blank lines: they would shift the class numbers.",
            )
        return tuple(names)
    if isinstance(class_names, Sequence):
        return tuple(str(n) for n in class_names)
    raise bad_type("class_names", "None, a sequence of names or a path to classes.txt", class_names)


def _class_index(value: str, class_names: tuple[str, ...] | None, where: str) -> int:
    text = value.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if class_names and text in class_names:
        return class_names.index(text)
    hint = (
        did_you_mean(text, class_names)
        if class_names
        else "Class names need --labels classes.txt (class_names= in Python)."
    )
    raise XaiValueError(
        f"{where} must be a class index or a class name. Received: {value!r}. {hint}"
    )


_CSV_PATH_COLUMNS = ("path", "file", "filename", "image", "relpath")
_CSV_TARGET_COLUMNS = ("target", "label", "class", "class_name")


def _read_targets_csv(
    path: Path, input_dir: Path, class_names: tuple[str, ...] | None
) -> dict[str, int]:
    """``{relative path: class}`` from a CSV with a path and a target column (see ``export``)."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        raise bad_value("targets", "a readable CSV file", str(path), str(exc)) from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        path_col = next((c for c in _CSV_PATH_COLUMNS if c in header), None)
        target_col = next((c for c in _CSV_TARGET_COLUMNS if c in header), None)
        if path_col is None or target_col is None:
            raise bad_value(
                "targets",
                "a CSV with a header naming a path column ("
                + "/".join(_CSV_PATH_COLUMNS)
                + ") and a target column ("
                + "/".join(_CSV_TARGET_COLUMNS)
                + ")",
                str(path),
                f"Its header is {reader.fieldnames}. Example:\n  path,target\n  cats/tom.jpg,3",
            )
        names = {h.strip().lower(): h for h in reader.fieldnames or []}
        mapping: dict[str, int] = {}
        base = path.resolve().parent
        root = input_dir.resolve()
        for line_no, row in enumerate(reader, start=2):
            raw_path = (row.get(names[path_col]) or "").strip().replace("\\", "/")
            raw_target = row.get(names[target_col]) or ""
            if not raw_path:
                continue
            where = f"{path.name} line {line_no}: the target"
            cls = _class_index(raw_target, class_names, where)
            keys = []
            p = Path(raw_path)
            for candidate in [p] if p.is_absolute() else [base / p, root / p]:
                with contextlib.suppress(ValueError):
                    keys.append(Path(os.path.normpath(candidate)).relative_to(root).as_posix())
            for key in keys:
                mapping.setdefault(key, cls)
    return mapping


def _resolve_targets(
    targets: Any, input_dir: Path, class_names: tuple[str, ...] | None
) -> tuple[int | None, dict[str, int] | None, Any]:
    """(one class for all, per-file mapping, JSON description for the config)."""
    if targets is None or (isinstance(targets, str) and targets.strip().lower() == "predicted"):
        return None, None, "predicted"
    if isinstance(targets, bool):
        raise bad_type("targets", "'predicted', a class index, a class name or a CSV path", targets)
    if isinstance(targets, (int, np.integer)):
        return int(targets), None, int(targets)
    if isinstance(targets, Mapping):
        mapping = {}
        for k, v in targets.items():
            cls = v if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None
            if cls is None:
                cls = _class_index(str(v), class_names, f"targets[{k!r}]")
            mapping[Path(str(k)).as_posix()] = int(cls)
        digest = hashlib.sha256(json.dumps(sorted(mapping.items())).encode()).hexdigest()
        return None, mapping, {"mapping_sha256": digest}
    if isinstance(targets, (str, os.PathLike)):
        text = os.fspath(targets)
        p = Path(text)
        if p.suffix.lower() == ".csv" or p.is_file():
            if not p.is_file():
                raise bad_value("targets", "an existing CSV file", text, "Check the path.")
            mapping = _read_targets_csv(p, input_dir, class_names)
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            return None, mapping, {"csv": str(p.resolve()), "sha256": digest}
        cls = _class_index(text, class_names, "`targets`")
        return cls, None, cls
    raise bad_type(
        "targets", "'predicted', a class index, a class name, a CSV path or a mapping", targets
    )


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
    ) -> None:
        self.paths: Sequence[str] = ()
        self.size = size
        self.channels = channels
        self.channels_first = channels_first
        self.preprocess = preprocess
        self.keep_originals = keep_originals
        self.max_pixels = max_pixels
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

    def __call__(self, index: np.ndarray) -> tuple[np.ndarray, np.int32, np.int32, np.bool_, bytes]:
        i = int(index)
        try:
            image = io.read_image(self.paths[i], max_pixels=self.max_pixels)
            x = self.model_input(image)
            if self.keep_originals:
                self.originals[i] = image
            return x, np.int32(image.shape[0]), np.int32(image.shape[1]), np.bool_(True), b""
        except Exception as exc:  # every failure becomes a manifest row, never a crash
            message = str(exc) if isinstance(exc, XaiError) else f"{type(exc).__name__}: {exc}"
            return (
                np.zeros(self.shape, np.float32),
                np.int32(0),
                np.int32(0),
                np.bool_(False),
                message.encode("utf-8", "backslashreplace"),
            )

    def dataset(
        self, paths: Sequence[str], indices: Sequence[int], batch_size: int, prefetch: int
    ) -> Any:
        """Batches ``(index, model input, height, width, ok, error)`` of ``paths[indices]``."""
        import tensorflow as tf

        self.paths = paths

        def load(i: tf.Tensor) -> tuple[tf.Tensor, ...]:
            x, h, w, ok, err = tf.numpy_function(
                self, [i], [tf.float32, tf.int32, tf.int32, tf.bool, tf.string], stateful=True
            )
            x.set_shape(self.shape)
            for t in (h, w, ok, err):
                t.set_shape(())
            return i, x, h, w, ok, err

        ds = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))
        ds = ds.map(load, num_parallel_calls=_loader_threads(), deterministic=True)
        # No autotuning: destroying the iterator waits for the autotuner's background thread,
        # which often notices only at its next timed wake-up (here 20.5 s after the start), so an
        # export sat idle after its last batch (2,000 images: 20.6 s instead of 13.5 s, in a third
        # to half of the runs; with fixed parallelism: 8 runs of 8 without the wait).
        options = tf.data.Options()
        options.autotune.enabled = False
        return ds.batch(batch_size).prefetch(prefetch).with_options(options)


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
    alpha: float
    colormap: str
    png_compression: int | None = None
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
                if self.fused:  # already normalised maps at input resolution
                    maps = postprocess.normalize(postprocess.resize(raws, size))
                else:
                    maps = postprocess.heatmap(raws, size, self.display, self.channel_axis)
                for i, m in zip(chunk, maps):
                    out[i] = m
        return out

    def write(self, job: _Job, heat: np.ndarray | None) -> dict[str, Any]:
        """Encode and write one image's outputs; returns its manifest row (an error row on failure)."""
        try:
            for kind, rel_out in job.outputs.items():
                target = self.root / rel_out
                self.containment.check(target)
                if kind == "overlay":
                    picture = viz.overlay(
                        job.original, heat, alpha=self.alpha, colormap=self.colormap
                    )
                    data = io.encode_png(picture, self.png_compression)
                elif kind == "heatmap":
                    grey = np.floor(heat * 65535.0 + 0.5).astype(np.uint16)
                    data = io.encode_png(grey, self.png_compression)
                else:
                    data = _npy_bytes(job.raw)
                _write_file(target, data)
        except Exception as exc:
            return _failed_row(job, exc)
        return job.row

    def __call__(self, jobs: Sequence[_Job]) -> list[dict[str, Any]]:
        """Write one batch (runs in a writer thread); returns its rows in order."""
        try:
            heats = self.heatmaps(jobs)
        except Exception as exc:
            return [_failed_row(job, exc) for job in jobs]
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


# ------------------------------------------------------------------------------------ export


def _check_output_dir(
    out: Path, settings: dict[str, Any], overwrite: bool, *, dry_run: bool = False
) -> bool:
    """Decide what to do with ``out``; returns True when resuming an earlier run.

    Refuses (raises) a folder that must not be written. With ``overwrite``, deletes the files an
    earlier export listed in its manifest, and its manifest, unless ``dry_run``.
    """
    if out.exists() and not out.is_dir():
        raise bad_value("output_dir", "a folder (or a path to create)", str(out), "It is a file.")
    present = [p.name for p in out.iterdir()] if out.exists() else []
    if not [n for n in present if n != LOCK_NAME]:
        return False
    config_path = out / CONFIG_NAME
    previous = None
    if config_path.is_file():
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads(config_path.read_text(encoding="utf-8")).get("settings")
    # A setting that an older version did not record compares as None, the default of every
    # setting added since, so folders exported before it existed still resume.
    old = previous or {}
    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if previous is not None and not changed and not overwrite:
        return True
    if overwrite:
        if dry_run:
            return False
        if previous is not None:  # ours: delete the files the old manifest lists, then start over
            root = os.path.realpath(out)
            for _, row in _iter_rows(out / MANIFEST_NAME):
                for rel_out in (row.get("outputs") or {}).values():
                    target = os.path.realpath(out / str(rel_out))
                    if target.startswith(root + os.sep):
                        with contextlib.suppress(OSError):
                            os.unlink(target)
        for name in (MANIFEST_NAME, SUMMARY_NAME, CONFIG_NAME):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        return False
    if previous is None:
        raise XaiValueError(
            f"OUTPUT_DIR {str(out)!r} is not empty and holds no xai export ({CONFIG_NAME} is "
            f"missing; it contains e.g. {sorted(present)[:3]}). Choose a new or empty folder, or "
            "pass --overwrite (overwrite=True) to write into it anyway: files of the same names "
            "are replaced, others are left alone."
        )
    details = "; ".join(
        f"{k}: {_short(old.get(k))} there, {_short(settings.get(k))} now" for k in changed[:4]
    )
    raise XaiValueError(
        f"OUTPUT_DIR {str(out)!r} holds an export made with other settings ({details}). Resuming "
        "it would mix two kinds of results. Choose another OUTPUT_DIR, rerun with the same "
        "settings to resume, or pass --overwrite (overwrite=True) to delete its outputs and start "
        "again."
    )


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data, as it reads back from a file (tuples become lists, numpy
    scalars Python numbers, arrays a shape and digest), so settings compare equal across runs."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            digest = hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
            return {"array_shape": list(obj.shape), "sha256": digest}
        return repr(obj)

    return json.loads(json.dumps(value, default=default))


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        yield
        return
    handle = open(out / LOCK_NAME, "a")  # noqa: SIM115
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise XaiValueError(
                f"Another xai export is writing to {str(out)!r} right now. Wait for it to finish "
                "or choose another OUTPUT_DIR."
            ) from exc
        yield
    finally:
        handle.close()


def _model_input(
    model: Any, image_size: tuple[int, int] | None, data_format: str
) -> tuple[tuple[int, int], int, bool]:
    """(size, channels, channels_first) of a single-image-input model."""
    if len(model.inputs) != 1:
        raise XaiValueError(
            f"export explains models with one image input; this model has {len(model.inputs)} "
            "inputs. Use xai.explain() with a list of arrays for multi-input models."
        )
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3:
        raise XaiValueError(
            f"export explains image models, with inputs (height, width, channels); this model's "
            f"input has shape {shape}. Use xai.explain() for other inputs."
        )
    channels_first = data_format == "channels_first"
    channels = shape[0] if channels_first else shape[2]
    spatial = shape[1:] if channels_first else shape[:2]
    if channels not in (1, 3):
        raise XaiValueError(
            f"export feeds RGB (3 channels) or grey (1 channel) images; the model expects "
            f"{channels} channels (input shape {shape})."
        )
    if image_size is not None:
        fixed = [(s, i) for s, i in zip(spatial, image_size) if s is not None and s != i]
        if fixed:
            raise bad_value(
                "image_size",
                f"the model's input size {spatial[0]}x{spatial[1]} (or leave it out)",
                f"{image_size[0]}x{image_size[1]}",
            )
        return image_size, int(channels), channels_first
    if None in spatial:
        raise XaiValueError(
            f"The model accepts images of any size (input shape {shape}); pass --image-size HxW "
            "(image_size=(h, w)) to choose the size images are resized to."
        )
    return (int(spatial[0]), int(spatial[1])), int(channels), channels_first


def _explain_batch(
    explainer: Any,
    method: Any,
    x: np.ndarray,
    targets: np.ndarray | int | None,
    seed: int,
    params: Mapping[str, Any],
    devices: Sequence[str],
    pool: ThreadPoolExecutor | None,
) -> list[Any]:
    """Explanations covering ``x`` in order: one, or one per device shard."""

    def one(sel: slice) -> Any:
        t = targets[sel] if isinstance(targets, np.ndarray) else targets
        return explainer.explain(
            x[sel], method, targets=t, batch_size=len(x), seed=seed, progress=False, **params
        )

    if len(devices) <= 1 or pool is None or len(x) < 2:
        return [one(slice(None))]
    import tensorflow as tf

    bounds = np.linspace(0, len(x), len(devices) + 1).round().astype(int)
    shards = [(d, slice(a, b)) for d, a, b in zip(devices, bounds[:-1], bounds[1:]) if b > a]

    def on_device(item: tuple[str, slice]) -> Any:
        with tf.device(item[0]):
            return one(item[1])

    return list(pool.map(on_device, shards))


def export(
    model: Any,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    targets: Any = "predicted",
    batch_size: int = 32,
    image_size: Any = None,
    preprocess: str | Callable[[np.ndarray], Any] | None = "none",
    class_names: Sequence[str] | str | os.PathLike | None = None,
    formats: Sequence[str] | str = FORMATS,
    overwrite: bool = False,
    unsafe: bool = False,
    alpha: float = 0.4,
    colormap: str = "jet",
    png_compression: int | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    max_pixels: int | None = None,
    jit_compile: Any = "auto",
    strategy: Any = None,
    workers: int = 4,
    progress: bool = True,
) -> ExportSummary:
    """Explain every image under ``input_dir`` and write heatmaps and a manifest to ``output_dir``.

    See the module documentation for the output layout, the manifest's columns and resuming.

    Args:
        model: a Keras model, an :class:`~xai.explain.Explainer` (its compiled steps are reused),
            or a path to a ``.keras``/``.h5`` file or a TensorFlow SavedModel folder.
        input_dir: folder of images (nested folders are walked; symbolic links to folders are
            followed once, loops are listed as skipped).
        output_dir: where to write; created if missing. Must be new, empty, or an earlier export
            with the same settings (resumed) unless ``overwrite``.
        method: a registered method name (``xai.methods.available()``). CAM methods need a Keras
            model file; a SavedModel supports the input-gradient methods only.
        layer: CAM layer path; None auto-selects (recorded in the manifest).
        targets: ``"predicted"``, one class index or class name for every image, a path to a CSV
            with a path column (``path``/``file``/...) and a target column
            (``target``/``label``/...; paths relative to the CSV's folder or to ``input_dir``),
            or a mapping ``{relative path: class}``.
        batch_size: images per compiled step (the global batch with several devices).
        image_size: ``(height, width)``, ``"HxW"`` or an int; needed when the model accepts any
            size; otherwise it must match the model.
        preprocess: a preset from :data:`xai.preprocessing.PRESETS` (``"none"``, ``"unit"``,
            ``"symmetric"``, ``"caffe"``, ``"torch"``), ``"module:function"``,
            ``"file.py:function"`` or a callable on float32 RGB batches in ``[0, 255]``.
        class_names: names of the classes (index = class) or a path to a text file with one per
            line; used for labels in the manifest and for class-name targets.
        formats: any of ``"overlay"``, ``"heatmap"``, ``"raw"``.
        overwrite: replace an earlier export with other settings (or write into a non-empty
            folder that is not an export).
        unsafe: load model files with Lambda layers (trusted files only).
        alpha: overlay opacity of the colour map, in [0, 1].
        colormap: colour map name (``xai.viz.COLORMAPS``).
        png_compression: zlib level of the overlay and heatmap PNGs: None (OpenCV's default,
            level 1), 0 (no compression: about 10x faster to encode, files about 1.5-2x larger;
            worth it when encoding, not the model, limits the export, e.g. large photos) to 9
            (smallest files). The pixels are the same at every level.
        seed: seed of stochastic methods (recorded; the same seed gives the same files).
        params: the method's own parameters, e.g. ``{"num_samples": 25}``.
        max_pixels: largest image (height x width) read; default ``xai.io.MAX_PIXELS``.
        jit_compile: ``"auto"``, True or False (see :class:`~xai.explain.Explainer`).
        strategy: a ``tf.distribute.MirroredStrategy`` to spread batches over several GPUs.
        workers: threads that colour, encode and write the outputs.
        progress: show a progress bar (tqdm) with images/s.

    Returns:
        An :class:`ExportSummary` (``exit_code`` is 0 when no image failed).

    Raises:
        XaiValueError / XaiTypeError: bad arguments, an unloadable model, a method the model
            cannot support, or an output folder that must not be written (the message says why
            and what to do). Failures of single images never raise: they are manifest rows.
    """
    from .explain import Explainer

    started = time.perf_counter()
    m = methods_mod.get(method)
    fmt = _parse_formats(formats)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise bad_value("batch_size", "a positive int", batch_size)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise bad_value("workers", "a positive int", workers)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise bad_type("seed", "an int", seed)
    viz.colormap_lut(colormap)  # validates the name, with close matches
    io.png_params(png_compression)  # validates the level
    viz.overlay(
        np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.float32), alpha=alpha
    )  # validates alpha
    size_arg = _parse_image_size(image_size)
    pre = get_preprocess(preprocess)
    names = _load_class_names(class_names)
    run_params = dict(params or {})
    m.resolve_params(run_params)  # unknown parameter names fail now, with close matches

    src = Path(os.fspath(input_dir))
    out = Path(os.fspath(output_dir))
    if not src.is_dir():
        raise bad_value("input_dir", "an existing folder of images", str(src),
                        "Check the path." if not src.exists() else "It is a file, not a folder.")  # fmt: skip
    if out.exists() and src.resolve() == out.resolve():
        raise bad_value("output_dir", "a folder other than input_dir", str(out))

    # ---------------------------------------------------------------------- model
    model_path = None
    if isinstance(model, Explainer):
        explainer = model
        if layer is not None and layer != explainer.layer:
            raise bad_value(
                "layer",
                f"None or the Explainer's own layer ({explainer.layer!r})",
                layer,
                "Build the Explainer with layer=... instead.",
            )
    else:
        if isinstance(model, (str, os.PathLike)):
            model_path = os.fspath(model)
            scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
            with scope:
                model = models_io.load_model(model_path, unsafe=unsafe)
        explainer = Explainer(model, layer=layer, jit_compile=jit_compile, class_names=names)
    keras_model = explainer.model
    if names is None:
        names = explainer.class_names
    opaque = models_io.opaque_layers(keras_model)
    if opaque and m.needs_layer:
        raise XaiValueError(
            f"`method` {m.name!r} needs the activations of a convolutional layer, but this model "
            f"is a TensorFlow SavedModel: its graph is one opaque layer ({opaque[0]!r}) with no "
            "Keras layers inside to tap. Use an input-gradient method (method='saliency', "
            "'smoothgrad' or 'integrated_gradients'), or export the original .keras/.h5 model."
        )
    size, channels, channels_first = _model_input(keras_model, size_arg, explainer.data_format)
    probe = np.asarray(pre(np.zeros((2, *size, channels), np.float32)))
    if probe.shape != (2, *size, channels):
        raise bad_value(
            "preprocess",
            f"a function that keeps the batch shape (2, {size[0]}, {size[1]}, {channels})",
            probe,
        )

    fixed_target, target_map, target_desc = _resolve_targets(targets, src, names)
    # Preflight on one blank image: structural problems (layer, method, targets) fail here, before
    # any file is touched, and the compiled step is traced once.
    blank = np.zeros((1, *size, channels), np.float32)
    if channels_first:
        blank = blank.transpose(0, 3, 1, 2)
    e0 = explainer.explain(
        blank, m, targets=fixed_target, batch_size=1, seed=int(seed), progress=False, **run_params
    )
    tap = explainer.engine(m.needs_layer).tap
    k = targets_mod.num_classes(tap.head, tap.num_logits)
    if names is not None and len(names) != k:
        raise bad_value(
            "class_names",
            f"{k} names, one per class of the model",
            f"{len(names)} names",
            "Check the labels file against the model's output size.",
        )
    if target_map is not None:
        bad = {r: c for r, c in target_map.items() if not 0 <= c < k}
        if bad:
            rel, cls = next(iter(bad.items()))
            raise bad_value(
                "targets", f"class indices in [0, {k - 1}]", cls, f"In the CSV row for {rel!r}."
            )
    resolved_params = _plain(dict(e0.params))
    layer_paths = list(e0.layer) if e0.layer else None

    settings = _plain({
        "input_dir": str(src.resolve()),
        "model": models_io.fingerprint(keras_model),
        "method": m.name,
        "params": resolved_params,
        "layer": layer_paths,
        "targets": target_desc,
        "image_size": list(size),
        "preprocess": pre.spec,
        "formats": list(fmt),
        "alpha": float(alpha),
        "colormap": str(colormap).strip().lower(),
        "png_compression": None if png_compression is None else int(png_compression),
        "class_names": list(names) if names else None,
        "max_pixels": max_pixels,
    })  # fmt: skip

    # ---------------------------------------------------------------------- output folder
    _check_output_dir(out, settings, overwrite, dry_run=True)  # refuse before creating anything
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        resuming = _check_output_dir(out, settings, overwrite)
        if not resuming:
            io.write_json(
                out / CONFIG_NAME,
                {"settings": settings, "xai_version": __version__, "model_path": model_path,
                 "batch_size": int(batch_size)},
            )  # fmt: skip
        removed = _clean_temporaries(out)
        if removed:
            log.info("xai export: removed %d temporary file(s) left by an interrupted run", removed)
        manifest_path = out / MANIFEST_NAME
        _repair_tail(manifest_path)
        done = _done_set(manifest_path, out) if resuming else set()

        out_stat = os.stat(out)
        entries = _walk(src, {(out_stat.st_dev, out_stat.st_ino)})
        plan = _Plan(
            explainer=explainer, method=m, out=out, formats=fmt, batch_size=int(batch_size),
            seed=int(seed), params=run_params, fixed_target=fixed_target, target_map=target_map,
            names=names, row_params=resolved_params, layer=layer_paths, strategy=strategy,
            workers=int(workers), progress=progress, settings=settings,
        )  # fmt: skip
        loader = _Loader(size, channels, channels_first, pre, "overlay" in fmt, max_pixels)
        writer = _Writer(
            out, e0.display, e0.inputs_info[0].channel_axis, bool(e0.fused and e0.fused[0]),
            float(alpha), colormap, settings["png_compression"],
        )  # fmt: skip
        return _run(plan, loader, writer, entries, done, started)


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
    fixed_target: int | None  # one class for every image
    target_map: dict[str, int] | None  # or one per relative path
    names: tuple[str, ...] | None
    row_params: dict[str, Any]  # the parameters the method ran with (manifest)
    layer: list[str] | None
    strategy: Any
    workers: int
    progress: bool
    settings: dict[str, Any]


def _run(
    plan: _Plan,
    loader: _Loader,
    writer: _Writer,
    entries: list[_Entry],
    done: set[str],
    started: float,
) -> ExportSummary:
    from tqdm.auto import tqdm

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
            len(indices), already_done, len(early), method.name,
            f" on layer {', '.join(plan.layer)}" if plan.layer else "",
        )  # fmt: skip

        devices = list(plan.strategy.extended.worker_devices) if plan.strategy is not None else []
        bar = tqdm(total=len(indices), unit="img", desc=f"xai export {method.name}",
                   disable=not plan.progress, smoothing=0.1, dynamic_ncols=True)  # fmt: skip
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
    idx, x, heights, widths, oks, errors = (t.numpy() for t in batch)
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
    targets: np.ndarray | int | None = plan.fixed_target
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
    per_image = ((e, r, int(p)) for e in explanations for r, p in enumerate(e.predictions))
    jobs = []
    for j, original, (e, r, pred) in zip(ok, originals, per_image):
        if rels[j] in done:
            continue
        size = (int(heights[j]), int(widths[j]))
        outputs = output_paths(rels[j], plan.formats)
        row = _image_row(
            rels[j], size, e, r, pred, plan.names, plan.method.name, plan.row_params, plan.layer,
            outputs,
        )  # fmt: skip
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


# ------------------------------------------------------------------------------------ CLI

EXAMPLE = """examples:
  xai export model.keras photos/ heatmaps/
  xai export model.keras photos/ heatmaps/ --method gradcam --preprocess symmetric \\
      --labels classes.txt --formats overlay,heatmap --batch-size 64
  xai export saved_model_dir/ photos/ out/ --method smoothgrad --param num_samples=10
  xai export model.keras photos/ out/ --targets labels.csv   # CSV columns: path,target

Rerun the same command to resume an interrupted export (done images are skipped).
Exit status: 0 all images explained, 1 some failed (see manifest.jsonl), 2 usage error.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``export`` sub-command on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "export",
        help="explain every image of a folder tree: overlays, heatmaps, raw maps and a manifest",
        description=(
            "Explain every image under INPUT_DIR (nested folders included) and write overlay "
            "PNGs, 16-bit heatmap PNGs and raw .npy maps mirroring its structure, plus "
            "manifest.jsonl (one line per file) and summary.json, to OUTPUT_DIR."
        ),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model", metavar="MODEL", help="a .keras or .h5 file, or a TensorFlow SavedModel folder"
    )
    p.add_argument("input_dir", metavar="INPUT_DIR", help="folder of images (walked recursively)")
    p.add_argument(
        "output_dir",
        metavar="OUTPUT_DIR",
        help="output folder (created; resumed if it holds the same export)",
    )
    p.add_argument(
        "--method", default="gradcam", help="registered method (see `xai methods`); default gradcam"
    )
    p.add_argument(
        "--layer",
        default=None,
        help="CAM layer path ('outer/inner' for nested models); default: auto",
    )
    p.add_argument("--targets", default="predicted",
                   help="'predicted' (default), a class index or name for all images, or a CSV with path,target columns")  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=32, help="images per compiled step (default 32)"
    )
    p.add_argument(
        "--image-size",
        default=None,
        metavar="HxW",
        help="resize size for models that accept any size",
    )
    p.add_argument("--preprocess", default="none", metavar="PRESET|module:function",
                   help="one of " + ", ".join(PRESETS) + " (default none), or module:function / file.py:function")  # fmt: skip
    p.add_argument(
        "--labels",
        default=None,
        metavar="classes.txt",
        help="class names, one per line (line i = class i)",
    )
    p.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help="comma list of overlay,heatmap,raw (default all)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an export made with other settings"
    )
    p.add_argument(
        "--unsafe", action="store_true", help="allow models with Lambda layers (trusted files only)"
    )
    p.add_argument(
        "--alpha", type=float, default=0.4, help="overlay opacity of the colour map (default 0.4)"
    )
    p.add_argument("--colormap", default="jet", help="colour map name (default jet)")
    p.add_argument("--png-compression", type=int, default=None, metavar="0-9",
                   help="zlib level of the PNGs: 0 = none (fastest, files ~1.5-2x larger) to 9 (smallest); default OpenCV's (1)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of stochastic methods (default 0)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a method parameter, e.g. --param num_samples=10 (repeatable)")  # fmt: skip
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image (H*W) read (default 100,000,000)",
    )
    p.add_argument(
        "--workers", type=int, default=4, help="threads writing the pictures (default 4)"
    )
    p.add_argument(
        "--multi-gpu",
        action="store_true",
        help="spread batches over all visible GPUs (MirroredStrategy)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar; print only failures"
    )
    return p


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise XaiValueError(
                f"--param must be NAME=VALUE. Received: {item!r}. Example: --param num_samples=10."
            )
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params


def _parse_cli_targets(text: str) -> Any:
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return text


def run(args: argparse.Namespace) -> int:
    """Run ``xai export`` from parsed arguments; returns the exit code (0, 1 or 2 via errors)."""
    strategy = None
    if args.multi_gpu:
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            strategy = tf.distribute.MirroredStrategy()
        else:
            log.warning(
                "xai export: --multi-gpu needs several GPUs; %d visible, running on one device.",
                len(gpus),
            )
    summary = export(
        args.model,
        args.input_dir,
        args.output_dir,
        method=args.method,
        layer=args.layer,
        targets=_parse_cli_targets(args.targets),
        batch_size=args.batch_size,
        image_size=args.image_size,
        preprocess=args.preprocess,
        class_names=args.labels,
        formats=args.formats,
        overwrite=args.overwrite,
        unsafe=args.unsafe,
        alpha=args.alpha,
        colormap=args.colormap,
        png_compression=args.png_compression,
        seed=args.seed,
        params=_parse_params(args.param),
        max_pixels=args.max_pixels,
        strategy=strategy,
        workers=args.workers,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(summary)
    if summary.failed:
        print(f"xai export: {summary.failed} image(s) failed:", file=sys.stderr)
        for path, reason in summary.failures[:10]:
            print(f"  {path}: {reason}", file=sys.stderr)
        if summary.failed > 10:
            print(f"  ... and {summary.failed - 10} more", file=sys.stderr)
        print(f"  (status 'error' rows of {summary.manifest_path})", file=sys.stderr)
    return summary.exit_code
