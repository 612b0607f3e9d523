"""The export's journal: manifest rows, resume state, the settings file and the folder lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from ..errors import OutputStorageError, XaiValueError, bad_value

CONFIG_NAME = ".xai-export.json"
MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".xai-export.lock"
_OUR_FILES = frozenset({CONFIG_NAME, MANIFEST_NAME, SUMMARY_NAME, LOCK_NAME})

_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # xai.io's atomic-write temporaries

_ROW_KEYS = (
    "path",
    "status",
    "error",
    "height",
    "width",
    "predicted",
    "predicted_label",
    "probability",
    "target",
    "target_label",
    "target_probability",
    "score",
    "method",
    "params",
    "layer",
    "outputs",
    "orientation",  # the file's EXIF orientation tag (1 = upright; applied unless "stored")
)


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


def _os_write(fd: int, data: bytes | memoryview) -> int:
    return os.write(fd, data)


class _Manifest:
    """Append-only JSONL; each :meth:`append` is written whole and fsynced, or not at all.

    Unbuffered: when a write fails (a full disk), the file is cut back to where the append
    started, so every line in it is complete, and :class:`OutputStorageError` is raised.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        data = memoryview(b"".join(_dump_row(r) for r in rows))
        fd = self._file.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[_os_write(fd, data) :]
            os.fsync(fd)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise OutputStorageError.from_os_error(error, self.path) from error

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
            found = offsets.get(rel)
            if found is None:
                continue
            source.seek(found)
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
    # Our lock and atomic-write temporaries (e.g. of a settings file whose write was killed) do
    # not make a folder "not empty": it is still a new export, and the temporaries are removed.
    if not [n for n in present if n != LOCK_NAME and not _TEMP_FILE.match(n)]:
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
