"""Pictures of explanations: colours and overlays (:mod:`.colours`), figures (:mod:`.plot`).

``xai.viz.overlay`` and the other colour functions need only NumPy and OpenCV. The figure
functions (``figure_grid``, ``plot_explanation``, ``plot_map``) live in :mod:`xai.viz.plot`,
which imports matplotlib; it is loaded the first time one of them is used, so ``import xai``
and the export workers never import matplotlib.
"""

from __future__ import annotations

from typing import Any

from .colours import (
    COLORMAPS,
    OverlayStyle,
    check_value_range,
    colorize,
    colormap_lut,
    overlay,
    to_display,
)

_PLOT_FUNCTIONS = frozenset({"figure_grid", "plot_explanation", "plot_map"})

__all__ = [
    "COLORMAPS",
    "OverlayStyle",
    "check_value_range",
    "colorize",
    "colormap_lut",
    "figure_grid",
    "overlay",
    "plot_explanation",
    "plot_map",
    "to_display",
]


def __getattr__(name: str) -> Any:
    if name in _PLOT_FUNCTIONS:
        from . import plot

        return getattr(plot, name)
    raise AttributeError(f"module 'xai.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
