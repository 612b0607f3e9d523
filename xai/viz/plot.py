"""Matplotlib figures of explanations: grids, image | heatmap | overlay rows, 1-D maps.

Figures are built directly as :class:`matplotlib.figure.Figure` objects (no pyplot, no global
state, nothing is shown). Colours come from :mod:`xai.viz.colours`. This module is the only one that
imports matplotlib, and :mod:`xai.viz` imports it only when one of its functions is first used, so
``import xai`` (and the export workers) never load matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from xai.errors import bad_type, bad_value

from .colours import (
    _as_heatmaps,
    _check_finite,
    _colorize_checked,
    _colormap_name,
    _display_checked,
    _lut_for,
    _overlay_checked,
    check_value_range,
)

__all__ = ["figure_grid", "literal_text", "plot_explanation", "plot_map"]


def literal_text(figure: Figure) -> Figure:
    """Show every text of ``figure`` literally: no mathtext, so a label such as ``usd_$100_$200``
    (class names, titles, file names) is drawn as written instead of failing to parse."""
    from matplotlib.text import Text

    for text in figure.findobj(Text):
        text.set_parse_math(False)
    return figure


def _check_cell_size(cell_size: Any) -> float:
    if isinstance(cell_size, bool) or not isinstance(
        cell_size, (int, float, np.integer, np.floating)
    ):
        raise bad_type("cell_size", "a positive number (inches)", cell_size, "For example 2.5.")
    value = float(cell_size)
    if not (np.isfinite(value) and value > 0):
        raise bad_value("cell_size", "a positive number (inches)", cell_size, "For example 2.5.")
    return value


def _check_labels(labels: Any, param: str, n: int) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise bad_type(param, f"a sequence of {n} strings (one per image)", labels)
    if len(labels) != n:
        raise bad_value(
            param,
            f"a sequence of {n} labels (one per image)",
            labels,
            f"There are {n} images; pass exactly one label per image.",
        )
    return [str(label) for label in labels]


def _grid_column(title: str, values: Any, value_range: tuple[float, float] | None) -> np.ndarray:
    param = f"columns[{title!r}]"
    array = np.asarray(values)
    if array.ndim == 3:
        return _as_heatmaps(array, param, ranks=(3,))
    if array.ndim == 4:
        return _display_checked(array, value_range, param)
    raise bad_value(
        param,
        "an array of shape (N, H, W, 3) (RGB images, drawn as is) or (N, H, W) (float heatmaps, "
        "drawn with the colour map)",
        values,
        "Add a batch axis for a single image: values[None].",
    )


def _hide_axes(ax: Axes) -> None:
    """Hide ticks and frame but keep the y label visible (``set_axis_off`` would hide it too)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def figure_grid(
    images: ArrayLike | None,
    columns: Mapping[str, ArrayLike],
    *,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    colormap: str = "jet",
    cell_size: float = 2.5,
    value_range: tuple[float, float] | None = None,
) -> Figure:
    """A grid of images and their explanations: one row per image, one column per entry.

    The first column shows ``images`` (headed ``"image"``), then one column per entry of
    ``columns``, in order, headed by its key on the first row. Heatmap columns ``(N, H, W)`` are
    drawn through :func:`colorize` (the same colours as :func:`overlay`); RGB columns
    ``(N, H, W, 3)`` are drawn as they are (non-uint8 through :func:`to_display`).

    Args:
        images: ``(N, H, W, C)`` images for the first column (any dtype accepted by
            :func:`to_display`), or None for no image column.
        columns: Ordered mapping ``{column title: array}``; each array is ``(N, H, W, 3)`` uint8
            RGB or ``(N, H, W)`` float heatmaps in ``[0, 1]``.
        titles: Optional per-image titles (length N, e.g. file names) drawn above each cell of the
            image column; they replace the ``"image"`` header on the first row.
        row_labels: Optional per-row labels (length N, e.g. ``"circle (p=0.98)"``) drawn at the
            left of each row.
        colormap: Colour map for heatmap columns, a name from :data:`COLORMAPS`.
        cell_size: Width and height of one cell, in inches.
        value_range: ``(lo, hi)`` of non-uint8 images; see :func:`to_display`.

    Returns:
        A new :class:`matplotlib.figure.Figure` (not attached to pyplot; save it with
        ``fig.savefig(...)`` or display it in a notebook).

    Raises:
        XaiValueError: Shapes, lengths or parameters that do not fit (the message says which).
        XaiTypeError: ``columns`` is not a mapping, or labels are not sequences.
    """
    name = _colormap_name(colormap)
    size = _check_cell_size(cell_size)
    value_range = check_value_range(value_range)
    if not isinstance(columns, Mapping):
        raise bad_type(
            "columns",
            "a mapping {column title: array}",
            columns,
            'For example columns={"heatmap": explanation.heatmap, "overlay": overlays}.',
        )

    panels: list[tuple[str, np.ndarray]] = []
    if images is not None:
        array = np.asarray(images)
        if array.ndim != 4:
            raise bad_value(
                "images",
                "a batch of images of shape (N, H, W, C), or None",
                images,
                "Add a batch axis for a single image: images[None].",
            )
        panels.append(("image", _display_checked(array, value_range, "images")))
    for title, values in columns.items():
        panels.append((str(title), _grid_column(str(title), values, value_range)))
    if not panels:
        raise bad_value(
            "columns", "a non-empty mapping when images is None", columns, "Nothing to draw."
        )

    counts = {title: panel.shape[0] for title, panel in panels}
    n = panels[0][1].shape[0]
    if len(set(counts.values())) != 1:
        raise bad_value(
            "columns",
            "arrays with the same number of rows N as the images",
            columns,
            "Rows per column: " + ", ".join(f"{t!r}: {c}" for t, c in counts.items()) + ".",
        )
    if n == 0:
        raise bad_value("images", "at least one image (N >= 1)", images, "Nothing to draw.")
    row_titles = _check_labels(titles, "titles", n)
    labels = _check_labels(row_labels, "row_labels", n)
    if row_titles is not None and images is None:
        raise bad_value(
            "titles",
            "None when images is None (titles label the image column)",
            titles,
            "Use row_labels to label rows.",
        )

    ncols = len(panels)
    fig = Figure(figsize=(size * ncols, size * n), layout="constrained")
    axes = np.asarray(fig.subplots(n, ncols, squeeze=False))
    for row in range(n):
        for col, (title, panel) in enumerate(panels):
            ax = axes[row, col]
            cell = panel[row]
            if cell.ndim == 2:
                cell = _colorize_checked(cell, name)
            ax.imshow(cell, interpolation="nearest")
            _hide_axes(ax)
            if images is not None and col == 0 and row_titles is not None:
                ax.set_title(row_titles[row], fontsize="small")
            elif row == 0:
                ax.set_title(title)
        if labels is not None:
            axes[row, 0].set_ylabel(labels[row])
    return literal_text(fig)


def _check_ax_and_title(ax: Any, title: Any) -> None:
    if ax is not None and not isinstance(ax, Axes):
        raise bad_type(
            "ax", "a matplotlib Axes or None", ax, "For example: fig, ax = plt.subplots()."
        )
    if title is not None and not isinstance(title, str):
        raise bad_type("title", "a string or None", title)


def _root_figure(ax: Axes) -> Figure:
    try:
        return ax.get_figure(root=True)  # type: ignore[return-value]  # matplotlib >= 3.10
    except TypeError:
        return ax.figure  # type: ignore[return-value]


def _colour_bar(fig: Figure, ax: Axes, name: str) -> None:
    """A 0-1 colour bar of the colour map ``name`` (same 256 colours as :func:`colorize`)."""
    mappable = ScalarMappable(
        norm=Normalize(vmin=0.0, vmax=1.0),
        cmap=ListedColormap(_lut_for(name).astype(np.float64) / 255.0, name=name),
    )
    fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)


def plot_explanation(
    image: ArrayLike,
    heatmap: ArrayLike,
    overlay_image: ArrayLike | None,
    *,
    title: str | None = None,
    ax: Axes | None = None,
    colormap: str = "jet",
    value_range: tuple[float, float] | None = None,
) -> Figure:
    """Plot one explanation: image | heatmap with a colour bar | overlay.

    Args:
        image: One image ``(H, W, C)`` or ``(H, W)``, any dtype accepted by :func:`to_display`.
        heatmap: Float ``(H, W)`` in ``[0, 1]``.
        overlay_image: uint8 RGB ``(H, W, 3)`` (e.g. from :func:`overlay`), or None to compute it
            with ``overlay(image, heatmap, colormap=colormap)``.
        title: Optional figure title (or axes title when ``ax`` is given).
        ax: A matplotlib Axes to draw into. When given, only the overlay is drawn there and the
            axes' figure is returned; when None, a new three-panel figure is built.
        colormap: Colour map of the heatmap panel and its colour bar (and of the overlay when it
            is computed here), a name from :data:`COLORMAPS`.
        value_range: ``(lo, hi)`` of ``image``'s values; see :func:`to_display`.

    Returns:
        The :class:`matplotlib.figure.Figure` drawn into.

    Raises:
        XaiValueError: Shapes that do not fit together, or bad parameters.
        XaiTypeError: ``ax`` is not a matplotlib Axes, or a non-float heatmap.
    """
    name = _colormap_name(colormap)
    value_range = check_value_range(value_range)
    _check_ax_and_title(ax, title)
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise bad_value(
            "image",
            "one image of shape (H, W, C) or (H, W)",
            image,
            "To plot a batch, use figure_grid() or index one image: images[i].",
        )
    hw = tuple(array.shape[:2])
    maps = _as_heatmaps(heatmap, "heatmap", ranks=(2,))
    if maps.shape != hw:
        raise bad_value(
            "heatmap",
            f"an (H, W) array matching the image's (H, W) = {hw}",
            heatmap,
            "Resize the heatmap to the image's size first.",
        )
    image_rgb = _display_checked(array, value_range, "image")
    if overlay_image is None:
        blended = _overlay_checked(image_rgb, maps, 0.4, name)
    else:
        blended = np.asarray(overlay_image)
        if blended.dtype != np.uint8 or blended.shape != (*hw, 3):
            raise bad_value(
                "overlay_image",
                f"a uint8 RGB array of shape {(*hw, 3)} (matching the image), or None",
                overlay_image,
                "Build it with xai.viz.overlay(image, heatmap), or pass None to compute it.",
            )

    if ax is not None:
        ax.imshow(blended, interpolation="nearest")
        ax.set_axis_off()
        if title is not None:
            ax.set_title(title, parse_math=False)
        return _root_figure(ax)

    fig = Figure(figsize=(9.6, 3.4), layout="constrained")
    ax_image, ax_heat, ax_overlay = fig.subplots(1, 3)
    ax_image.imshow(image_rgb, interpolation="nearest")
    ax_image.set_title("image")
    ax_heat.imshow(_colorize_checked(maps, name), interpolation="nearest")
    ax_heat.set_title("heatmap")
    _colour_bar(fig, ax_heat, name)
    ax_overlay.imshow(blended, interpolation="nearest")
    ax_overlay.set_title("overlay")
    for panel in (ax_image, ax_heat, ax_overlay):
        panel.set_axis_off()
    if title is not None:
        fig.suptitle(title)
    return literal_text(fig)


def _signal_values(signal: ArrayLike, maps: np.ndarray) -> np.ndarray:
    """``signal`` as float ``(L, C)`` matching the 1-D map ``maps``, or a clear error."""
    values = np.asarray(signal)
    if maps.ndim != 1:
        raise bad_value(
            "signal",
            "None for a map that is not 1-D",
            signal,
            "A signal can only be drawn over a 1-D map (L,); leave signal=None for pictures and "
            "volumes.",
        )
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] != maps.size or values.shape[1] == 0:
        raise bad_value(
            "signal",
            f"an array of shape ({maps.size},) or ({maps.size}, C), the map's length {maps.size}",
            signal,
            "Pass the sample's own sequence, channels last (e.g. x[i] for inputs (N, L, C)).",
        )
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
        raise bad_type("signal", "a numeric array", signal, "Convert it with np.asarray(x, float).")
    values = values.astype(np.float64)
    _check_finite(values, "signal", signal, "; replace them before plotting.")
    return values


def plot_map(
    heatmap: ArrayLike,
    *,
    title: str | None = None,
    ax: Axes | None = None,
    colormap: str = "jet",
    signal: ArrayLike | None = None,
) -> Figure:
    """Plot one heatmap on its own, for inputs that are not images (sequences, volumes, ...).

    A 1-D map ``(L,)`` is drawn as a colour strip along the x axis (position), a 2-D map
    ``(H, W)`` as a picture; for higher ranks ``(..., H, W)`` the maximum over the leading axes is
    drawn (a maximum-intensity projection, said in the title). Colours are those of
    :func:`colorize`. With ``signal`` (1-D maps only) the strip fills the plot behind the signal,
    drawn as one line per channel, so the colours show where along the signal the evidence is.

    Args:
        heatmap: Float array in ``[0, 1]`` of rank 1 or more, e.g. ``Explanation.heatmap[i]``.
        title: Optional title.
        ax: A matplotlib Axes to draw into (no colour bar is added there); when None a new figure
            with a colour bar is built.
        colormap: A name from :data:`COLORMAPS`.
        signal: Optional values of the explained sequence, ``(L,)`` or ``(L, C)`` (channels last),
            for a 1-D map of length ``L``.

    Returns:
        The :class:`matplotlib.figure.Figure` drawn into.

    Raises:
        XaiValueError: A 0-d or empty map, NaN/Inf values, a bad colour map name, or a signal
            whose length differs from the map's (or given with a map that is not 1-D).
        XaiTypeError: ``ax`` is not a matplotlib Axes, or a non-float heatmap.
    """
    name = _colormap_name(colormap)
    _check_ax_and_title(ax, title)
    array = np.asarray(heatmap)
    if array.ndim == 0 or array.size == 0:
        raise bad_value(
            "heatmap",
            "a non-empty array of shape (L,), (H, W) or (..., H, W)",
            heatmap,
            "Index one sample of a batch: heatmap[i].",
        )
    maps = _as_heatmaps(array, "heatmap", ranks=(array.ndim,))
    label = title
    if maps.ndim > 2:
        leading = tuple(range(maps.ndim - 2))
        maps = maps.max(axis=leading)
        note = f"max over axes {leading}" if len(leading) > 1 else "max over axis 0"
        label = f"{title} ({note})" if title else note
    one_d = maps.ndim == 1
    values = None if signal is None else _signal_values(signal, maps)
    colours = _colorize_checked(maps[None, :] if one_d else maps, name)

    if ax is None:
        size = (8.0, 1.8 if values is None else 2.8) if one_d else (5.0, 4.0)
        fig = Figure(figsize=size, layout="constrained")
        target = fig.subplots()
    else:
        fig = _root_figure(ax)
        target = ax
    if one_d and values is not None:
        lo, hi = float(values.min()), float(values.max())
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        target.imshow(
            colours,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, maps.size - 0.5, lo - pad, hi + pad),
            origin="upper",
        )
        for c in range(values.shape[1]):
            target.plot(
                np.arange(maps.size),
                values[:, c],
                color="black",
                linewidth=1.2,
                label=f"channel {c}" if values.shape[1] > 1 else None,
            )
        if values.shape[1] > 1:
            target.legend(loc="upper right", fontsize="small")
        target.set_xlim(-0.5, maps.size - 0.5)
        target.set_ylim(lo - pad, hi + pad)
        target.set_xlabel("position")
    elif one_d:
        target.imshow(
            colours, aspect="auto", interpolation="nearest", extent=(-0.5, maps.size - 0.5, 1, 0)
        )
        target.set_yticks([])
        target.set_xlabel("position")
    else:
        target.imshow(colours, interpolation="nearest")
        target.set_axis_off()
    if label is not None:
        target.set_title(label, parse_math=False)
    if ax is None:
        _colour_bar(fig, target, name)
        return literal_text(fig)
    return fig
