"""The ``xai`` command line: one sub-module per command, each a thin adapter over the library.

Each command module has ``add_parser(subparsers)`` and ``run(args) -> exit code``; the shared
argument grammars, the usage error and model loading are in :mod:`xai.cli.common`. The library
never imports this package. Exit codes: 0 success, 1 the work ran but some inputs failed, 2 a
usage error (bad arguments, an unreadable model), 3 the output folder cannot be written (disk
full, read-only, not a folder; rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from . import audit, demo, explain, export, methods
from .common import EXIT_CODES, UsageError, import_tensorflow_quietly, load_model

EXAMPLES = f"""examples:
  xai demo
  xai methods
  xai explain model.keras cat.jpg dog.png --method gradcam --out explanations/
  xai explain model.keras scans/*.png --method smoothgrad --num-samples 30 --seed 0 --out sg/
  xai export model.keras photos/ heatmaps/
  xai audit model.keras data/images --masks data/masks --out audit/

{EXIT_CODES}
"""

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": demo.run,
    "methods": methods.run,
    "explain": explain.run,
    "export": export.run,
    "audit": audit.run,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xai",
        description="Faithful attribution maps for Keras 3 models.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xai {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what xai chooses (layers, ...) and TensorFlow's own start-up messages",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, methods, explain, export, audit):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xai`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # TensorFlow is not imported yet (``import xai`` is light)
    # TensorFlow's C++ start-up log (oneDNN notices, "failed call to cuInit" on CPU machines) is
    # read from this variable when TensorFlow loads: hidden unless --verbose or set by the user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if args.verbose else "3")
    if not args.verbose:
        import_tensorflow_quietly()
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    from ..errors import OutputStorageError, XaiError

    try:
        return COMMANDS[args.command](args)
    except OutputStorageError as exc:  # the output folder cannot be written: resumable
        print(f"xai {args.command}: error: {exc}", file=sys.stderr)
        return 3
    except (UsageError, XaiError) as exc:
        print(f"xai {args.command}: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "UsageError", "build_parser", "load_model", "main"]
