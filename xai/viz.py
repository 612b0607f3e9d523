"""Colour maps, overlays and matplotlib figures.

This module owns colour: it is the only place (with :mod:`xai.io`) where OpenCV's BGR channel order
appears. Everything that goes in and out of its public functions is RGB, and shapes are ``(H, W)``.

- :func:`colorize` turns heatmaps in ``[0, 1]`` into uint8 RGB through an OpenCV colour map.
- :func:`to_display` turns images of any dtype into uint8 RGB, from a *declared* value range.
- :func:`overlay` blends images and colourised heatmaps.
- :func:`figure_grid`, :func:`plot_explanation` and :func:`plot_map` build :class:`matplotlib.figure.Figure` objects
  directly (no pyplot, no global state, nothing is shown).

Heatmap values are quantised to the 256 entries of the colour map as ``floor(h * 255 + 0.5)``, so
``0.0`` gives exactly the bottom colour of the map and ``1.0`` exactly its top colour, as OpenCV
defines them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from xai.errors import bad_type, bad_value, did_you_mean

__all__ = [
    "COLORMAPS",
    "colorize",
    "colormap_lut",
    "figure_grid",
    "overlay",
    "plot_explanation",
    "plot_map",
    "to_display",
]


def _opencv_colormaps() -> dict[str, int | None]:
    names: dict[str, int | None] = {
        attr[len("COLORMAP_") :].lower(): int(getattr(cv2, attr))
        for attr in dir(cv2)
        if attr.startswith("COLORMAP_")
    }
    # OpenCV has no grey ramp; ``None`` marks the identity map (value v -> (v, v, v)).
    names["gray"] = None
    return dict(sorted(names.items()))


COLORMAPS: Mapping[str, int | None] = MappingProxyType(_opencv_colormaps())
"""Colour map names accepted by ``colormap=`` arguments, mapped to OpenCV ``COLORMAP_*`` constants.

Names are lower case (``"jet"``, ``"turbo"``, ``"viridis"``, ``"inferno"``, ``"magma"``,
``"plasma"``, ``"hot"``, ``"bone"``, ``"parula"``, ...; every ``cv2.COLORMAP_*`` of the installed
OpenCV). ``"gray"`` (alias ``"grey"``) maps to ``None``: OpenCV has no grey colour map, so xai uses
the identity ramp. Use :func:`colormap_lut` or :func:`colorize` rather than the constants.
"""

_ALIASES = {"grey": "gray"}


def _colormap_name(colormap: Any) -> str:
    if not isinstance(colormap, str):
        raise bad_type(
            "colormap",
            "a colour map name (str)",
            colormap,
            "Valid names: " + ", ".join(repr(n) for n in COLORMAPS) + ".",
        )
    key = colormap.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in COLORMAPS:
        raise bad_value(
            "colormap",
            "the name of a colour map in xai.viz.COLORMAPS",
            colormap,
            did_you_mean(key, COLORMAPS),
        )
    return key


@functools.cache
def _lut_for(name: str) -> np.ndarray:
    ramp = np.arange(256, dtype=np.uint8)
    constant = COLORMAPS[name]
    if constant is None:
        lut = np.repeat(ramp[:, None], 3, axis=1)
    else:
        bgr = cv2.applyColorMap(ramp.reshape(256, 1), constant)  # (256, 1, 3) BGR
        lut = np.ascontiguousarray(bgr[:, 0, ::-1])  # RGB
    lut.setflags(write=False)
    return lut


def colormap_lut(colormap: str = "jet") -> np.ndarray:
    """The 256-entry RGB look-up table of a colour map.

    Args:
        colormap: A name from :data:`COLORMAPS` (case-insensitive).

    Returns:
        A read-only uint8 array of shape ``(256, 3)``, RGB. Row ``i`` is the colour of the heatmap
        value ``i / 255``; row 0 is the bottom colour, row 255 the top colour.

    Raises:
        XaiValueError: Unknown colour map name (the message suggests close names).
        XaiTypeError: ``colormap`` is not a string.
    """
    return _lut_for(_colormap_name(colormap))


def check_value_range(value_range: Any) -> tuple[float, float] | None:
    if value_range is None:
        return None
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise bad_value(
            "value_range",
            "None or a pair of numbers (lo, hi) with lo < hi",
            value_range,
            "For example value_range=(0, 1) for floats in [0, 1], (0, 255) for 0-255 data, "
            "(-1, 1) for inputs scaled to [-1, 1].",
        ) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise bad_value(
            "value_range",
            "a pair of finite numbers (lo, hi) with lo < hi",
            value_range,
            "For example value_range=(0, 1) or value_range=(-1, 1).",
        )
    return lo, hi


def _check_finite(array: np.ndarray, param: str, received: Any, fix_suffix: str) -> None:
    """Raise the standard error when ``array`` holds NaN or Inf (counting them)."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise bad_value(
            param,
            "finite (no NaN or Inf values)",
            received,
            f"{bad} of {array.size} values are NaN or Inf{fix_suffix}",
        )


def _as_heatmaps(
    heatmap: Any, param: str, ranks: tuple[int, ...], shapes: str | None = None
) -> np.ndarray:
    """Validate a float heatmap array of one of ``ranks``; return it as float32/float64."""
    array = np.asarray(heatmap)
    if not np.issubdtype(array.dtype, np.floating):
        raise bad_type(
            param,
            "a float array with values in [0, 1]",
            heatmap,
            "Heatmaps are floats in [0, 1] (e.g. Explanation.heatmap). For a 0-255 map, divide by "
            "255; for an integer/boolean mask, use mask.astype('float32').",
        )
    if array.ndim not in ranks:
        shapes = shapes or " or ".join({2: "(H, W)", 3: "(N, H, W)"}[r] for r in ranks)
        raise bad_value(
            param,
            f"an array of shape {shapes}",
            heatmap,
            "Pass one heatmap per image, without a channel axis (squeeze a trailing axis of "
            "size 1 with heatmap[..., 0]).",
        )
    _check_finite(array, param, heatmap, "; fix or replace them first, e.g. with np.nan_to_num(heatmap, nan=0.0).")
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    return array


def _colorize_checked(array: np.ndarray, colormap: str) -> np.ndarray:
    lut = _lut_for(colormap)
    index = np.floor(np.clip(array, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if index.size == 0:
        return lut[index]
    # cv2.LUT on the index repeated over 3 channels: the same colours as ``lut[index]``, about 4x
    # faster (fancy indexing dominated the cost of an overlay).
    flat = index.reshape(-1, index.shape[-1])
    colours = cv2.LUT(cv2.merge([flat, flat, flat]), lut.reshape(256, 1, 3))
    return colours.reshape(*index.shape, 3)


def colorize(heatmap: ArrayLike, colormap: str = "jet") -> np.ndarray:
    """Colour heatmaps with an OpenCV colour map.

    Values are clipped to ``[0, 1]`` and quantised to the 256 colours of the map as
    ``floor(h * 255 + 0.5)``: ``0.0`` gives exactly the bottom colour of the map, ``1.0`` exactly
    the top colour (for ``"jet"``: RGB ``(0, 0, 128)`` and ``(128, 0, 0)``).

    Args:
        heatmap: Float array of shape ``(H, W)`` or ``(N, H, W)``, values in ``[0, 1]``; values
            outside are clipped. NaN and Inf are rejected.
        colormap: A name from :data:`COLORMAPS` (case-insensitive), default ``"jet"``.

    Returns:
        uint8 RGB array of shape ``heatmap.shape + (3,)``.

    Raises:
        XaiValueError: Wrong rank, NaN/Inf values, or an unknown colour map name.
        XaiTypeError: ``heatmap`` is not a float array, or ``colormap`` is not a string.
    """
    name = _colormap_name(colormap)
    array = _as_heatmaps(heatmap, "heatmap", ranks=(2, 3))
    return _colorize_checked(array, name)


def _scale_to_uint8(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    work_dtype = np.float64 if array.dtype.itemsize >= 8 else np.float32
    scaled = (array.astype(work_dtype) - lo) * (255.0 / (hi - lo))
    return np.floor(np.clip(scaled, 0.0, 255.0) + 0.5).astype(np.uint8)


def _display_checked(
    array: np.ndarray, value_range: tuple[float, float] | None, param: str
) -> np.ndarray:
    """``to_display`` on an array already known to have a valid rank (2, 3 or 4)."""
    if array.ndim == 2:
        array = array[..., None]
    channels = array.shape[-1]
    if channels not in (1, 3, 4):
        hint = (
            "Display needs 1 (grey), 3 (RGB) or 4 (RGBA) channels, channels last. For a batch of "
            "grey images (N, H, W), add a channel axis: images[..., None]. For channels-first "
            "images (C, H, W), move the axis: np.moveaxis(images, -3, -1)."
        )
        raise bad_value(param, "an image array with 1, 3 or 4 channels (last axis)", array, hint)
    dtype = array.dtype
    if dtype == np.bool_:
        array = array.astype(np.uint8)
        if value_range is None:
            value_range = (0.0, 1.0)
    elif not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise bad_type(
            param, "a numeric image array (uint8, uint16 or float)", array, "Convert it first."
        )
    if value_range is None:
        if dtype == np.uint8:
            pass
        elif dtype == np.uint16:
            value_range = (0.0, 65535.0)
        elif np.issubdtype(dtype, np.floating):
            value_range = (0.0, 1.0)
        else:
            raise bad_value(
                "value_range",
                f"given for {dtype.name} images (only uint8, uint16 and float have a default)",
                value_range,
                "Declare the range of your data, e.g. value_range=(0, 255); xai never guesses it "
                "from the data's maximum.",
            )
    if value_range is not None:
        if np.issubdtype(array.dtype, np.floating):
            _check_finite(array, param, array, ".")
        array = _scale_to_uint8(array, *value_range)
    if channels == 1:
        array = np.repeat(array, 3, axis=-1)
    elif channels == 4:
        array = array[..., :3]
    return np.ascontiguousarray(array)


def to_display(images: ArrayLike, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Convert images to uint8 RGB for display.

    The value range is declared, never guessed from the data: uint8 images pass through unchanged;
    other dtypes are mapped linearly from ``value_range = (lo, hi)`` to ``[0, 255]``, clipped and
    rounded (half up). Defaults when ``value_range`` is None: ``(0, 1)`` for float (and bool)
    images, ``(0, 65535)`` for uint16; other integer dtypes need an explicit ``value_range``. An
    explicit ``value_range`` applies to every dtype, uint8 included.

    Channels: 1 channel becomes grey RGB, 3 channels are taken as RGB, 4 channels are RGBA and the
    alpha channel is dropped (not composited). Anything else is an error.

    Args:
        images: A batch ``(N, H, W, C)``, one image ``(H, W, C)``, or one grey image ``(H, W)``;
            ``C`` in ``{1, 3, 4}``, channels last.
        value_range: ``(lo, hi)`` of the data, e.g. ``(0, 1)``, ``(-1, 1)`` or ``(0, 255)``.

    Returns:
        uint8 RGB array: ``(N, H, W, 3)`` for a batch, ``(H, W, 3)`` for one image.

    Raises:
        XaiValueError: Wrong rank or channel count, NaN/Inf in float images, a bad
            ``value_range``, or an integer dtype without a default range.
        XaiTypeError: A non-numeric array.
    """
    value_range = check_value_range(value_range)
    array = np.asarray(images)
    if array.ndim not in (2, 3, 4):
        raise bad_value(
            "images",
            "an array of shape (N, H, W, C), (H, W, C) or (H, W)",
            images,
            "Images are channels last, C in {1, 3, 4}.",
        )
    return _display_checked(array, value_range, "images")


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise bad_type("alpha", "a number in [0, 1]", alpha, "For example alpha=0.4.")
    value = float(alpha)
    if not 0.0 <= value <= 1.0:
        raise bad_value(
            "alpha",
            "in [0, 1] (0 = only the image, 1 = only the colour map)",
            alpha,
            "For example alpha=0.4.",
        )
    return value


def _overlay_checked(
    image_rgb: np.ndarray, heatmaps: np.ndarray, alpha: float, colormap: str
) -> np.ndarray:
    colours = _colorize_checked(heatmaps, colormap)
    if alpha == 0.0:
        return image_rgb.copy()
    if alpha == 1.0:
        return colours
    blend = (1.0 - alpha) * image_rgb.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.floor(blend + 0.5).astype(np.uint8)


def overlay(
    images: ArrayLike,
    heatmaps: ArrayLike,
    *,
    alpha: float = 0.4,
    colormap: str = "jet",
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Blend colourised heatmaps over images.

    Each pixel is ``round((1 - alpha) * image + alpha * colorize(heatmap))`` (half up), in uint8
    RGB: ``alpha=0`` gives exactly the image (as :func:`to_display` shows it), ``alpha=1`` exactly
    the colour map. Heatmaps are not resized here: they must already have the images' ``(H, W)``.

    Args:
        images: ``(N, H, W, C)`` batch, or one image ``(H, W, C)`` / ``(H, W)``; any dtype accepted
            by :func:`to_display`.
        heatmaps: Float ``(N, H, W)`` for a batch, or ``(H, W)`` for one image; values in
            ``[0, 1]`` (clipped).
        alpha: Weight of the colour map, in ``[0, 1]``.
        colormap: A name from :data:`COLORMAPS`.
        value_range: ``(lo, hi)`` of the images' values; see :func:`to_display`.

    Returns:
        uint8 RGB array ``(N, H, W, 3)``, or ``(H, W, 3)`` for one image.

    Raises:
        XaiValueError: Shapes that do not match, a bad ``alpha``/``value_range``/``colormap``,
            NaN/Inf values.
        XaiTypeError: Non-float heatmaps or a non-numeric ``alpha``.
    """
    alpha = _check_alpha(alpha)
    name = _colormap_name(colormap)
    value_range = check_value_range(value_range)
    maps = _as_heatmaps(heatmaps, "heatmaps", ranks=(2, 3))
    array = np.asarray(images)
    single = maps.ndim == 2
    expected_image_ranks = (2, 3) if single else (4,)
    if array.ndim not in expected_image_ranks:
        if single:
            expected = "one image (H, W, C) or (H, W), since heatmaps is one (H, W) map"
            fix = "For a batch of images, pass heatmaps of shape (N, H, W)."
        else:
            expected = "a batch (N, H, W, C), since heatmaps is a batch (N, H, W)"
            fix = "For one image (H, W, C), pass one heatmap of shape (H, W)."
            if array.shape == maps.shape:
                fix = "For grey images (N, H, W), add a channel axis: images[..., None]."
        raise bad_value("images", expected, images, fix)
    spatial = array.shape[:2] if single else array.shape[:3]
    if spatial != maps.shape:
        what = "(H, W)" if single else "(N, H, W)"
        raise bad_value(
            "heatmaps",
            f"an array matching the images' {what} = {tuple(spatial)}",
            heatmaps,
            "Resize the heatmaps to the images' size first (e.g. Explanation.heatmap is already "
            "at input resolution); overlay() does not resize.",
        )
    image_rgb = _display_checked(array, value_range, "images")
    return _overlay_checked(image_rgb, maps, alpha, name)


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
    return fig


def _check_ax_and_title(ax: Any, title: Any) -> None:
    if ax is not None and not isinstance(ax, Axes):
        raise bad_type(
            "ax", "a matplotlib Axes or None", ax, "For example: fig, ax = plt.subplots()."
        )
    if title is not None and not isinstance(title, str):
        raise bad_type("title", "a string or None", title)


def _root_figure(ax: Axes) -> Figure:
    try:
        return ax.get_figure(root=True)  # type: ignore[call-arg]  # matplotlib >= 3.10
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
            ax.set_title(title)
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
    return fig


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
            target.plot(np.arange(maps.size), values[:, c], color="black", linewidth=1.2,
                        label=f"channel {c}" if values.shape[1] > 1 else None)  # fmt: skip
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
        target.set_title(label)
    if ax is None:
        _colour_bar(fig, target, name)
    return fig
