"""Dense targets on keras-hub architectures built from config (no download): DeepLabV3 checked
against an eager ``tf.GradientTape`` reference, RetinaNet's raw outputs explained by a box."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import xai
from xai import boxes, testing

keras_hub = pytest.importorskip("keras_hub", reason="the hub extra: pip install -e '.[hub]'")


def _resnet(size: int):
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16],
        stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(size, size, 3),
    )


@pytest.fixture(scope="module")
def deeplab():
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=_resnet(32),
        spatial_pyramid_pooling_key="P4",
        upsampling_size=2,
        dilation_rates=[1, 2],
        low_level_feature_key="P3",
        image_shape=(32, 32, 3),
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)


def test_deeplab_region_saliency_and_gradcam_match_an_eager_tape(deeplab):
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    mask = np.zeros((32, 32), np.float32)
    mask[4:20, 8:30] = 1.0
    before = testing.model_fingerprint(deeplab)
    predicted = deeplab.predict(x, verbose=0)
    target = xai.targets.region(2, mask)
    sal = xai.explain(deeplab, x, "saliency", targets=target)
    layer = "deep_lab_v3_backbone/segmentation_head_relu"
    cam = xai.explain(deeplab, x, "gradcam", targets=target, layer=layer)
    testing.assert_model_unchanged(deeplab, before, x, predicted)

    # Reference: the Keras model (linear head) and an eager tape of the masked logit sum.
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = tf.reduce_sum(deeplab(xt, training=False)[..., 2] * mask, axis=(1, 2))
    np.testing.assert_allclose(sal.scores, score.numpy(), rtol=1e-4)
    g = tape.gradient(score, xt).numpy()
    np.testing.assert_allclose(sal.attributions, g, rtol=1e-3, atol=1e-5 * np.abs(g).max())

    backbone = deeplab.get_layer("deep_lab_v3_backbone")
    import keras

    to_head = keras.Model(backbone.input, backbone.get_layer("segmentation_head_relu").output)
    upsample = backbone.get_layer("backbone_output_upsampling")
    with tf.GradientTape() as tape:
        a = to_head(xt, training=False)
        tape.watch(a)
        z = deeplab.get_layer("segmentation_output")(upsample(a))
        score = tf.reduce_sum(z[..., 2] * mask, axis=(1, 2))
    grads = tape.gradient(score, a).numpy()
    expected = (grads.mean(axis=(1, 2), keepdims=True) * a.numpy()).sum(axis=-1)
    np.testing.assert_allclose(
        cam.attributions, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max()
    )


@pytest.mark.slow
def test_retinanet_box_target_and_drise_smoke():
    import keras

    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=_resnet(64), min_level=3, max_level=4, use_p5=False, image_shape=(64, 64, 3)
    )
    det = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=3, pre_logits_num_conv_layers=1
    )
    anchors = boxes.retinanet_anchors(det)
    assert anchors.shape == (720, 4)  # 8x8 + 4x4 cells, 9 anchors each
    x = np.random.default_rng(1).random((1, 64, 64, 3)).astype("float32") * 255
    target = xai.targets.box([8, 8, 40, 30], 2, anchors=anchors)
    e = xai.explain(det, x, "saliency", targets=target, output="cls_logits")
    z = np.asarray(det(x)["cls_logits"])
    w = boxes.anchor_weights(anchors, np.array([[8, 8, 40, 30]]), 0.5)[0]
    np.testing.assert_allclose(e.scores, [(z[0, :, 2] * w).sum()], rtol=1e-4)
    assert e.attributions.shape == x.shape and np.abs(e.attributions).max() > 0
    detections = boxes.detections_model(det, anchors)
    r = xai.explain(
        detections, x, "rise", targets=xai.targets.drise([8, 8, 40, 30], 2), num_masks=8, seed=0
    )
    assert r.attributions.shape == (1, 64, 64) and np.isfinite(r.attributions).all()
