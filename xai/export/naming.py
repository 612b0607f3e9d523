"""Output names: mirrored input paths, sanitised, never colliding, always inside OUTPUT_DIR."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from ..errors import XaiValueError

_EXTENSIONS = {"overlay": ".png", "heatmap": ".png", "raw": ".npy"}

_MAX_NAME_BYTES = 200  # leaves room for "~hash" and the added extension within 255 bytes
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)

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


def output_paths(
    rel: str, formats: Sequence[str], taken_dirs: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Output files (relative to the output folder, POSIX) of input ``rel`` for each format.

    ``taken_dirs`` are the mirrored folders of the export (:func:`output_dirs`): when a file's
    output name is also a folder's (``x.png`` -> ``x.png.png``, next to an input folder named
    ``x.png.png``), the file's stem gets ``~`` and a hash of ``rel`` too, so a file and a folder
    never map to the same output.
    """
    stem = output_stem(rel)
    if any(f"{stem}{_EXTENSIONS[f]}".casefold() in taken_dirs for f in formats):
        stem = f"{stem}~{_short_hash(rel)}"
    return {f: f"{f}/{stem}{_EXTENSIONS[f]}" for f in formats}


def output_dirs(rels: Sequence[str]) -> frozenset[str]:
    """Every mirrored folder (casefolded, for case-insensitive file systems) of the inputs."""
    dirs: set[str] = set()
    for rel in rels:
        parts = output_stem(rel).split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]).casefold() for i in range(len(parts)))
    return frozenset(dirs)


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
