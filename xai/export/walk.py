"""Walking the input folder: every file once, in a stable order, with why a file is skipped."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..io import IMAGE_SUFFIXES
from .journal import CONFIG_NAME as EXPORT_MARKER  # an export's settings file

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
    skipped and not entered again, and so is a folder that holds an xai export (its settings
    file); folders in ``exclude`` (the output folder) are left out.
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
                )
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
                    )
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
                    )
                )
                continue
            visited.add(key)
            if os.path.isfile(os.path.join(item.path, EXPORT_MARKER)):
                entries.append(
                    _Entry(
                        rel,
                        None,
                        "skipped",
                        f"Holds an xai export ({EXPORT_MARKER}): its pictures are outputs, not "
                        "inputs; not entered.",
                    )
                )
                continue
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
                    )
                )
        else:
            entries.append(
                _Entry(rel, None, "skipped", "Not a regular file (FIFO, socket or device).")
            )
    return entries
