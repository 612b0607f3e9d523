"""Taps: logits and activations of any graph model, without touching it."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

import xai
from xai import testing
from xai.errors import ModelStructureError, XaiTypeError, XaiValueError


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _check_logits(model, x, activation):
    before = testing.model_fingerprint(model)
    predict_before = model.predict(x, verbose=0)
    lm = xai.logits_model(model)
    z = np.asarray(lm(x))
    p = np.asarray(model(x))
    expected = {"softmax": _softmax, "sigmoid": _sigmoid, "linear": lambda v: v}[activation](z)
    np.testing.assert_allclose(expected, p, atol=1e-6)
    # Same variables, no copies, nothing new.
    assert {id(v) for v in lm.weights} <= {id(v) for v in model.weights}
    assert len(lm.weights) == len(model.weights)
    _assert_unchanged(model, before, x, predict_before)
    return z


_assert_unchanged = testing.assert_model_unchanged


@pytest.mark.parametrize("built", ["input", "build", "call"])
def test_sequential_dense_softmax(built, images):
    _check_logits(testing.sequential_cnn(built=built), images, "softmax")


@pytest.mark.parametrize(
    "head, activation",
    [
        ("softmax_layer", "softmax"),
        ("activation_softmax", "softmax"),
        ("dense_softmax", "softmax"),
        ("sigmoid", "sigmoid"),
        ("linear", "linear"),
    ],
)
def test_functional_heads(head, activation, images):
    _check_logits(testing.functional_cnn(head=head), images, activation)


def test_binary_single_sigmoid(images):
    model = testing.functional_cnn(num_classes=1, head="sigmoid")
    z = _check_logits(model, images, "sigmoid")
    p = np.asarray(model(images))
    np.testing.assert_allclose(z, np.log(p / (1 - p)), rtol=1e-4, atol=1e-5)


def test_linear_head_is_returned_as_is(images):
    model = testing.functional_cnn(head="linear")
    np.testing.assert_array_equal(
        np.asarray(xai.logits_model(model)(images)), np.asarray(model(images))
    )


def test_logits_are_not_log_probabilities(images):
    model = testing.functional_cnn()
    z = np.asarray(xai.logits_model(model)(images))
    logp = np.log(np.asarray(model(images)))
    diff = z - logp  # a per-sample constant (the logsumexp), not zero
    assert np.abs(diff).max() > 1e-3
    np.testing.assert_allclose(diff, diff[:, :1].repeat(diff.shape[1], 1), atol=1e-5)


@pytest.mark.parametrize("kind", ["sequential", "functional", "double"])
def test_nested_backbone_inner_layer(kind, images):
    model = testing.nested_backbone(kind=kind)
    before = testing.model_fingerprint(model)
    predict_before = model.predict(images, verbose=0)
    prefix = "wrapper/backbone" if kind == "double" else "backbone"
    path = f"{prefix}/out_relu"
    assert xai.auto_layer(model) == path
    t = xai.tap(model, [path, f"{prefix}/conv1"])
    z, a, c1 = (np.asarray(v) for v in t(images))
    np.testing.assert_allclose(_softmax(z), np.asarray(model(images)), atol=1e-6)
    base = (
        model.get_layer("wrapper").get_layer("backbone")
        if kind == "double"
        else model.get_layer("backbone")
    )
    inner = keras.Model(
        base.inputs[0], [base.get_layer("out_relu").output, base.get_layer("conv1").output]
    )
    ref_a, ref_c1 = (np.asarray(v) for v in inner(images))  # the rescaling layer multiplies by 1.0
    np.testing.assert_allclose(a, ref_a, atol=1e-6)
    np.testing.assert_allclose(c1, ref_c1, atol=1e-6)
    assert {id(v) for v in t.weights} <= {id(v) for v in model.weights}
    _assert_unchanged(model, before, images, predict_before)


@pytest.mark.slow
@pytest.mark.parametrize("wrap", ["sequential", "functional"])
def test_mobilenetv2_nested(wrap):
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(64, 64, 3))
    head = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, activation="softmax")]
    model = testing.transfer_model(base, head, wrap)
    x = testing.random_images(2, (64, 64, 3))
    path = f"{base.name}/out_relu"
    assert xai.auto_layer(model) == path
    z, a = xai.tap(model, path)(x)
    np.testing.assert_allclose(_softmax(np.asarray(z)), np.asarray(model(x)), atol=1e-6)
    ref = keras.Model(base.inputs[0], base.get_layer("out_relu").output)(x)
    np.testing.assert_allclose(np.asarray(a), np.asarray(ref), atol=1e-5)
    e = xai.explain(model, x, "gradcam")
    assert e.layer == (path,) and e.heatmap.shape == (2, 64, 64)
    assert np.isfinite(e.attributions).all() and np.abs(e.attributions).max() > 0


def test_two_input_model():
    model = testing.two_input_model()
    left = testing.random_images(3, (16, 16, 3), seed=3)
    right = testing.random_images(3, (12, 12, 1), seed=4)
    z, a, b = xai.tap(model, ["left_conv", "right_conv"])([left, right])
    np.testing.assert_allclose(_softmax(np.asarray(z)), np.asarray(model([left, right])), atol=1e-6)
    assert a.shape == (3, 14, 14, 4) and b.shape == (3, 10, 10, 5)
    t = xai.Tap.build(model, "auto")
    assert t.layers == ("left_conv", "right_conv") and t.layer_inputs == (0, 1)


def test_multi_output_choose_by_name_and_index(images):
    model = testing.multi_output_model()
    species, animal = (np.asarray(v) for v in model(images))
    z0 = np.asarray(xai.logits_model(model, output="species")(images))
    z1 = np.asarray(xai.logits_model(model, output=1)(images))
    np.testing.assert_allclose(_softmax(z0), species, atol=1e-6)
    np.testing.assert_allclose(_sigmoid(z1), animal, atol=1e-6)
    z, a = xai.tap(model, "last_conv", output="is_animal")(images)
    np.testing.assert_allclose(np.asarray(z), z1, atol=1e-6)


def test_multi_output_requires_choice(images):
    model = testing.multi_output_model()
    with pytest.raises(XaiValueError, match=r"2 outputs.*0: 'species', 1: 'is_animal'"):
        xai.logits_model(model)
    with pytest.raises(XaiValueError, match=r"Did you mean 'species'"):
        xai.tap(model, "last_conv", output="specie")
    with pytest.raises(XaiValueError, match=r"index in \[0, 1\]"):
        xai.explain(model, images, output=2)


def test_conv1d_conv3d_and_bn_models():
    m1 = testing.conv1d_model()
    x1 = testing.random_images(4, (20, 1))
    z, a = xai.tap(m1)(x1)
    assert a.shape == (4, 16, 5)
    np.testing.assert_allclose(_softmax(np.asarray(z)), np.asarray(m1(x1)), atol=1e-6)
    m3 = testing.conv3d_model()
    x3 = testing.random_images(2, (8, 12, 12, 1))
    z, a = xai.tap(m3)(x3)
    assert a.shape == (2, 6, 10, 10, 4)
    np.testing.assert_allclose(_softmax(np.asarray(z)), np.asarray(m3(x3)), atol=1e-6)
    mb = testing.bn_cnn()
    assert xai.auto_layer(mb) == "pool"
    x = testing.random_images(2)
    np.testing.assert_allclose(
        _softmax(np.asarray(xai.logits_model(mb)(x))), np.asarray(mb(x)), atol=1e-6
    )


def test_all_layer_outputs(cnn, images):
    t = xai.tap(cnn, "all")
    outs = t(images)
    assert len(outs) == 1 + len(xai.layer_paths(cnn, leaves_only=True))
    conv1 = keras.Model(cnn.inputs[0], cnn.get_layer("conv1").output)(images)
    np.testing.assert_allclose(np.asarray(outs[1]), np.asarray(conv1), atol=1e-6)
    only = xai.tap(cnn, ["conv1"], logits=False)(images)
    only = only[0] if isinstance(only, (list, tuple)) else only
    np.testing.assert_allclose(np.asarray(only), np.asarray(conv1), atol=1e-6)


def test_nested_all_paths():
    model = testing.nested_backbone()
    paths = xai.layer_paths(model)
    assert "backbone" in paths and "backbone/conv1" in paths and "backbone/out_relu" in paths
    outs = xai.tap(model, "all")(testing.random_images(1))
    assert len(outs) == 1 + len(xai.layer_paths(model, leaves_only=True))


def test_auto_layer_falls_back_with_warning_on_1x1(caplog):
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, name="c2x2")(inputs)
    x = keras.layers.Conv2D(4, 2, name="c1x1")(x)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, out)
    assert xai.auto_layer(model) == "c2x2"
    inputs = keras.Input((3, 3, 3))
    x = keras.layers.Conv2D(4, 3, name="only1x1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with caplog.at_level(logging.WARNING, logger="xai.taps"):
        assert xai.auto_layer(model) == "only1x1"
    assert "1x1" in caplog.text


def test_errors():
    with pytest.raises(
        ModelStructureError, match=r"subclassed keras.Model \(SubclassedNet\).*functional API"
    ):
        xai.tap(testing.subclassed_model())
    with pytest.raises(ModelStructureError, match=r"no layer whose output has the rank.*saliency"):
        xai.auto_layer(testing.mlp())
    with pytest.raises(ModelStructureError, match=r"Did you mean 'last_conv'"):
        xai.tap(testing.functional_cnn(), "last_cnv")
    with pytest.raises(ModelStructureError, match=r"never been built"):
        xai.tap(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(XaiTypeError, match=r"must be a keras.Model"):
        xai.logits_model("model.keras")
