"""Exceptions raised by xai, and helpers that word them the same way everywhere.

Every message follows one shape: what the parameter must be, what was received (value, shape or
type), and how to fix it, with close matches where the user picked from a list of names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import numpy as np


class XaiError(Exception):
    """Base class of every error raised by xai."""


class XaiValueError(XaiError, ValueError):
    """A value the user passed is not acceptable."""


class XaiTypeError(XaiError, TypeError):
    """An object the user passed has the wrong type."""


class OutputStorageError(XaiError):
    """The output folder cannot be written (disk full, read-only, not a folder, ...).

    The command line exits with status 3 for it (1 is "some inputs failed", 2 a usage error).
    Nothing is left half-written: rerunning the same command once the cause is fixed resumes.
    """

    @classmethod
    def from_os_error(cls, error: OSError, where: Any) -> OutputStorageError:
        path = error.filename if error.filename else where
        reason = error.strerror or str(error)
        code = f"[Errno {error.errno}] " if error.errno else ""
        return cls(
            f"Cannot write to the output folder at {str(path)!r}: {code}{reason}. Fix that "
            "(free space, a writable folder, a folder path) and rerun the same command: it "
            "resumes where it stopped."
        )


#: errno values that mean the output storage itself is failing, not one file.
STORAGE_ERRNOS = frozenset({28, 30, 122, 5, 20})  # ENOSPC, EROFS, EDQUOT, EIO, ENOTDIR


class MissingDependencyError(XaiError, ImportError):
    """An optional extra that a feature needs is not installed (the message says which)."""


class ModelStructureError(XaiValueError):
    """The model cannot be taken apart as asked (no graph, no such layer, no spatial layer...)."""


def describe(value: Any) -> str:
    """A short description of ``value`` for messages: repr for scalars, shape/dtype for arrays."""
    if isinstance(value, np.ndarray) or (hasattr(value, "shape") and hasattr(value, "dtype")):
        dtype = getattr(
            value.dtype, "name", str(value.dtype)
        )  # numpy and TF dtypes both have .name
        return f"array of shape {tuple(value.shape)} and dtype {dtype}"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{text} ({type(value).__name__})"


def did_you_mean(name: str, options: Iterable[str], n: int = 3) -> str:
    """A hint naming the closest options to ``name``, or all options when few and none is close."""
    options = [str(o) for o in options]
    close = difflib.get_close_matches(str(name), options, n=n, cutoff=0.5)
    if not close:
        # Substring matches catch "conv" -> "conv2d_1", which difflib's ratio misses.
        close = [o for o in options if str(name).lower() in o.lower()][:n]
    if close:
        return "Did you mean " + " or ".join(repr(c) for c in close) + "?"
    if len(options) <= 12:
        return "Valid options: " + ", ".join(repr(o) for o in options) + "."
    return (
        f"There are {len(options)} valid options, e.g. "
        + ", ".join(repr(o) for o in options[-6:])
        + "."
    )


def bad_value(param: str, expected: str, value: Any, fix: str = "") -> XaiValueError:
    """Build the standard ``XaiValueError`` for ``param``."""
    msg = f"`{param}` must be {expected}. Received: {param}={describe(value)}."
    if fix:
        msg += " " + fix
    return XaiValueError(msg)


def bad_type(param: str, expected: str, value: Any, fix: str = "") -> XaiTypeError:
    """Build the standard ``XaiTypeError`` for ``param``."""
    msg = f"`{param}` must be {expected}. Received: {param}={describe(value)}."
    if fix:
        msg += " " + fix
    return XaiTypeError(msg)
