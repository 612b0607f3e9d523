"""``xai methods``: the registered attribution methods, one line each."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    from .common import EXIT_CODES

    subparsers.add_parser(
        "methods",
        help="list the registered attribution methods",
        epilog=EXIT_CODES.replace(", 1 some inputs failed (see the output)", ""),
    )


def run(args: argparse.Namespace) -> int:
    from .. import methods

    width = max(len(n) for n in methods.available())
    for name, m in methods.available().items():
        params = ", ".join(f"{k}={v!r}" for k, v in m.defaults.items())
        print(f"{name:<{width}}  [{m.space}] {m.summary}" + (f"  ({params})" if params else ""))
    return 0
