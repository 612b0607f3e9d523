"""The ``xai`` command line: a thin argparse adapter over the Python API.

Exit codes: 0 success, 1 the work ran but failed for some inputs, 2 usage errors (bad arguments,
unreadable model). Each sub-command lives in a function ``_cmd_<name>`` registered in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import demo
from ._version import __version__
from .audit import cli as audit_cli
from .export import add_parser as add_export_parser
from .export import run as run_export

EXAMPLES = """examples:
  xai demo
  xai methods
  xai explain model.keras cat.jpg dog.png --method gradcam --out explanations/
  xai explain model.keras scans/*.png --method smoothgrad --num-samples 30 --seed 0 --out sg/
"""


class UsageError(Exception):
    """A problem with the command line itself (exit code 2)."""


def load_model(path: str | os.PathLike, *, unsafe: bool = False) -> Any:
    """Load a ``.keras``/``.h5`` model (``safe_mode`` on unless ``unsafe``) or a SavedModel folder.

    Raises:
        UsageError: with the loader's message (the path, why, and ``--unsafe`` for Lambda layers).
    """
    from .errors import XaiError
    from .models_io import load_model as _load

    try:
        return _load(path, unsafe=unsafe)
    except XaiError as exc:
        raise UsageError(str(exc)) from exc


def _parse_targets(text: str | None) -> Any:
    if text is None or text == "predicted":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise UsageError(f"--targets must be 'predicted' or a class index. Received: {text!r}.") from exc


def _cmd_methods(args: argparse.Namespace) -> int:
    from . import methods

    width = max(len(n) for n in methods.available())
    for name, m in methods.available().items():
        params = ", ".join(f"{k}={v!r}" for k, v in m.defaults.items())
        print(f"{name:<{width}}  [{m.space}] {m.summary}" + (f"  ({params})" if params else ""))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from . import io, methods
    from .errors import XaiError
    from .explain import Explainer

    methods.get(args.method)  # did-you-mean before loading anything
    targets = _parse_targets(args.targets)
    model = load_model(args.model, unsafe=args.unsafe)
    params: dict[str, Any] = {}
    if args.num_samples is not None:
        params["num_samples"] = args.num_samples
    if args.noise_level is not None:
        params["noise_level"] = args.noise_level
    explainer = Explainer(model, layer=args.layer)
    size = tuple(model.inputs[0].shape[1:3])
    failures = 0
    out = Path(args.out)
    for path in args.images:
        try:
            image = io.read_image(path)
            resized = io.resize_image(image, size) if None not in size else image
            e = explainer.explain(
                resized[None], args.method, targets=targets, seed=args.seed, **params
            )
            stem = Path(path).stem
            overlay = e.overlay(alpha=args.alpha, colormap=args.colormap)[0]
            io.write_png(out / f"{stem}_{e.method}.png", overlay)
            io.write_npy(out / f"{stem}_{e.method}.npy", e.attributions[0])
            print(f"{path}: {e.label(0)} -> {out / (stem + '_' + e.method + '.png')}")
        except XaiError as exc:
            failures += 1
            print(f"{path}: FAILED: {exc}", file=sys.stderr)
    return 1 if failures else 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": demo.run,
    "methods": _cmd_methods,
    "explain": _cmd_explain,
    "export": run_export,
    "audit": audit_cli.run,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xai",
        description="Faithful attribution maps for Keras 3 models.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what xai chooses (layers, ...)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo.add_parser(sub)
    sub.add_parser("methods", help="list the registered attribution methods")
    p = sub.add_parser(
        "explain",
        help="explain images with a saved model and write overlay PNGs",
        epilog="example:\n  xai explain model.keras cat.jpg --method gradcam --out explanations/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a .keras or .h5 model file")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, ...)")
    p.add_argument("--method", default="gradcam", help="registered method (see `xai methods`)")
    p.add_argument("--layer", default=None, help="CAM layer path, 'outer/inner' for nested models")
    p.add_argument("--targets", default=None, help="'predicted' (default) or a class index")
    p.add_argument("--out", default="xai-output", help="output folder (created)")
    p.add_argument("--alpha", type=float, default=0.4, help="overlay opacity of the heatmap")
    p.add_argument("--colormap", default="jet", help="OpenCV colour map name")
    p.add_argument("--num-samples", type=int, default=None, help="noise samples (smoothing methods)")
    p.add_argument("--noise-level", type=float, default=None, help="noise sigma as a fraction of the range")
    p.add_argument("--seed", type=int, default=None, help="seed of stochastic methods")
    p.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (trusted files only)")
    add_export_parser(sub)
    audit_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xai`` console script; returns the exit code."""
    # Quiet TensorFlow's C++ start-up chatter for command-line users (unless they chose a level).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from .errors import XaiError

    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"xai {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except XaiError as exc:
        print(f"xai {args.command}: error: {exc}", file=sys.stderr)
        return 2
