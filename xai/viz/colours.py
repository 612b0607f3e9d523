"""Colour maps, display conversion and overlays: NumPy and OpenCV only (no matplotlib).

This module owns colour: it is the only place (with :mod:`xai.io`) where OpenCV's BGR channel order
appears. Everything that goes in and out of its public functions is RGB, and shapes are ``(H, W)``.

- :func:`colorize` turns heatmaps in ``[0, 1]`` into uint8 RGB through an OpenCV colour map.
- :func:`to_display` turns images of any dtype into uint8 RGB, from a *declared* value range.
- :func:`overlay` blends images and colourised heatmaps.

Heatmap values are quantised to the 256 entries of the colour map as ``floor(h * 255 + 0.5)``, so
``0.0`` gives exactly the bottom colour of the map and ``1.0`` exactly its top colour, as OpenCV
defines them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike

from xai import _validation
from xai.errors import bad_type, bad_value, did_you_mean

__all__ = [
    "COLORMAPS",
    "OverlayStyle",
    "check_value_range",
    "colorize",
    "colormap_lut",
    "overlay",
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
    _check_finite(
        array,
        param,
        heatmap,
        "; fix or replace them first, e.g. with np.nan_to_num(heatmap, nan=0.0).",
    )
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
    work: Any = array.astype(work_dtype)
    scaled = (work - lo) * (255.0 / (hi - lo))
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


_check_alpha = _validation.alpha


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


@dataclass(frozen=True)
class OverlayStyle:
    """How a heatmap is drawn over its image and stored: one small object, checked once.

    Shared by :meth:`xai.Explanation.save`, ``xai export`` and the training callbacks.

    Attributes:
        alpha: weight of the colour map (0 = only the image, 1 = only the colour map).
        colormap: colour map name (:data:`COLORMAPS`).
        png_compression: zlib level of written PNGs (None: OpenCV's default; see
            :func:`xai.io.png_params`).
    """

    alpha: float = 0.4
    colormap: str = "jet"
    png_compression: int | None = None

    @classmethod
    def checked(
        cls, alpha: Any = 0.4, colormap: Any = "jet", png_compression: Any = None
    ) -> OverlayStyle:
        """A style from user arguments, each validated (with close matches for the colour map)."""
        from xai.io import png_params

        value = _validation.alpha(alpha)
        colormap_lut(colormap)
        png_params(png_compression)
        return cls(value, colormap, None if png_compression is None else int(png_compression))

    def draw(self, images: ArrayLike, heatmaps: ArrayLike) -> np.ndarray:
        """The overlays of ``images`` (uint8 RGB) and ``heatmaps`` in [0, 1], uint8 RGB."""
        return overlay(images, heatmaps, alpha=self.alpha, colormap=self.colormap)
