"""The shared boundary validators: each checks one kind of argument, with one wording everywhere.

Public functions, the CLI and callbacks call these once, at the boundary; the code inside trusts
what they return. Every error follows :mod:`xai.errors`: what was expected, what was received,
and how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import bad_type, bad_value


def is_int(value: Any) -> bool:
    """An int or NumPy integer, and not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def positive_int(name: str, value: Any, hint: str = "") -> int:
    """``value`` as an int when it is an int >= 1 (bools are refused)."""
    if not is_int(value) or value < 1:
        raise bad_value(name, "a positive int", value, hint)
    return int(value)


def integer(name: str, value: Any, hint: str = "") -> int:
    """``value`` as an int when it is one (bools are refused)."""
    if not is_int(value):
        raise bad_type(name, "an int", value, hint)
    return int(value)


def seed(value: Any, *, hint: str = "") -> int:
    """A seed: an int."""
    if not is_int(value):
        raise bad_type("seed", "an int", value, hint)
    return int(value)


def optional_seed(value: Any, *, hint: str = "") -> int | None:
    """A seed or None (None: the caller draws one and records it)."""
    if value is None:
        return None
    if not is_int(value):
        raise bad_type("seed", "an int or None", value, hint)
    return int(value)


def alpha(value: Any) -> float:
    """The opacity of a colour map over an image, in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise bad_type("alpha", "a number in [0, 1]", value, "For example alpha=0.4.")
    result = float(value)
    if not 0.0 <= result <= 1.0:
        raise bad_value(
            "alpha",
            "in [0, 1] (0 = only the image, 1 = only the colour map)",
            value,
            "For example alpha=0.4.",
        )
    return result
