"""keras-hub models built from config (no download): layers inside layers are reachable.

keras-hub's ``ViTEncoder`` runs its transformer blocks in a Python loop inside one layer, so the
blocks are not nodes of the Keras graph; xai reaches them by tracing the encoder's ``call()``.
The values are checked against the same layers called eagerly, one after the other.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

import xai
from xai import testing

keras_hub = pytest.importorskip("keras_hub", reason="the hub extra: pip install -e '.[hub]'")

ENCODER = "vi_t_backbone/vit_encoder"


@pytest.fixture(scope="module")
def vit():
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3)


def _sublayer(layer, name):
    return next(
        s for s in layer._flatten_layers(include_self=False, recursive=False) if s.name == name
    )


def test_one_tensorflow_distribution():
    names = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert len(names & {"tensorflow", "tensorflow-cpu", "tensorflow-intel"}) == 1, names


def test_transformer_blocks_inside_the_encoder_are_tappable(vit):
    paths = xai.layer_paths(vit)
    for p in [f"{ENCODER}/transformer_block_1", f"{ENCODER}/transformer_block_2/ln_1"]:
        assert p in paths
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    before = testing.model_fingerprint(vit)
    predict_before = vit.predict(x, verbose=0)
    t = xai.tap(vit, [f"{ENCODER}/transformer_block_1", f"{ENCODER}/transformer_block_2/ln_1"])
    z, block1, ln1 = (np.asarray(v) for v in t(x))
    # The same layers, called eagerly one after the other (no graph, no xai).
    backbone = vit.get_layer("vi_t_backbone")
    encoder = backbone.get_layer("vit_encoder")
    h = backbone.get_layer("vit_patching_and_embedding")(x)
    h1 = _sublayer(encoder, "transformer_block_1")(h, training=False)
    ref_ln = _sublayer(_sublayer(encoder, "transformer_block_2"), "ln_1")(h1)
    np.testing.assert_allclose(block1, np.asarray(h1), atol=1e-6)
    np.testing.assert_allclose(ln1, np.asarray(ref_ln), atol=1e-6)
    np.testing.assert_allclose(z, np.asarray(vit(x, training=False)), atol=1e-5)  # linear head
    testing.assert_model_unchanged(vit, before, x, predict_before)


# --------------------------------------------------------------------------- issue 16: ViTs
X32 = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")


def test_keras_hub_vit_default_layer_and_attention_match_eager(vit):
    """The default CAM layer is the last block's attention input; the captured attention is the
    one the fused layer computes (checked against the block's own MHA called eagerly)."""
    before = testing.model_fingerprint(vit)
    predict_before = vit.predict(X32, verbose=0)
    e = xai.explain(vit, X32, "gradcam")
    assert e.layer == (f"{ENCODER}/transformer_block_2/mha:input",)
    assert e.raw[0].shape == (2, 4, 4) and e.raw[0].any()
    t = xai.tap(vit, [f"{ENCODER}/transformer_block_1/mha:attention"])
    logits, attention = (np.asarray(v) for v in t(X32))
    np.testing.assert_allclose(logits, np.asarray(xai.logits_model(vit)(X32)), atol=1e-5)
    backbone = vit.get_layer("vi_t_backbone")
    block = _sublayer(backbone.get_layer("vit_encoder"), "transformer_block_1")
    tokens = _sublayer(block, "ln_1")(backbone.get_layer("vit_patching_and_embedding")(X32))
    _, eager = _sublayer(block, "mha")(tokens, tokens, return_attention_scores=True)
    np.testing.assert_allclose(attention, np.asarray(eager), atol=1e-6)
    for method in ("attention_rollout", "generic_attention"):
        m = xai.explain(vit, X32, method)
        assert m.raw[0].shape == (2, 4, 4) and np.isfinite(m.raw[0]).all() and m.raw[0].any()
    testing.assert_model_unchanged(vit, before, X32, predict_before)


def test_dinov2_registers():
    import keras

    keras.utils.set_random_seed(0)
    dino = keras_hub.models.DINOV2Backbone(
        patch_size=8, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32,
        num_register_tokens=4, image_shape=(32, 32, 3),
    )  # fmt: skip
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(dino(inputs)[:, 0]))  # a user's head
    for method in ("gradcam", "generic_attention"):
        e = xai.explain(model, X32, method)
        assert e.raw[0].shape == (2, 4, 4), method  # 21 tokens = class + 4 registers + 4x4
        assert e.raw[0].any()


# keras-hub's Swin warns from inside its own layers (an "unbuilt state" notice while it builds, a
# mask notice from its WindowAttention whenever it is traced): not ours to fix.
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_swin_tokens():
    swin = _swin()
    e = xai.explain(swin, X32, "gradcam")
    assert e.raw[0].shape == (2, 4, 4) and e.heatmap.shape == (2, 32, 32)
    with pytest.raises(xai.ModelStructureError, match="MultiHeadAttention"):
        xai.explain(swin, X32, "attention_rollout")


def _swin():
    return keras_hub.models.SwinTransformerImageClassifier(
        backbone=keras_hub.models.SwinTransformerBackbone(
            image_shape=(32, 32, 3), embed_dim=16, depths=(2, 2), num_heads=(2, 2),
            window_size=4, patch_size=4,
        ),
        num_classes=3,
    )  # fmt: skip
