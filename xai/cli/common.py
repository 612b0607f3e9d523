"""What every ``xai`` command shares: the usage error, model loading and the argument grammars.

One grammar for each kind of argument, for every command:

* ``--targets``: ``predicted`` (the top class), a class index (``3``), a class name (with
  ``--labels``), or, where a folder is explained, a CSV file of ``path,target`` rows; for a
  segmentation model ``region:CLASS`` (index or name): the class's logits summed over the pixels
  the model assigns to it (``xai.targets.region(CLASS)``).
* ``--param NAME=VALUE`` (repeatable): a method parameter; VALUE is read as JSON when it parses
  (``10``, ``0.2``, ``[4, 4]``, ``true``) and as text otherwise.

Exit codes: 0 success, 1 the work ran but some inputs failed (or, for ``xai audit``, a flag was
raised), 2 a usage error (bad arguments, an unreadable model), 3 the output folder cannot be
written (disk full, read-only, not a folder): fix it and rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

EXIT_CODES = (
    "exit status: 0 success, 1 some inputs failed (see the output), 2 usage error "
    "(bad arguments, unreadable model), 3 the output folder cannot be written (rerun to resume)"
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up log hidden (the command line only, not the library).

    TensorFlow 2.21 prints its oneDNN and CUDA notices before its logger is set up, ignoring
    ``TF_CPP_MIN_LOG_LEVEL``; the only way to hide them is to point file descriptor 2 elsewhere
    while it loads. What it printed is shown after all if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class UsageError(Exception):
    """A problem with the command line itself (exit code 2)."""


def load_model(path: str | os.PathLike, *, unsafe: bool = False) -> Any:
    """Load a ``.keras``/``.h5`` model (``safe_mode`` on unless ``unsafe``) or a SavedModel folder.

    Raises:
        UsageError: with the loader's message (the path, why, and ``--unsafe`` for Lambda layers).
    """
    from ..errors import XaiError
    from ..models_io import load_model as _load

    try:
        return _load(path, unsafe=unsafe)
    except XaiError as exc:
        raise UsageError(str(exc)) from exc


def parse_targets(text: str | None) -> Any:
    """``--targets``: None for ``predicted``, an int for a class index, ``("region", class)`` for
    ``region:CLASS``, else the text itself (a class name or a CSV path, resolved by the command
    against its labels or folder)."""
    if text is None or text.strip() == "predicted":
        return None
    text = text.strip()
    if text.startswith("region:"):
        inner = parse_targets(text.partition(":")[2])
        if inner is None or isinstance(inner, tuple) or inner == "":
            raise UsageError(
                "--targets region:CLASS needs a class index or name. Received: "
                f"{text!r}. Example: --targets region:2."
            )
        return ("region", inner)
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return text


def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """``--param NAME=VALUE`` items as a dict (VALUE as JSON when it parses, else text)."""
    params: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(
                f"--param must be NAME=VALUE. Received: {item!r}. Example: --param num_samples=10."
            )
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params


def add_param_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a method parameter, e.g. --param num_samples=10 (repeatable; see `xai methods`)",
    )


def add_unsafe_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--unsafe",
        action="store_true",
        help="allow models with Lambda layers (trusted files only)",
    )
