"""The automatic CAM layer on architectures nobody here wrote (keras.applications, weights=None).

The choice is checked against an independent, brute-force definition of "the map the head
really sees": removing the chosen tensor disconnects the input from the output, and no later
spatial tensor (larger than 1x1) does. Raw Grad-CAM is checked against Keras's own multi-output
model on the original graph, differentiated eagerly.
"""

from __future__ import annotations

import functools
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import xai
from xai import testing

pytestmark = pytest.mark.slow

A = keras.applications
FAMILIES = [
    ("Xception", 96),
    ("VGG16", 64),
    ("ResNet50", 64),
    ("ResNet50V2", 64),
    ("InceptionV3", 96),
    ("InceptionV3", 160),
    ("InceptionResNetV2", 96),
    ("InceptionResNetV2", 160),
    ("MobileNet", 64),
    ("MobileNetV2", 64),
    ("MobileNetV3Small", 64),
    ("MobileNetV3Large", 64),
    ("DenseNet121", 64),
    ("NASNetMobile", 64),
    ("EfficientNetB0", 64),
    ("EfficientNetV2B0", 64),
    ("ConvNeXtTiny", 64),
]


@functools.lru_cache(maxsize=4)
def build(name: str, size: int, logits: bool = False) -> keras.Model:
    kwargs = {"classifier_activation": None} if logits else {}
    return getattr(A, name)(weights=None, input_shape=(size, size, 3), classes=10, **kwargs)


def _operation(model: keras.Model, name: str):
    return next(op for op in model.operations if op.name == name)


def _reaches_input(model: keras.Model, blocked) -> bool:
    """Whether the output still depends on the input once ``blocked`` is removed (brute force)."""
    inputs = {id(t) for t in model.inputs}
    stack, seen = list(model.outputs), set()
    while stack:
        t = stack.pop()
        if t is blocked or id(t) in seen:
            continue
        seen.add(id(t))
        if id(t) in inputs:
            return True
        history = t._keras_history
        stack.extend(history.operation._inbound_nodes[history.node_index].input_tensors)
    return False


def _spatial(t) -> tuple:
    return tuple(t.shape[1:-1])


@pytest.mark.parametrize("name, size", FAMILIES, ids=[f"{n}@{s}" for n, s in FAMILIES])
def test_auto_layer_is_the_last_dominating_map(name, size, caplog):
    model = build(name, size)
    with caplog.at_level(logging.WARNING, logger="xai"):
        chosen = xai.auto_layer(model)
    tensor = _operation(model, chosen).output
    assert len(tensor.shape) == 4 and max(_spatial(tensor)) > 1
    assert not _reaches_input(model, tensor), f"{chosen} does not carry every path"
    ops = [op for op in model.operations if not isinstance(op, keras.layers.InputLayer)]
    later = ops[[op.name for op in ops].index(chosen) + 1 :]
    for op in later:
        out = op.output
        if isinstance(out, keras.KerasTensor) and len(out.shape) == 4 and max(_spatial(out)) > 1:
            assert _reaches_input(model, out), f"{op.name} dominates and comes after {chosen}"
    # A warning exactly when the last 4-D maps are 1x1 (the trunk's end is too small).
    last_maps_are_1x1 = name.startswith("Inception") and size == 96
    assert ("1x1" in caplog.text) == last_maps_are_1x1, caplog.text


def test_known_choices():
    # The tensors the heads read (issue 13): not the residual branch, not an Inception branch.
    convnext = build("ConvNeXtTiny", 64)
    gap_input = convnext.get_layer("convnext_tiny_head_gap").input._keras_history.operation
    assert type(gap_input).__name__ == "Add"
    assert xai.auto_layer(convnext) == gap_input.name
    assert xai.auto_layer(build("InceptionV3", 96)) == "mixed7"
    assert xai.auto_layer(build("InceptionResNetV2", 96)) == "block17_20_ac"
    assert xai.auto_layer(build("ResNet50", 64)) == "conv5_block3_out"
    assert xai.auto_layer(build("MobileNetV2", 64)) == "out_relu"


def _reference_gradcam(model, tensor, x, cls):
    """Raw Grad-CAM with Keras's own two-output model of the original graph (no xai)."""
    two = keras.Model(model.inputs[0], [tensor, model.outputs[0]])
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        a, z = two(x, training=False)
        score = tf.gather(z, tf.constant(cls), batch_dims=1)
    g = tape.gradient(score, a).numpy()
    return (g.mean(axis=(1, 2), keepdims=True) * a.numpy()).sum(-1)


@pytest.mark.parametrize(
    "name, size",
    [("ConvNeXtTiny", 64), ("InceptionV3", 96)],
    ids=["ConvNeXtTiny", "InceptionV3@96"],
)
def test_gradcam_equals_the_reference_on_the_dominating_tensor(name, size):
    model = build(name, size, logits=True)
    x = testing.random_images(3, (size, size, 3), seed=11) * 255.0
    before = testing.model_fingerprint(model)
    predict_before = model.predict(x, verbose=0)
    cls = np.array([1, 4, 7])
    e = xai.explain(model, x, "gradcam", targets=cls)
    (chosen,) = e.layer
    ref = _reference_gradcam(model, _operation(model, chosen).output, x, cls)
    scale = np.abs(ref).max()
    assert scale > 0
    np.testing.assert_allclose(e.attributions, ref, rtol=0, atol=1e-5 * scale)
    testing.assert_model_unchanged(model, before, x, predict_before)


def test_tap_of_an_operation_in_convnext():
    model = build("ConvNeXtTiny", 64)
    add = next(op for op in model.operations if op.name == xai.auto_layer(model))
    x = testing.random_images(2, (64, 64, 3), seed=12) * 255.0
    a = np.asarray(xai.tap(model, add.name, logits=False)(x))
    ref = np.asarray(keras.Model(model.inputs[0], add.output)(x))
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("wrap", ["sequential", "functional"])
@pytest.mark.parametrize("name", ["ResNet50", "ConvNeXtTiny", "EfficientNetB0"])
def test_transfer_learning_backbones(name, wrap):
    base = getattr(A, name)(weights=None, include_top=False, input_shape=(64, 64, 3))
    head = [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(3, activation="softmax"),
    ]
    model = testing.transfer_model(base, head, wrap)
    inner = base.outputs[0]._keras_history.operation.name  # the backbone's own output node
    assert xai.auto_layer(model) == f"{base.name}/{inner}"
    x = testing.random_images(2, (64, 64, 3), seed=13) * 255.0
    e = xai.explain(model, x, "gradcam")
    assert e.attributions.shape == (2, 2, 2)
    assert np.isfinite(e.attributions).all()
