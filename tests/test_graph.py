"""Every node of the graph: Keras operations, sub-layers inside layers, dominating CAM layers."""

from __future__ import annotations

import gc
import logging
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

import xai
from xai import testing
from xai.errors import ModelStructureError
from xai.explainer import _ENGINES

_assert_unchanged = testing.assert_model_unchanged


def _operation(model, type_name):
    """The one operation of ``model`` of class ``type_name`` (found without xai)."""
    found = [op for op in model.operations if type(op).__name__ == type_name]
    assert len(found) == 1, [op.name for op in model.operations]
    return found[0]


def reference_gradcam(feature_model, head, x, cls):
    """Raw Grad-CAM computed eagerly, without xai: ``feature_model(x) -> A``,
    ``head(A) -> logits``."""
    x = tf.constant(x)
    a = feature_model(x, training=False)
    with tf.GradientTape() as tape:
        tape.watch(a)
        z = head(a)
        score = tf.gather(z, tf.constant(cls), batch_dims=1)
    g = tape.gradient(score, a).numpy()
    a = a.numpy()
    w = g.mean(axis=(1, 2), keepdims=True)
    return (w * a).sum(-1)  # raw Grad-CAM is kept signed; the ReLU belongs to the heatmap


def _dense_logits(dense, h):
    return tf.matmul(h, dense.kernel) + dense.bias


def assert_close_relative(actual, expected, rtol=1e-5):
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


@pytest.fixture(scope="module")
def residual():
    return testing.residual_ops_cnn()


@pytest.fixture(scope="module")
def blocks():
    return testing.custom_block_cnn()


@pytest.fixture(scope="module")
def x16():
    return testing.random_images(5, (16, 16, 3), seed=3)


# ------------------------------------------------------------------ Keras operations as nodes
def test_operation_nodes_are_listed_and_tappable(residual, x16):
    add = _operation(residual, "Add")
    assert add.name in xai.layer_paths(residual)
    assert add not in residual.layers  # an operation, not a layer
    before = testing.model_fingerprint(residual)
    predict_before = residual.predict(x16, verbose=0)
    t = xai.tap(residual, add.name)
    z, a = (np.asarray(v) for v in t(x16))
    ref = np.asarray(keras.Model(residual.inputs[0], add.output)(x16))  # independent of xai
    np.testing.assert_allclose(a, ref, rtol=1e-6, atol=1e-6)
    gap = residual.get_layer("gap")
    np.testing.assert_allclose(
        z, _dense_logits(residual.get_layer("predictions"), gap(ref)).numpy(), atol=1e-5
    )
    _assert_unchanged(residual, before, x16, predict_before)


def test_auto_layer_is_the_sum_the_head_reads(residual):
    # The branch's last conv comes after the stem in graph order; the head reads the sum.
    head_input = residual.get_layer("gap").input._keras_history.operation
    assert xai.auto_layer(residual) == head_input.name
    assert head_input.name != "block1_conv2"


def test_gradcam_on_the_sum_matches_an_eager_reference(residual, x16):
    add = _operation(residual, "Add")
    cls = np.array([0, 1, 2, 3, 1])
    e = xai.explain(residual, x16, "gradcam", targets=cls)
    assert e.layer == (add.name,)
    dense, gap = residual.get_layer("predictions"), residual.get_layer("gap")
    ref = reference_gradcam(
        keras.Model(residual.inputs[0], add.output),
        lambda a: _dense_logits(dense, gap(a)),
        x16,
        cls,
    )
    assert_close_relative(e.attributions, ref)


def test_ops_concatenate_as_last_spatial_tensor(x16):
    model = testing.ops_tail_cnn()
    concat = _operation(model, "Concatenate")
    assert xai.auto_layer(model) == concat.name
    e = xai.explain(model, x16, "gradcam", targets=1)
    dense, gap = model.get_layer("predictions"), model.get_layer("gap")
    ref = reference_gradcam(
        keras.Model(model.inputs[0], concat.output),
        lambda a: _dense_logits(dense, gap(a)),
        x16,
        [1] * 5,
    )
    assert_close_relative(e.attributions, ref)


def test_all_includes_operations(residual):
    add = _operation(residual, "Add")
    t = xai.Tap.build(residual, "all")
    assert add.name in t.layers
    assert "block1_conv2" in t.layers


def test_operation_in_a_channels_first_model_uses_the_model_format():
    keras.utils.set_random_seed(0)
    inp = keras.Input((3, 10, 10))
    a = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="c1")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="c2")(a)
    s = a + b
    out = keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling2D(data_format="channels_first")(s)
    )
    model = keras.Model(inp, out)
    t = xai.Tap.build(model, "auto")
    assert t.layers == (s._keras_history.operation.name,)
    assert t.channel_axes == (1,)
    e = xai.explain(model, testing.random_images(2, (3, 10, 10)), "gradcam")
    assert e.attributions.shape == (2, 10, 10)


def test_did_you_mean_lists_operations(residual):
    add = _operation(residual, "Add")
    with pytest.raises(ModelStructureError, match=f"Did you mean.*{add.name}"):
        xai.tap(residual, add.name + "x")


# ------------------------------------------------------------------ sub-layers inside call()
def _manual_forward(model, x):
    """The custom-block model applied layer by layer in eager mode (no graph, no xai)."""
    stem, stack = model.get_layer("stem"), model.get_layer("stack")
    h = stem(x)
    inner = {}
    for block in stack.blocks:
        a = block.conv_a(h)
        y = block.conv_b(keras.ops.relu(a))
        inner[block.name] = (a, y)
        h = keras.ops.relu(h + y)
    return h, inner


def test_sublayer_paths_are_listed(blocks):
    paths = xai.layer_paths(blocks)
    for p in ["stack", "stack/block0", "stack/block0/conv_a", "stack/block1/conv_b"]:
        assert p in paths
    assert "stack/block0/conv_a" not in xai.Tap.build(blocks, "all").layers


def test_sublayer_tap_matches_the_eager_computation(blocks, x16):
    before = testing.model_fingerprint(blocks)
    predict_before = blocks.predict(x16, verbose=0)
    t = xai.tap(blocks, ["stack/block0/conv_a", "stack/block1", "stack/block1/conv_b"])
    z, a0, b1, y1 = (np.asarray(v) for v in t(x16))
    h, inner = _manual_forward(blocks, tf.constant(x16))
    np.testing.assert_allclose(a0, inner["block0"][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(y1, inner["block1"][1].numpy(), atol=1e-5)
    np.testing.assert_allclose(b1, h.numpy(), atol=1e-5)
    logits = _dense_logits(blocks.get_layer("predictions"), blocks.get_layer("gap")(h))
    np.testing.assert_allclose(z, logits.numpy(), atol=1e-5)
    _assert_unchanged(blocks, before, x16, predict_before)
    # Nothing was assigned on the layers: their call is still the class's own method.
    for layer in blocks.get_layer("stack")._flatten_layers():
        assert "call" not in vars(layer)


def test_gradcam_on_a_sublayer_matches_an_eager_reference(blocks, x16):
    cls = np.array([0, 1, 2, 0, 1])
    e = xai.explain(blocks, x16, "gradcam", targets=cls, layer="stack/block0/conv_a")
    x = tf.constant(x16)
    stack = blocks.get_layer("stack")
    with tf.GradientTape() as tape:
        h = blocks.get_layer("stem")(x)
        a = stack.blocks[0].conv_a(h)
        tape.watch(a)
        y = stack.blocks[0].conv_b(keras.ops.relu(a))
        h = stack.blocks[1](keras.ops.relu(h + y))
        z = _dense_logits(blocks.get_layer("predictions"), blocks.get_layer("gap")(h))
        score = tf.gather(z, tf.constant(cls), batch_dims=1)
    g, a = tape.gradient(score, a).numpy(), a.numpy()
    ref = (g.mean(axis=(1, 2), keepdims=True) * a).sum(-1)
    assert_close_relative(e.attributions, ref)


def test_ablation_cam_reaches_a_sublayer(blocks, x16):
    e = xai.explain(blocks, x16[:2], "ablationcam", layer="stack/block1/conv_b")
    assert e.attributions.shape == (2, 16, 16)
    assert np.isfinite(e.attributions).all() and np.abs(e.attributions).max() > 0


class _RawTFBlock(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(3, 3, padding="same", name="conv")

    def call(self, x):
        return tf.nn.relu(self.conv(x))  # a raw TensorFlow op: cannot run on symbolic tensors


class _UnusedSublayer(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(3, 3, padding="same", name="conv")
        self.spare = keras.layers.Conv2D(3, 3, padding="same", name="spare")

    def call(self, x):
        return self.conv(x)


@pytest.mark.filterwarnings("ignore:`build\\(\\)` was called on layer:UserWarning")
@pytest.mark.parametrize(
    "block, path, match",
    [
        (_RawTFBlock, "blk/conv", "traces its call\\(\\) on symbolic Keras tensors"),
        (_UnusedSublayer, "blk/spare", "does not call it on a tensor"),
    ],
)
def test_untraceable_sublayers_get_a_clear_error(block, path, match):
    inp = keras.Input((8, 8, 3))
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(block(name="blk")(inp)))
    model = keras.Model(inp, out)
    with pytest.raises(ModelStructureError, match=match):
        xai.tap(model, path)


# ------------------------------------------------------------------ dominators
def test_dominators_of_a_residual_graph(residual):
    g = xai.graph.ModelGraph(residual)
    names = [n.path for n in g.dominators(0, 0)]
    add = _operation(residual, "Add").name
    assert names[0] is None  # the input
    assert names[1:] == ["stem", add, "gap", "predictions"]  # the branch is not a dominator


def test_two_inputs_keep_one_layer_per_branch():
    model = testing.two_input_model()
    assert xai.Tap.build(model, "auto").layers == ("left_conv", "right_conv")


def test_branches_without_a_common_map_warn(caplog):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    a = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3, name="left")(inp))
    b = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 5, name="right")(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with caplog.at_level(logging.WARNING, logger="xai"):
        chosen = xai.auto_layer(model)
    assert chosen in ("left", "right")
    assert "carries every path" in caplog.text and repr(chosen) in caplog.text


def test_nested_operation_path(x16):
    inner = testing.residual_ops_cnn()
    backbone = keras.Model(inner.inputs[0], inner.get_layer("gap").input, name="res_backbone")
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Dense(2, activation="softmax", name="head")(
        keras.layers.GlobalAveragePooling2D()(backbone(inp))
    )
    model = keras.Model(inp, out)
    add = _operation(inner, "Add").name
    assert xai.auto_layer(model) == f"res_backbone/{add}"
    a = np.asarray(xai.tap(model, f"res_backbone/{add}", logits=False)(x16))
    np.testing.assert_allclose(a, np.asarray(backbone(x16)), atol=1e-6)


# ------------------------------------------------------------------ the one-shot cache
def _inbound_nodes(model):
    return sum(len(layer._inbound_nodes) for layer in model._flatten_layers())


def test_repeated_explain_reuses_compiled_steps_and_adds_no_nodes(x16):
    model = testing.residual_ops_cnn(seed=4)
    first = xai.explain(model, x16, "gradcam")
    xai.explain(model, x16, "saliency")
    engine = _ENGINES[model][(None, None, False, None)][True]
    traces, nodes = engine.trace_count, _inbound_nodes(model)
    for _ in range(100):
        e = xai.explain(model, x16, "gradcam")
    xai.explain(model, x16, "saliency")
    assert engine.trace_count == traces
    assert _inbound_nodes(model) == nodes
    np.testing.assert_array_equal(e.attributions, first.attributions)


def test_cache_sees_training_between_calls(x16):
    model = testing.residual_ops_cnn(seed=5)
    before = xai.explain(model, x16, "gradcam", targets=0).attributions
    dense = model.get_layer("predictions")
    dense.kernel.assign(dense.kernel * -2.0)
    after = xai.explain(model, x16, "gradcam", targets=0).attributions
    fresh = xai.Explainer(model).explain(x16, "gradcam", targets=0).attributions
    np.testing.assert_allclose(after, fresh, atol=1e-6)
    assert not np.allclose(after, before)


def test_cache_holds_the_model_weakly_and_can_be_cleared(x16):
    model = testing.residual_ops_cnn(seed=6)
    xai.explain(model, x16, "gradcam")
    cache = _ENGINES
    assert model in cache
    xai.clear_cache(model)
    assert model not in cache
    xai.explain(model, x16, "gradcam", class_names=["a", "b", "c", "d"])
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
    assert all(m is not None for m in list(cache.keys()))
    xai.clear_cache()
    assert len(cache) == 0


def test_cache_keys_on_layer_and_output(x16):
    model = testing.residual_ops_cnn(seed=7)
    a = xai.explain(model, x16, "gradcam", layer="block1_conv2")
    b = xai.explain(model, x16, "gradcam")
    assert a.layer == ("block1_conv2",) and b.layer != a.layer
    assert not np.allclose(a.attributions, b.attributions)


def test_many_engines_do_not_look_like_retracing(x16, caplog):
    """Every engine traces its steps once; TensorFlow must not count them as one function
    retraced (its warning keys on the code object, shared by every engine's step)."""
    model = testing.functional_cnn(seed=9)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for layer in ["conv1", "last_conv", None, "conv1", "last_conv", None, "conv1"]:
            xai.Explainer(model, layer=layer).explain(x16, "gradcam")
    assert "retracing" not in caplog.text
