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
