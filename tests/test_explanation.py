"""Explanation: heatmaps, overlays (golden pixels), slicing, saving, notebook repr."""

from __future__ import annotations

import dataclasses
import json

import cv2
import keras
import numpy as np
import pytest

import xai
from xai import testing
from xai.postprocess import normalize


def _marker_model():
    """A model whose class-0 logit is the mean of the red channel inside a top-right window.

    Built by hand: the CAM layer is the red channel itself (a 1x1 conv selecting it), so the
    Grad-CAM of class 0 is exactly the red channel: an asymmetric marker must appear where it is.
    """
    inputs = keras.Input((20, 30, 3))
    sel = keras.layers.Conv2D(1, 1, use_bias=False, name="red", kernel_initializer="zeros")
    feats = sel(inputs)
    sel.kernel.assign(np.array([1.0, 0.0, 0.0], np.float32).reshape(1, 1, 3, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(feats)
    dense = keras.layers.Dense(2, name="predictions")
    out = dense(pooled)
    dense.kernel.assign(np.array([[1.0, -1.0]], np.float32))
    dense.bias.assign(np.zeros(2, np.float32))
    return keras.Model(inputs, out)


def test_marker_lands_in_the_right_corner_of_a_non_square_image():
    img = np.zeros((1, 20, 30, 3), np.uint8)
    img[0, 1:4, 24:29, 0] = 255  # a 3x5 red block, top-right
    e = xai.explain(_marker_model(), img, "gradcam", targets=0, layer="red")
    heat = e.heatmap[0]
    assert heat.shape == (20, 30)
    ys, xs = np.nonzero(heat == heat.max())
    assert ys.min() >= 1 and ys.max() <= 3 and xs.min() >= 24 and xs.max() <= 28
    over = e.overlay(alpha=1.0)[0]
    top = xai.viz.colorize(np.ones((1, 1)))[0, 0]
    np.testing.assert_array_equal(over[2, 26], top)  # maximal heat -> the colour map's top colour
    bottom = xai.viz.colorize(np.zeros((1, 1)))[0, 0]
    np.testing.assert_array_equal(over[15, 5], bottom)  # far from the marker: the bottom colour


def test_overlay_alpha_extremes_and_colormap(cnn, images_uint8):
    e = xai.explain(cnn, images_uint8, "gradcam")
    np.testing.assert_array_equal(e.overlay(alpha=0.0), images_uint8)
    jet = e.overlay(alpha=1.0)
    expected = cv2.applyColorMap(
        np.round(e.heatmap * 255).astype(np.uint8).reshape(-1, 16), cv2.COLORMAP_JET
    )
    np.testing.assert_array_equal(jet.reshape(-1, 16, 3), expected[..., ::-1])
    assert not np.array_equal(e.overlay(alpha=1.0, colormap="viridis"), jet)
    half = e.overlay(alpha=0.5).astype(int)
    assert np.abs(half - (images_uint8.astype(int) + jet.astype(int)) / 2).max() <= 1


def test_float_images_use_declared_value_range(cnn):
    x = testing.random_images(2, seed=11) * 2 - 1  # in [-1, 1)
    e = xai.explain(cnn, x, "gradcam", value_range=(-1, 1))
    np.testing.assert_array_equal(
        e.overlay(alpha=0.0), np.round((x + 1) / 2 * 255).astype(np.uint8)
    )


def test_heatmap_constant_and_negative_maps_are_zero_not_nan():
    assert (normalize(np.full((2, 4, 4), 3.0)) == 0).all()
    assert (normalize(np.zeros((1, 5))) == 0).all()
    cam = -np.ones((1, 3, 3), np.float32)
    from xai.postprocess import Display, heatmap

    h = heatmap(cam, (6, 6), Display(rectify="relu"))
    assert np.isfinite(h).all() and (h == 0).all()


def test_slicing_and_metadata(cnn, images):
    e = xai.explain(cnn, images, "gradcam", class_names=["a", "b", "c", "d"])
    part = e[2:5]
    assert len(part) == 3
    np.testing.assert_array_equal(part.attributions, e.attributions[2:5])
    np.testing.assert_array_equal(part.heatmap, e.heatmap[2:5])
    one = e[-1]
    assert len(one) == 1 and one.targets[0] == e.targets[-1]
    picked = e[[0, 7]]
    np.testing.assert_array_equal(picked.scores, e.scores[[0, 7]])
    with pytest.raises(IndexError):
        e[8]
    np.testing.assert_allclose(e.probabilities, np.asarray(cnn(images)), atol=1e-6)
    np.testing.assert_array_equal(e.predictions, np.asarray(cnn(images)).argmax(1))
    z = np.asarray(xai.logits_model(cnn)(images))
    np.testing.assert_allclose(e.logits, z, atol=1e-6)
    np.testing.assert_allclose(e.scores, z[np.arange(8), e.targets], atol=1e-6)
    assert e.label(0).startswith(("a ", "b ", "c ", "d ")) and "p=" in e.label(0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.method = "other"  # immutable


def test_save_writes_overlays_raw_and_manifest(tmp_path, cnn, images_uint8):
    e = xai.explain(cnn, images_uint8[:3], "gradcam")
    written = e.save(tmp_path / "out", alpha=0.5)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "attributions.npy",
            "heatmaps.npy",
            "manifest.json",
            "overlay_0000.png",
            "overlay_0001.png",
            "overlay_0002.png",
        ]
    )
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "attributions.npy"), e.attributions)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["method"] == "gradcam" and manifest["layer"] == ["last_conv"]
    assert manifest["targets"] == e.targets.tolist() and manifest["overlay"]["alpha"] == 0.5
    png = xai.io.read_image(tmp_path / "out" / "overlay_0001.png")
    np.testing.assert_array_equal(png, e.overlay(alpha=0.5)[1])
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_plot_and_html_repr(cnn, images_uint8):
    import matplotlib.figure

    e = xai.explain(cnn, images_uint8[:2], "gradcam", class_names=["w", "x", "y", "z"])
    fig = e.plot(1)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) >= 3
    fig2 = matplotlib.figure.Figure()
    ax = fig2.add_subplot()
    assert e.plot(0, ax=ax) is fig2
    html = e._repr_html_()
    assert html.count("<img") == 2 and "gradcam" in html and "data:image/png;base64," in html
    assert "Explanation(method='gradcam', samples=2" in repr(e)


def test_plot_of_a_sequence_input_draws_the_signal_over_its_heatmap(cnn1d):
    x = np.random.default_rng(3).normal(size=(3, 20, 1)).astype(np.float32)
    e = xai.explain(cnn1d, x, "gradcam")
    assert e.images[0] is None and e.signal_inputs[0] is x
    fig = e.plot(2)
    ax = fig.axes[0]
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), x[2, :, 0])
    np.testing.assert_array_equal(
        np.asarray(ax.images[0].get_array()), xai.viz.colorize(e.heatmap[2][None])
    )
    sub = e[[2]]  # slicing keeps the signals
    np.testing.assert_array_equal(sub.plot(0).axes[0].lines[0].get_ydata(), x[2, :, 0])
