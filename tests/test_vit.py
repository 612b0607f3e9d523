"""Vision Transformers: token grids, the default CAM layer, attention capture and methods.

Closed forms on arrays (rollout of identity attention, row-stochasticity, the row-vector
propagation), a 1-block ViT whose generic-attention map is computed by hand from its weights,
Grad-CAM on tokens against Keras's own model differentiated eagerly, and the user's model
unchanged.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import xai
from xai.errors import ModelStructureError, XaiValueError
from xai.methods.attention import (
    class_rows,
    propagate,
    relevance_mixing,
    rollout_mixing,
    token_map,
)
from xai.testing import assert_model_unchanged, model_fingerprint
from xai.tokens import TokenGrid, grid_for, infer_grid
from xai.vit import vit

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def small_vit() -> keras.Model:
    return vit(32, 3, patch_size=8, hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32, seed=1)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return RNG.random((3, 32, 32, 3)).astype(np.float32)


# --------------------------------------------------------------------------- token grids
@pytest.mark.parametrize("prefix", [0, 1, 2, 5])
@pytest.mark.parametrize("size,patch,grid", [((32, 32), 8, (4, 4)), ((32, 64), 8, (4, 8))])
def test_infer_grid_prefix_and_shape(prefix, size, patch, grid):
    t = prefix + grid[0] * grid[1]
    assert infer_grid(t, size, patch=(patch, patch)) == TokenGrid(grid, prefix)
    # without the patch size: from the token count and the input's aspect ratio, for up to two
    # prefix tokens (more would explain away almost any count)
    assert infer_grid(t, size) == (TokenGrid(grid, prefix) if prefix <= 2 else None)


def test_infer_grid_merged_stage_and_failure():
    # a Swin-like stage: 4x4 tokens of a 32x32 image with patch 4 merged once (stride 8)
    assert infer_grid(16, (32, 32), patch=(4, 4)) == TokenGrid((4, 4), 0)
    assert infer_grid(50, (30, 30)) is None  # no integer stride gives 50 - p tokens


def test_token_grid_to_map_drops_prefix_row_major():
    tokens = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)  # 1 prefix + 2x3 grid
    out = TokenGrid((2, 3), 1).to_map(tokens)
    assert out.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(out[0, 1, 2], tokens[0, 6])
    np.testing.assert_array_equal(out[1, 0, 0], tokens[1, 1])


def test_grid_for_errors_and_override():
    with pytest.raises(ModelStructureError, match="token_grid"):
        grid_for("enc", (None, 50, 8), (30, 30), patch=None)
    assert grid_for("enc", (None, 50, 8), (30, 30), patch=None, override=(7, 7)) == TokenGrid(
        (7, 7), 1
    )
    with pytest.raises(XaiValueError, match="token_grid"):
        grid_for("enc", (None, 50, 8), (30, 30), patch=None, override=TokenGrid((7, 7), 0))


# --------------------------------------------------------------------------- closed forms
def _stochastic(b, h, t):
    a = RNG.random((b, h, t, t)).astype(np.float32)
    return a / a.sum(-1, keepdims=True)


def _np(x):
    return np.asarray(x, dtype=np.float64)


def test_rollout_of_identity_attention_is_identity():
    eye = np.broadcast_to(np.eye(5, dtype=np.float32), (2, 3, 5, 5))
    mixing = [rollout_mixing(eye) for _ in range(4)]
    full = _np(propagate(mixing, np.eye(5, dtype=np.float32)[None]))
    np.testing.assert_allclose(full, np.eye(5)[None].repeat(2, 0), atol=1e-7)


def test_rollout_rows_are_stochastic_and_vector_form_matches_matrix():
    attn = [_stochastic(2, 3, 6) for _ in range(3)]
    mixing = [rollout_mixing(a) for a in attn]
    full = _np(propagate(mixing, np.eye(6, dtype=np.float32)[None]))
    np.testing.assert_allclose(full.sum(-1), 1.0, atol=1e-6)
    assert (full >= 0).all()
    expected = np.eye(6)[None]
    for a in attn:  # R = M_3 M_2 M_1 (the first block applied first), M = rownorm(mean A + I)
        m = a.astype(np.float64).mean(1) + np.eye(6)
        expected = (m / m.sum(-1, keepdims=True)) @ expected
    np.testing.assert_allclose(full, expected, atol=1e-6)
    row = _np(propagate(mixing, class_rows(TokenGrid((1, 5), 1))))
    np.testing.assert_allclose(row[:, 0], full[:, 0], atol=1e-6)
    no_class = _np(propagate(mixing, class_rows(TokenGrid((2, 3), 0))))
    np.testing.assert_allclose(no_class[:, 0], full.mean(axis=1), atol=1e-6)


def test_relevance_mixing_closed_form():
    a = _stochastic(1, 2, 3)
    g = RNG.normal(size=a.shape).astype(np.float32)
    expected = np.eye(3) + 0.5 * (
        np.maximum(g[0, 0] * a[0, 0], 0) + np.maximum(g[0, 1] * a[0, 1], 0)
    )
    np.testing.assert_allclose(_np(relevance_mixing(a, g))[0], expected, rtol=1e-6)


def test_head_fusion_matters_and_is_validated():
    attn = _stochastic(1, 3, 5)
    grid = TokenGrid((2, 2), 1)
    maps = {
        f: token_map(propagate([rollout_mixing(attn, f)], class_rows(grid)), grid)
        for f in ("mean", "max", "min")
    }
    assert not np.allclose(maps["mean"], maps["max"])
    assert not np.allclose(maps["mean"], maps["min"])
    with pytest.raises(XaiValueError, match="head_fusion"):
        rollout_mixing(attn, "median")


# --------------------------------------------------------------------------- hand-built references
def _pre_softmax(model: keras.Model, features: tf.Tensor) -> tf.Tensor:
    dense = model.get_layer("predictions")
    return features @ dense.kernel + dense.bias


def test_generic_attention_one_block_by_hand(images):
    model = vit(32, 3, patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32, seed=3)
    e = xai.explain(model, images, "generic_attention", targets=1)
    assert e.layer == ("block0_attention:attention",)
    # The block written out from its layers, with the attention probabilities as a tensor the
    # tape can watch: out = output_dense(einsum(A, value_dense(y))).
    get = model.get_layer
    x = get("patch_embedding")(images)
    x = get("position_embedding")(get("prefix_tokens")(get("patch_tokens")(x)))
    y = get("block0_norm1")(x)
    mha = get("block0_attention")
    _, attention = mha(y, y, return_attention_scores=True)
    with tf.GradientTape() as tape:
        tape.watch(attention)
        mixed = tf.einsum("bhqk,bkhd->bqhd", attention, mha._value_dense(y))
        x1 = x + mha._output_dense(mixed)
        z = get("block0_mlp2")(get("block0_mlp1")(get("block0_norm2")(x1)))
        feats = get("final_norm")(x1 + z)[:, 0]
        score = tf.reduce_sum(_pre_softmax(model, feats)[:, 1])
    grad = tape.gradient(score, attention).numpy()
    a = attention.numpy()
    relevance = np.eye(17)[None] + np.maximum(grad * a, 0).mean(axis=1)
    expected = relevance[:, 0, 1:].reshape(-1, 4, 4)
    np.testing.assert_allclose(e.raw[0], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(e.scores, _pre_softmax(model, feats).numpy()[:, 1], rtol=1e-5)


def test_gradcam_on_tokens_matches_eager_keras(small_vit, images):
    e = xai.explain(small_vit, images, "gradcam", targets=2)
    assert e.layer == ("block1_attention:input",)
    assert e.raw[0].shape == (3, 4, 4) and e.heatmap.shape == (3, 32, 32)
    get = small_vit.get_layer
    # Keras's own model up to the residual stream and the tokens block 1 attends over
    ref = keras.Model(small_vit.inputs, [get("block0_add2").output, get("block1_norm1").output])
    x_in, tokens = ref(tf.constant(images))
    with tf.GradientTape() as tape:
        tape.watch(tokens)
        x1 = x_in + get("block1_attention")(tokens, tokens)
        z = get("block1_mlp2")(get("block1_mlp1")(get("block1_norm2")(x1)))
        score = tf.reduce_sum(_pre_softmax(small_vit, get("final_norm")(x1 + z)[:, 0])[:, 2])
    g = tape.gradient(score, tokens).numpy()[:, 1:].reshape(3, 4, 4, 16)
    a = tokens.numpy()[:, 1:].reshape(3, 4, 4, 16)
    expected = (g.mean(axis=(1, 2), keepdims=True) * a).sum(-1)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(e.raw[0], expected, atol=1e-5 * scale)


# --------------------------------------------------------------------------- behaviour
def test_model_unchanged_and_batch_invariant(small_vit, images):
    before = model_fingerprint(small_vit)
    predict_before = small_vit.predict(images, verbose=0)
    for method in ("gradcam", "attention_rollout", "generic_attention", "scorecam"):
        full = xai.explain(small_vit, images, method, targets=0)
        one = xai.explain(small_vit, images[1:2], method, targets=0)
        np.testing.assert_allclose(full.raw[0][1:2], one.raw[0], rtol=1e-4, atol=1e-6)
    assert_model_unchanged(small_vit, before, images, predict_before)


def test_attention_tap_matches_the_fused_model(small_vit, images):
    t = xai.tap(small_vit, ["block0_attention:attention", "block1_attention:input"])
    logits, attention, tokens = (o.numpy() for o in t(images))
    np.testing.assert_allclose(logits, xai.logits_model(small_vit)(images).numpy(), atol=1e-5)
    assert attention.shape == (3, 2, 17, 17)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    assert tokens.shape == (3, 17, 16)


def test_final_output_warns_zero_gradients(small_vit, images, caplog):
    with caplog.at_level(logging.WARNING, logger="xai"):
        e = xai.explain(small_vit, images, "gradcam", layer="final_norm")
    assert "exactly zero" in caplog.text and "final_norm" in caplog.text
    assert not e.raw[0].any()


@pytest.mark.parametrize("prefix,pooling", [(0, "mean"), (2, "token"), (5, "token")])
def test_prefix_tokens_and_non_square(prefix, pooling):
    model = vit(
        (32, 64),
        3,
        patch_size=8,
        hidden_dim=8,
        num_layers=1,
        num_heads=2,
        mlp_dim=8,
        num_prefix=prefix,
        pooling=pooling,
        seed=0,
    )
    x = RNG.random((2, 32, 64, 3)).astype(np.float32)
    for method in ("gradcam", "generic_attention", "attention_rollout"):
        e = xai.explain(model, x, method)
        assert e.raw[0].shape == (2, 4, 8), method
        assert e.heatmap.shape == (2, 32, 64)
        assert np.isfinite(e.raw[0]).all() and e.raw[0].any()


def test_unmappable_tokens_error_and_token_grid_override():
    inputs = keras.Input((30, 30, 3))
    x = keras.layers.Conv2D(8, 6, strides=6)(inputs)  # 5x5 patches
    x = keras.layers.Reshape((25, 8))(x)
    x = keras.layers.Dense(8, name="tokens")(x[:, :21])  # 21 tokens: no grid of this image
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, out)
    img = RNG.random((1, 30, 30, 3)).astype(np.float32)
    with pytest.raises(ModelStructureError, match="token_grid"):
        xai.explain(model, img, "gradcam", layer="tokens")
    e = xai.explain(model, img, "gradcam", layer="tokens", token_grid=(3, 7))
    assert e.raw[0].shape == (1, 3, 7)
    with pytest.raises(ModelStructureError, match="attention"):
        xai.explain(model, img, "attention_rollout")


def test_attention_port_errors(small_vit, images):
    with pytest.raises(ModelStructureError, match="MultiHeadAttention"):
        xai.tap(small_vit, "block0_norm1:attention")
    with pytest.raises(ModelStructureError, match="not a feature map"):
        xai.explain(small_vit, images, "gradcam", layer="block0_attention:attention")
    with pytest.raises(ModelStructureError, match="Ablation-CAM"):
        xai.explain(small_vit, images, "ablationcam")


def test_cnn_with_an_attention_head_keeps_its_feature_map():
    """Attention over tokens that are not the image's patches (8 rows of an 8x8 map) is not a
    ViT: the CAM layer stays the last dominating feature map."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(inputs)
    t = keras.layers.Reshape((8, 64))(x)
    t = keras.layers.MultiHeadAttention(2, 4, name="attention")(t, t)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(t))
    assert xai.auto_layer(keras.Model(inputs, out)) == "conv"


def test_attribution_at_a_port_is_refused_clearly(small_vit, images):
    with pytest.raises(ModelStructureError, match="not a port"):
        xai.explain(small_vit, images, "integrated_gradients", layer="block1_attention:input")
