"""Tests of xai.viz: colour maps, display conversion, overlays and figures.

Expected colours are computed from OpenCV itself (``cv2.applyColorMap`` on uint8 values, flipped
BGR -> RGB) or by hand from the blend formula, never from xai's own code.
"""

from __future__ import annotations

import io

import cv2
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from xai.errors import XaiTypeError, XaiValueError  # noqa: E402
from xai.viz import (  # noqa: E402
    COLORMAPS,
    colorize,
    colormap_lut,
    figure_grid,
    overlay,
    plot_explanation,
    plot_map,
    to_display,
)


def opencv_rgb(value: int, colormap: int) -> np.ndarray:
    """The RGB colour OpenCV gives the uint8 value ``value`` (BGR flipped to RGB)."""
    bgr = cv2.applyColorMap(np.full((1, 1), value, dtype=np.uint8), colormap)
    return bgr[0, 0, ::-1]


def drawn(ax) -> np.ndarray:
    """The pixel array of the (first) image drawn into ``ax``."""
    return np.asarray(ax.images[0].get_array())


# ------------------------------------------------------------------------------------ colorize


@pytest.mark.parametrize("name", ["jet", "turbo", "viridis", "inferno", "hot", "bone", "parula"])
def test_colorize_ends_are_opencv_top_and_bottom_colours(name):
    out = colorize(np.array([[0.0, 1.0]], dtype=np.float32), name)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out[0, 0], opencv_rgb(0, COLORMAPS[name]))
    np.testing.assert_array_equal(out[0, 1], opencv_rgb(255, COLORMAPS[name]))


def test_colorize_jet_pinned_in_rgb():
    # OpenCV's jet is BGR (0, 0, 128) at 255 and (128, 0, 0) at 0: dark red on top, dark blue below.
    out = colorize(np.array([[1.0, 0.0]]))
    np.testing.assert_array_equal(out[0, 0], [128, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 128])


def test_colorize_clips_and_quantises_half_up():
    out = colorize(np.array([[1.7, -0.3, 0.5, 10 / 255]]))
    np.testing.assert_array_equal(out[0, 0], opencv_rgb(255, cv2.COLORMAP_JET))
    np.testing.assert_array_equal(out[0, 1], opencv_rgb(0, cv2.COLORMAP_JET))
    # 0.5 * 255 = 127.5 -> 128 (half up).
    np.testing.assert_array_equal(out[0, 2], opencv_rgb(128, cv2.COLORMAP_JET))
    np.testing.assert_array_equal(out[0, 3], opencv_rgb(10, cv2.COLORMAP_JET))


def test_colorize_batch_equals_one_at_a_time_and_keeps_layout():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 4, 7))
    out = colorize(maps, "viridis")
    assert out.shape == (3, 4, 7, 3)
    for i in range(3):
        np.testing.assert_array_equal(out[i], colorize(maps[i], "viridis"))
    # Pixel (row 1, column 5) of map 2 is coloured from exactly that value.
    value = int(np.floor(maps[2, 1, 5] * 255 + 0.5))
    np.testing.assert_array_equal(out[2, 1, 5], opencv_rgb(value, cv2.COLORMAP_VIRIDIS))


def test_colorize_gray_is_identity_ramp_and_names_are_case_insensitive():
    np.testing.assert_array_equal(colorize(np.array([[0.5]]), "gray")[0, 0], [128, 128, 128])
    np.testing.assert_array_equal(colorize(np.array([[0.5]]), "Grey"), colorize([[0.5]], "gray"))
    np.testing.assert_array_equal(colorize(np.array([[0.3]]), "JET"), colorize([[0.3]], "jet"))


def test_colorize_colormap_changes_output():
    maps = np.linspace(0, 1, 12).reshape(3, 4)
    assert not np.array_equal(colorize(maps, "jet"), colorize(maps, "viridis"))


def test_colormap_lut_is_read_only_rgb_table():
    lut = colormap_lut("jet")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    np.testing.assert_array_equal(lut[255], [128, 0, 0])
    with pytest.raises(ValueError):
        lut[0, 0] = 1


# ---------------------------------------------------------------------------------- to_display


def test_to_display_uint8_passes_through():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    out = to_display(images)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


def test_to_display_float_default_range_is_0_1_not_the_data_max():
    image = np.array([[[0.0, 0.5, 1.0], [1.5, -0.2, 0.2]]], dtype=np.float32)  # (1, 2, 3)
    out = to_display(image)
    assert out.shape == (1, 2, 3) and out.dtype == np.uint8
    # 0.5 -> 127.5 -> 128 (half up); out of range clipped; 0.2 -> 51, not stretched to 255.
    np.testing.assert_array_equal(out, [[[0, 128, 255], [255, 0, 51]]])


def test_to_display_value_range_minus_one_to_one():
    image = np.array([[[-1.0, 0.0, 1.0]]])
    np.testing.assert_array_equal(to_display(image, value_range=(-1, 1)), [[[0, 128, 255]]])
    # The same data read as (0, 1) is different: the parameter matters.
    np.testing.assert_array_equal(to_display(image), [[[0, 0, 255]]])


def test_to_display_explicit_range_applies_to_uint8_and_uint16_default():
    np.testing.assert_array_equal(
        to_display(np.array([[[0, 50, 100]]], dtype=np.uint8), value_range=(0, 100)),
        [[[0, 128, 255]]],
    )
    np.testing.assert_array_equal(
        to_display(np.array([[[0, 257, 65535]]], dtype=np.uint16)), [[[0, 1, 255]]]
    )


def test_to_display_grey_becomes_rgb():
    grey = np.array([[[0.0], [1.0]]])  # (1, 2, 1)
    np.testing.assert_array_equal(to_display(grey), [[[0, 0, 0], [255, 255, 255]]])
    batch = np.zeros((2, 3, 4, 1), dtype=np.uint8)
    batch[1, 2, 3, 0] = 9
    out = to_display(batch)
    assert out.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(out[1, 2, 3], [9, 9, 9])
    np.testing.assert_array_equal(
        to_display(np.array([[7, 8]], dtype=np.uint8)), [[[7] * 3, [8] * 3]]
    )


def test_to_display_rgba_drops_alpha():
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(to_display(rgba), [[[10, 20, 30], [40, 50, 60]]])


# ------------------------------------------------------------------------------------- overlay


def test_overlay_alpha_zero_is_the_image_and_alpha_one_the_colormap():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (2, 6, 9, 3), dtype=np.uint8)
    maps = rng.random((2, 6, 9)).astype(np.float32)
    np.testing.assert_array_equal(overlay(images, maps, alpha=0.0), images)
    np.testing.assert_array_equal(overlay(images, maps, alpha=1.0), colorize(maps))
    np.testing.assert_array_equal(
        overlay(images, maps, alpha=1.0, colormap="turbo"), colorize(maps, "turbo")
    )


def test_overlay_one_pixel_by_hand():
    image = np.array([[[100, 50, 201]]], dtype=np.uint8)  # one (1, 1, 3) image
    heat = np.array([[1.0]])  # jet top: RGB (128, 0, 0)
    # alpha 0.5: (0.5*100 + 0.5*128, 0.5*50, 0.5*201) = (114, 25, 100.5 -> 101 half up).
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.5), [[[114, 25, 101]]])
    # alpha 0.4 (default): (0.6*100 + 0.4*128, 0.6*50, 0.6*201) = (111.2, 30, 120.6).
    np.testing.assert_array_equal(overlay(image, heat), [[[111, 30, 121]]])


def test_overlay_asymmetric_marker_lands_top_right_not_transposed():
    heat = np.zeros((20, 30), dtype=np.float32)
    heat[0:3, 25:30] = 1.0  # hot 3x5 block in the top-right corner
    image = np.full((20, 30, 3), 0.5, dtype=np.float32)
    out = overlay(image, heat)
    assert out.shape == (20, 30, 3)
    red = out[..., 0].astype(int)
    # Marker: 0.6*128 + 0.4*128 = 128; elsewhere jet bottom has R=0: 0.6*128 = 76.8 -> 77.
    assert (red[0:3, 25:30] == 128).all()
    mask = np.zeros_like(red, dtype=bool)
    mask[0:3, 25:30] = True
    assert (red[~mask] == 77).all()
    rows, cols = np.nonzero(red == red.max())
    assert rows.max() < 3 and cols.min() >= 25


def test_overlay_single_red_pixel_stays_put():
    image = np.zeros((5, 9, 3), dtype=np.uint8)
    image[2, 7] = (255, 0, 0)
    heat = np.zeros((5, 9))
    out0 = overlay(image, heat, alpha=0.0)
    np.testing.assert_array_equal(out0[2, 7], [255, 0, 0])
    assert out0.sum() == 255
    # alpha 0.4 over jet bottom (0, 0, 128): (0.6*255, 0, 0.4*128) = (153, 0, 51.2 -> 51).
    out = overlay(image, heat, alpha=0.4)
    np.testing.assert_array_equal(out[2, 7], [153, 0, 51])
    np.testing.assert_array_equal(out[0, 0], [0, 0, 51])


def test_overlay_single_equals_batch_and_parameters_matter():
    rng = np.random.default_rng(3)
    images = rng.random((2, 4, 5, 3)).astype(np.float32) * 2 - 1
    maps = rng.random((2, 4, 5)).astype(np.float32)
    batch = overlay(images, maps, value_range=(-1, 1))
    np.testing.assert_array_equal(overlay(images[1], maps[1], value_range=(-1, 1)), batch[1])
    assert not np.array_equal(batch, overlay(images, maps, value_range=(0, 1)))
    assert not np.array_equal(batch, overlay(images, maps, value_range=(-1, 1), alpha=0.7))
    assert not np.array_equal(batch, overlay(images, maps, value_range=(-1, 1), colormap="viridis"))


# ------------------------------------------------------------------------------------- figures


def test_figure_grid_layout_titles_labels_and_cells():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    maps = rng.random((2, 4, 6)).astype(np.float32)
    overlays = overlay(images, maps)
    fig = figure_grid(
        images,
        {"heatmap": maps, "overlay": overlays},
        row_labels=["circle (p=0.98)", "square (p=0.51)"],
        colormap="viridis",
        cell_size=2.0,
    )
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes[:3]] == ["image", "heatmap", "overlay"]
    assert [ax.get_title() for ax in axes[3:]] == ["", "", ""]
    assert axes[0].get_ylabel() == "circle (p=0.98)"
    assert axes[3].get_ylabel() == "square (p=0.51)"
    np.testing.assert_array_equal(drawn(axes[3]), images[1])
    np.testing.assert_array_equal(drawn(axes[4]), colorize(maps[1], "viridis"))
    np.testing.assert_array_equal(drawn(axes[5]), overlays[1])
    np.testing.assert_allclose(fig.get_size_inches(), [6.0, 4.0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_grid_parameters_matter():
    maps = np.linspace(0, 1, 2 * 3 * 4).reshape(2, 3, 4)
    jet = figure_grid(None, {"m": maps})
    turbo = figure_grid(None, {"m": maps}, colormap="turbo", cell_size=1.0)
    assert not np.array_equal(drawn(jet.axes[0]), drawn(turbo.axes[0]))
    assert tuple(jet.get_size_inches()) != tuple(turbo.get_size_inches())
    images = np.zeros((2, 3, 4, 3), dtype=np.float32)
    titled = figure_grid(images, {"m": maps}, titles=["a.png", "b.png"], value_range=(-1, 1))
    assert [titled.axes[0].get_title(), titled.axes[2].get_title()] == ["a.png", "b.png"]
    assert titled.axes[1].get_title() == "m"
    assert (drawn(titled.axes[0]) == 128).all()  # 0.0 in (-1, 1) -> 128; in (0, 1) it is 0
    assert (drawn(figure_grid(images, {"m": maps}).axes[0]) == 0).all()


def test_plot_explanation_three_panels_with_colour_bar():
    rng = np.random.default_rng(5)
    image = rng.random((8, 10, 3)).astype(np.float32)
    heat = rng.random((8, 10)).astype(np.float32)
    blended = overlay(image, heat, alpha=0.6)
    fig = plot_explanation(image, heat, blended, title="cat (p=0.9)", colormap="magma")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # three panels + the colour bar
    np.testing.assert_array_equal(drawn(fig.axes[0]), to_display(image))
    np.testing.assert_array_equal(drawn(fig.axes[1]), colorize(heat, "magma"))
    np.testing.assert_array_equal(drawn(fig.axes[2]), blended)
    assert fig.get_suptitle() == "cat (p=0.9)"
    computed = plot_explanation(image, heat, None)
    np.testing.assert_array_equal(drawn(computed.axes[2]), overlay(image, heat))
    np.testing.assert_array_equal(drawn(computed.axes[1]), colorize(heat, "jet"))


def test_plot_explanation_into_given_axes_draws_only_the_overlay():
    fig = Figure()
    ax = fig.subplots()
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    heat = np.ones((4, 6))
    blended = overlay(image, heat)
    out = plot_explanation(image, heat, blended, ax=ax, title="x")
    assert out is fig
    assert len(ax.images) == 1 and len(fig.axes) == 1
    np.testing.assert_array_equal(drawn(ax), blended)
    assert ax.get_title() == "x"


def test_plot_map_one_two_and_three_dimensional():
    line = np.linspace(0, 1, 7)
    fig = plot_map(line, title="tokens", colormap="turbo")
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # strip + colour bar
    np.testing.assert_array_equal(drawn(fig.axes[0]), colorize(line[None], "turbo"))
    assert fig.axes[0].get_title() == "tokens"

    square = np.zeros((3, 5))
    square[0, 4] = 1.0
    np.testing.assert_array_equal(drawn(plot_map(square).axes[0]), colorize(square))

    volume = np.zeros((4, 3, 5))
    volume[2, 0, 4] = 1.0  # the maximum projection keeps the hot voxel's (row, column)
    projected = plot_map(volume, title="ct")
    np.testing.assert_array_equal(drawn(projected.axes[0]), colorize(square))
    assert projected.axes[0].get_title() == "ct (max over axis 0)"

    own = Figure()
    ax = own.subplots()
    assert plot_map(square, ax=ax) is own
    assert len(own.axes) == 1  # no colour bar added to the caller's figure


def test_plot_map_draws_a_signal_over_its_1d_heatmap():
    heat = np.linspace(0, 1, 7)
    signal = np.stack([np.arange(7.0), -np.arange(7.0) / 2], axis=1)  # (L, C) = (7, 2)
    fig = plot_map(heat, signal=signal, title="ecg")
    ax = fig.axes[0]
    np.testing.assert_array_equal(drawn(ax), colorize(heat[None]))  # the strip, as without signal
    assert len(ax.lines) == 2
    for c, line in enumerate(ax.lines):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(7))
        np.testing.assert_array_equal(line.get_ydata(), signal[:, c])
    lo, hi, pad = -3.0, 6.0, 0.45  # the strip fills the signal's range plus 5 %
    np.testing.assert_allclose(ax.images[0].get_extent(), (-0.5, 6.5, lo - pad, hi + pad))
    np.testing.assert_allclose(ax.get_ylim(), (lo - pad, hi + pad))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["channel 0", "channel 1"]
    assert ax.get_title() == "ecg" and len(fig.axes) == 2  # + colour bar

    flat = plot_map(heat, signal=np.full(7, 2.0)).axes[0]  # one channel, constant: no legend
    assert len(flat.lines) == 1 and flat.get_legend() is None
    np.testing.assert_allclose(flat.get_ylim(), (1.5, 2.5))


@pytest.mark.parametrize(
    ("signal", "heat", "match"),
    [
        (np.zeros(6), np.zeros(7), r"\(7,\) or \(7, C\).*shape \(6,\)"),
        (np.zeros((7, 2, 1)), np.zeros(7), r"\(7,\) or \(7, C\)"),
        (np.zeros(7), np.zeros((3, 7)), r"1-D map"),
        (np.array([0.0, np.nan, 0, 0, 0, 0, 0]), np.zeros(7), r"1 of 7 values are NaN or Inf"),
        (np.array(list("abcdefg")), np.zeros(7), r"numeric"),
    ],
)
def test_plot_map_signal_errors(signal, heat, match):
    with pytest.raises((XaiValueError, XaiTypeError), match=match):
        plot_map(heat, signal=signal)


# -------------------------------------------------------------------------------------- errors

_IMG = np.zeros((2, 4, 5, 3), dtype=np.uint8)
_MAPS = np.zeros((2, 4, 5), dtype=np.float32)

ERROR_ROWS = [
    ("colorize-nan", lambda: colorize(np.array([[np.nan, 0.5]])), XaiValueError, r"NaN or Inf"),
    ("colorize-inf", lambda: colorize(np.array([[np.inf]])), XaiValueError, r"finite"),
    ("colorize-rank1", lambda: colorize(np.zeros(5)), XaiValueError, r"\(H, W\) or \(N, H, W\)"),
    (
        "colorize-rank4",
        lambda: colorize(np.zeros((1, 2, 2, 1))),
        XaiValueError,
        r"heatmap\[\.\.\., 0\]",
    ),
    (
        "colorize-int",
        lambda: colorize(np.zeros((2, 2), dtype=np.uint8)),
        XaiTypeError,
        r"float array.*divide by 255",
    ),
    ("colorize-unknown", lambda: colorize(_MAPS, "jett"), XaiValueError, r"Did you mean 'jet'"),
    ("colorize-cmap-type", lambda: colorize(_MAPS, 3), XaiTypeError, r"colour map name"),
    (
        "display-2ch",
        lambda: to_display(np.zeros((4, 5, 2))),
        XaiValueError,
        r"1 \(grey\), 3 \(RGB\) or 4 \(RGBA\)",
    ),
    (
        "display-5ch",
        lambda: to_display(np.zeros((1, 4, 5, 5))),
        XaiValueError,
        r"1, 3 or 4 channels",
    ),
    (
        "display-rank5",
        lambda: to_display(np.zeros((1, 1, 4, 5, 3))),
        XaiValueError,
        r"\(N, H, W, C\)",
    ),
    (
        "display-int32",
        lambda: to_display(np.zeros((4, 5, 3), dtype=np.int32)),
        XaiValueError,
        r"value_range=\(0, 255\)",
    ),
    ("display-nan", lambda: to_display(np.full((4, 5, 3), np.nan)), XaiValueError, r"NaN or Inf"),
    (
        "display-range-order",
        lambda: to_display(_IMG, value_range=(1, 0)),
        XaiValueError,
        r"lo < hi",
    ),
    (
        "display-range-shape",
        lambda: to_display(_IMG, value_range=1.0),
        XaiValueError,
        r"pair of numbers",
    ),
    ("display-str", lambda: to_display(np.full((4, 5, 3), "a")), XaiTypeError, r"numeric image"),
    (
        "overlay-shape",
        lambda: overlay(_IMG, np.zeros((2, 5, 4))),
        XaiValueError,
        r"images' \(N, H, W\) = \(2, 4, 5\).*does not resize",
    ),
    (
        "overlay-count",
        lambda: overlay(_IMG, np.zeros((3, 4, 5))),
        XaiValueError,
        r"matching the images",
    ),
    (
        "overlay-single-vs-batch",
        lambda: overlay(_IMG[0], _MAPS),
        XaiValueError,
        r"one heatmap of shape \(H, W\)",
    ),
    (
        "overlay-batch-vs-single",
        lambda: overlay(_IMG, _MAPS[0]),
        XaiValueError,
        r"heatmaps of shape \(N, H, W\)",
    ),
    (
        "overlay-grey-batch",
        lambda: overlay(np.zeros((2, 4, 5)), _MAPS),
        XaiValueError,
        r"images\[\.\.\., None\]",
    ),
    (
        "overlay-alpha-high",
        lambda: overlay(_IMG, _MAPS, alpha=1.5),
        XaiValueError,
        r"`alpha` must be in \[0, 1\]",
    ),
    ("overlay-alpha-neg", lambda: overlay(_IMG, _MAPS, alpha=-0.1), XaiValueError, r"alpha=-0\.1"),
    (
        "overlay-alpha-str",
        lambda: overlay(_IMG, _MAPS, alpha="0.4"),
        XaiTypeError,
        r"number in \[0, 1\]",
    ),
    (
        "overlay-colormap",
        lambda: overlay(_IMG, _MAPS, colormap="virdis"),
        XaiValueError,
        r"Did you mean 'viridis'",
    ),
    ("overlay-int-maps", lambda: overlay(_IMG, _MAPS.astype(int)), XaiTypeError, r"float array"),
    (
        "grid-columns-type",
        lambda: figure_grid(_IMG, [_MAPS]),
        XaiTypeError,
        r"mapping \{column title: array\}",
    ),
    (
        "grid-count",
        lambda: figure_grid(_IMG, {"m": _MAPS[:1]}),
        XaiValueError,
        r"'image': 2, 'm': 1",
    ),
    ("grid-rank", lambda: figure_grid(_IMG, {"m": _MAPS[0, 0]}), XaiValueError, r"columns\['m'\]"),
    (
        "grid-images-rank",
        lambda: figure_grid(_IMG[0], {"m": _MAPS}),
        XaiValueError,
        r"images\[None\]",
    ),
    (
        "grid-labels",
        lambda: figure_grid(_IMG, {"m": _MAPS}, row_labels=["a"]),
        XaiValueError,
        r"2 labels",
    ),
    (
        "grid-labels-str",
        lambda: figure_grid(_IMG, {"m": _MAPS}, row_labels="ab"),
        XaiTypeError,
        r"sequence of 2",
    ),
    ("grid-empty", lambda: figure_grid(None, {}), XaiValueError, r"non-empty"),
    (
        "grid-cell-size",
        lambda: figure_grid(_IMG, {"m": _MAPS}, cell_size=0),
        XaiValueError,
        r"positive number",
    ),
    (
        "plot-ax",
        lambda: plot_explanation(_IMG[0], _MAPS[0], None, ax="ax"),
        XaiTypeError,
        r"matplotlib Axes",
    ),
    (
        "plot-heat-shape",
        lambda: plot_explanation(_IMG[0], _MAPS[0].T, None),
        XaiValueError,
        r"\(H, W\) = \(4, 5\)",
    ),
    ("plot-batch", lambda: plot_explanation(_IMG, _MAPS[0], None), XaiValueError, r"figure_grid"),
    ("map-scalar", lambda: plot_map(np.float32(0.5)), XaiValueError, r"heatmap\[i\]"),
    ("map-int", lambda: plot_map(np.zeros(4, dtype=int)), XaiTypeError, r"float array"),
    ("map-ax", lambda: plot_map(np.zeros(4), ax=1), XaiTypeError, r"matplotlib Axes"),
    (
        "plot-overlay",
        lambda: plot_explanation(_IMG[0], _MAPS[0], _MAPS[0]),
        XaiValueError,
        r"uint8 RGB array of shape \(4, 5, 3\)",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [row[1:] for row in ERROR_ROWS],
    ids=[row[0] for row in ERROR_ROWS],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_error_messages_follow_house_shape():
    with pytest.raises(XaiValueError) as info:
        overlay(_IMG, _MAPS, alpha=2)
    message = str(info.value)
    assert message.startswith("`alpha` must be")
    assert "Received: alpha=2" in message


@pytest.mark.parametrize("label", ["usd_$100_$200", "$x^2$ and $"])
def test_labels_with_dollar_signs_are_drawn_literally(label):
    import io as _io

    heat = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    figs = [
        figure_grid(images, {"m": heat}, titles=[label, label], row_labels=[label, label]),
        plot_explanation(images[0], heat[0], images[0], title=label),
        plot_map(heat[0], title=label),
    ]
    for fig in figs:
        fig.savefig(_io.BytesIO(), format="png")  # mathtext would raise here
        assert any(t.get_text() == label for t in fig.findobj(matplotlib.text.Text))


def test_progress_bars_fall_back_to_text_in_a_kernel_without_ipywidgets(monkeypatch):
    import sys
    import types

    from tqdm.std import tqdm as text_tqdm

    from xai._progress import progress_class

    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    assert progress_class() is text_tqdm
