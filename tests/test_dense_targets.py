"""Region, box and D-RISE targets (xai.dense_targets): scores, every method, freezing, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import xai
from xai import boxes, testing
from xai.dense_targets import drise_similarity
from xai.errors import XaiError, XaiValueError

FAST = {
    "rise": {"num_masks": 16},
    "integrated_gradients": {"num_steps": 4},
    "smoothgrad": {"num_samples": 3},
    "smoothgrad_squared": {"num_samples": 3},
    "vargrad": {"num_samples": 3},
    "occlusion": {"window": 4, "stride": 4},
    "scorecam": {"max_channels": 2},
}


@pytest.fixture(scope="module")
def seg():
    return testing.segmentation_model((16, 16, 3), 3, seed=2)


@pytest.fixture(scope="module")
def strided_seg():
    """Output on an 8x8 grid for 16x16 inputs (the mask must be resized), softmax head."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv1")(
        inputs
    )
    out = keras.layers.Conv2D(3, 1, activation="softmax", name="seg")(x)
    return keras.Model(inputs, out)


@pytest.fixture(scope="module")
def x16():
    return testing.random_images(3, seed=11)


def _logits(model, x):
    return xai.logits_model(model)(x).numpy()


def _kwargs(name):
    layer = "conv2" if xai.methods.available()[name].needs_layer else None
    return {"layer": layer, "seed": 0, **FAST.get(name, {})}


def test_region_score_is_the_masked_class_logit_sum(seg, x16):
    mask = np.zeros((16, 16), bool)
    mask[2:7, 3:12] = True
    e = xai.explain(seg, x16, "saliency", targets=xai.targets.region(2, mask))
    z = _logits(seg, x16)
    np.testing.assert_allclose(e.scores, z[:, 2:7, 3:12, 2].sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(e.targets, [2, 2, 2])
    assert e.target == {"kind": "region", "class_index": [2, 2, 2], "mask": "given"}
    assert e.probabilities is None and e.predictions.shape == (3, 16, 16)


def test_region_mask_is_area_resized_to_the_output_grid(strided_seg, x16):
    mask = np.zeros((16, 16), np.float32)
    mask[0:3, 0:4] = 1.0  # covers 2x2 output cells fully, and half of the cells of row 1
    e = xai.explain(strided_seg, x16, "saliency", targets=xai.targets.region(1, mask))
    z = _logits(strided_seg, x16)[..., 1]
    weights = mask.reshape(8, 2, 8, 2).mean(axis=(1, 3))  # area averaging
    np.testing.assert_allclose(e.scores, (z * weights).sum(axis=(1, 2)), rtol=1e-5)
    same_grid = xai.explain(strided_seg, x16, "saliency", targets=xai.targets.region(1, weights))
    np.testing.assert_allclose(same_grid.attributions, e.attributions, rtol=1e-5, atol=1e-8)


def test_region_without_mask_is_the_models_own_class_pixels(seg, x16):
    z = _logits(seg, x16)
    own = z.argmax(-1) == 1
    e = xai.explain(seg, x16, "saliency", targets=xai.targets.region(1))
    np.testing.assert_allclose(e.scores, (z[..., 1] * own).sum(axis=(1, 2)), rtol=1e-5)
    assert e.target["mask"] == "predicted"
    # the argmax mask is frozen: the gradient is that of the fixed mask
    fixed = xai.explain(seg, x16, "saliency", targets=xai.targets.region(1, own))
    np.testing.assert_allclose(e.attributions, fixed.attributions, rtol=1e-5, atol=1e-8)


# every method but the attention family, which needs a transformer's attention layers
CNN_METHODS = sorted(n for n, m in xai.methods.available().items() if m.family != "attention")


@pytest.mark.parametrize("name", CNN_METHODS)
def test_every_method_accepts_a_region_target(seg, x16, name):
    """A full mask equals the callable sum of the class logits; mask=None equals the clean
    input's argmax mask passed explicitly (frozen, not moved by noise or perturbation)."""
    kwargs = _kwargs(name)
    full = xai.explain(seg, x16, name, targets=xai.targets.region(1, np.ones((16, 16))), **kwargs)
    by_fn = xai.explain(
        seg, x16, name, targets=lambda z: tf.reduce_sum(z[..., 1], axis=(1, 2)), **kwargs
    )
    np.testing.assert_allclose(full.attributions, by_fn.attributions, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(full.scores, by_fn.scores, rtol=1e-5)
    assert np.isfinite(full.attributions).all() and np.abs(full.attributions).max() > 0
    own = _logits(seg, x16).argmax(-1) == 1
    auto = xai.explain(seg, x16, name, targets=xai.targets.region(1), **kwargs)
    fixed = xai.explain(seg, x16, name, targets=xai.targets.region(1, own), **kwargs)
    np.testing.assert_allclose(auto.attributions, fixed.attributions, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["gradcam", "saliency", "occlusion", "integrated_gradients"])
def test_per_sample_masks_are_batch_invariant(seg, x16, name):
    rng = np.random.default_rng(0)
    masks = rng.random((3, 16, 16)) > 0.6
    classes = [0, 2, 1]
    kwargs = _kwargs(name)
    together = xai.explain(seg, x16, name, targets=xai.targets.region(classes, masks), **kwargs)
    one_by_one = xai.explain(
        seg, x16, name, targets=xai.targets.region(classes, masks), batch_size=1, **kwargs
    )
    np.testing.assert_allclose(together.attributions, one_by_one.attributions, rtol=1e-4, atol=1e-6)
    single = xai.explain(seg, x16[1], name, targets=xai.targets.region(2, masks[1]), **kwargs)
    np.testing.assert_allclose(
        together.attributions[1:2], single.attributions, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_array_equal(together.targets, classes)


def test_one_compiled_step_serves_every_mask(seg, x16):
    explainer = xai.Explainer(seg, layer="conv2")
    rng = np.random.default_rng(1)
    explainer.explain(x16, "gradcam", targets=xai.targets.region(1, rng.random((16, 16)) > 0.5))
    traces = explainer.engine(True).trace_count
    for k in range(3):
        explainer.explain(
            x16[:2], "gradcam", targets=xai.targets.region(k, rng.random((2, 16, 16)))
        )
    assert explainer.engine(True).trace_count == traces


def test_an_int_target_on_a_dense_output_is_its_region(seg, x16):
    by_int = xai.explain(seg, x16, "saliency", targets=2)
    by_region = xai.explain(seg, x16, "saliency", targets=xai.targets.region(2))
    np.testing.assert_array_equal(by_int.attributions, by_region.attributions)


def test_the_model_is_unchanged(seg, x16):
    before = testing.model_fingerprint(seg)
    predicted = seg.predict(x16, verbose=0)
    for name in ("gradcam", "guided_backprop", "ablationcam"):
        xai.explain(seg, x16, name, targets=xai.targets.region(1), **_kwargs(name))
    testing.assert_model_unchanged(seg, before, x16, predicted)


# ------------------------------------------------------------------------------ boxes, D-RISE


def test_anchor_matching_threshold_and_low_quality_fallback():
    anchors = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    w = boxes.anchor_weights(anchors, np.array([[0, 0, 10, 10]]), 0.3)
    np.testing.assert_array_equal(w, [[1, 1, 0]])  # IoU 1 and 1/3
    w = boxes.anchor_weights(anchors, np.array([[0, 0, 10, 10]]), 0.5)
    np.testing.assert_array_equal(w, [[1, 0, 0]])
    w = boxes.anchor_weights(anchors, np.array([[18, 18, 24, 24]]), 0.5)  # best IoU 16/120
    np.testing.assert_array_equal(w, [[0, 0, 1]])


def test_box_score_sums_the_matched_anchors_class_logits():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=4, padding="same", activation="relu", name="feat")(inputs)
    logits = keras.layers.Reshape((16, 2), name="cls_logits")(keras.layers.Conv2D(2, 1)(x))
    model = keras.Model(inputs, logits)
    anchors = boxes.shapes_anchors(16, 4, (4,))  # one 4x4 anchor per 4x4 cell
    x16 = testing.random_images(2, seed=4)
    target = xai.targets.box([4, 0, 12, 4], 1, anchors=anchors, iou_threshold=0.5)
    e = xai.explain(model, x16, "saliency", targets=target)
    z = model(x16).numpy()
    np.testing.assert_allclose(e.scores, z[:, 1, 1] + z[:, 2, 1], rtol=1e-5)
    assert e.target["matched_anchors"] == [2, 2] and e.target["kind"] == "box"


def test_drise_score_is_the_papers_definition_on_a_hand_made_example():
    """Petsiuk et al. 2021: s = IoU(L_t, L_j) * O_j * cos(P_t, P_j), max over detections j."""
    detections = np.array(
        [
            [
                [0, 0, 10, 10, 0.5, 0.0, 1.0, 0.0],  # same box, O=0.5, same class: 0.5
                [5, 0, 15, 10, 1.0, 0.6, 0.8, 0.0],  # IoU 1/3, O=1, cos 0.8: 0.2667
                [0, 0, 10, 10, 1.0, 1.0, 0.0, 0.0],  # same box, other class: 0
            ],
            [
                [0, 0, 10, 10, 0.5, 0.0, 1.0, 0.0],
                [5, 0, 15, 10, 1.0, 0.6, 0.8, 0.0],
                [40, 40, 50, 50, 1.0, 0.0, 1.0, 0.0],  # far away
            ],
        ],
        np.float32,
    )
    target_boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    vectors = np.array([[0, 1, 0], [0, 1, 0]], np.float32)
    got = drise_similarity(tf.constant(detections), tf.constant(target_boxes), tf.constant(vectors))
    # sample 1: detection 0 has IoU 1/3 with (5, 0, 15, 10): 1/3 * 0.5 * 1; detection 1: 1 * 0.8
    np.testing.assert_allclose(got.numpy(), [0.5, 0.8], rtol=1e-6)

    # the same through xai.explain on a model whose output is those detections (times the input)
    inputs = keras.Input((1,))
    out = keras.layers.Lambda(lambda v: v[:, :, None] * tf.constant(detections[0:1]))(inputs)
    model = keras.Model(inputs, keras.layers.Reshape((3, 8))(out))
    e = xai.explain(
        model, np.ones((1, 1), np.float32), "saliency", targets=xai.targets.drise([5, 0, 15, 10], 1)
    )
    # detections of image 0 against (5, 0, 15, 10): 1/3 * 0.5 * 1, 1 * 1 * 0.8, 1/3 * 1 * 0
    np.testing.assert_allclose(e.scores, [max(1 / 6, 0.8, 0.0)], rtol=1e-5)
    assert e.target == {"kind": "drise", "box": [[5.0, 0.0, 15.0, 10.0]], "class_index": [1]}


# ------------------------------------------------------------------------------ errors


@pytest.fixture(scope="module")
def tiny_detector():
    return boxes.shapes_detector(32, 3, 1)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: xai.targets.region(1, np.ones((5, 7))), r"mask.*input image \(16, 16\).*grid"),
        (lambda: xai.targets.region(1, np.ones((2, 16, 16))), r"mask.*one per image \(3 images\)"),
        (lambda: xai.targets.region(3), r"class indices in \[0, 2\].*Received: class_index=3"),
        (lambda: xai.targets.region(-1, np.ones((16, 16))), r"class indices in \[0, 2\]"),
        (lambda: xai.targets.region(1.5), r"class_index.*int"),
        (lambda: xai.targets.region(1, -np.ones((16, 16))), r"mask.*non-negative"),
        (lambda: None, r"dense output.*no single predicted class"),
        (lambda: xai.targets.drise([0, 0, 4, 4], 0), r"D-RISE target needs an output of decoded"),
    ],
)
def test_bad_region_targets_get_clear_errors(seg, x16, make, match):
    with pytest.raises(XaiError, match=match):
        xai.explain(seg, x16, "saliency", targets=make())


def test_a_classifier_given_a_region_target_is_told_to_use_a_class_index(cnn, images):
    with pytest.raises(XaiValueError, match=r"region target needs a dense output.*targets=<class"):
        xai.explain(cnn, images, "gradcam", targets=xai.targets.region(1))


@pytest.mark.parametrize(
    "box, kwargs, match",
    [
        ([10, 10, 40, 20], {}, r"box inside the image.*x1 <= 32.*Received: box=\[10.0, 10.0, 40.0"),
        ([-2, 0, 8, 8], {}, r"box inside the image"),
        ([8, 8, 4, 12], {}, r"x0 < x1 and y0 < y1"),
        ([0, 0, 8], {}, r"\(x0, y0, x1, y1\)"),
        ([0, 0, 8, 8], {"anchors": None}, r"`anchors` must be given.*retinanet_anchors"),
        ([0, 0, 8, 8], {"anchors": np.zeros((5, 4))}, r"one anchor per output position \(16"),
        ([0, 0, 8, 8], {"class_index": 3}, r"class indices in \[0, 2\]"),
        ([0, 0, 8, 8], {"iou_threshold": 0.0}, r"iou_threshold.*\(0, 1\]"),
    ],
)
def test_bad_box_targets_get_clear_errors(tiny_detector, box, kwargs, match):
    anchors = boxes.shapes_anchors(32, 8, (8,))
    args = {"anchors": anchors, "class_index": 1, **kwargs}
    target = xai.targets.box(box, args.pop("class_index"), **args)
    with pytest.raises(XaiValueError, match=match):
        xai.explain(
            tiny_detector,
            testing.random_images(1, (32, 32, 3)),
            "saliency",
            targets=target,
            output="cls_logits",
        )


def test_a_single_sigmoid_channel_map_has_classes_minus_z_and_z(x16):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    binary = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(h))
    mask = np.zeros((16, 16), bool)
    mask[:8] = True
    z = _logits(binary, x16)[..., 0]
    one = xai.explain(binary, x16, "saliency", targets=xai.targets.region(1, mask))
    zero = xai.explain(binary, x16, "saliency", targets=xai.targets.region(0, mask))
    np.testing.assert_allclose(one.scores, z[:, :8].sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(zero.scores, -one.scores, rtol=1e-6)
    np.testing.assert_allclose(zero.attributions, -one.attributions, rtol=1e-6)
    auto = xai.explain(binary, x16, "saliency", targets=xai.targets.region(0))
    np.testing.assert_allclose(auto.scores, -(z * (z < 0)).sum(axis=(1, 2)), rtol=1e-5)


def test_the_explain_callback_takes_a_region_target(seg, x16, tmp_path):
    from xai.callbacks import ExplainCallback

    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    callback = ExplainCallback(
        x16[:2], method="saliency", targets=xai.targets.region(1, mask), output_dir=tmp_path
    )
    callback.set_model(seg)
    callback.on_epoch_end(0)
    callback.on_train_end()
    expected = xai.explain(seg, x16[:2], "saliency", targets=xai.targets.region(1, mask))
    assert callback.latest.target == expected.target
    np.testing.assert_allclose(callback.latest.attributions, expected.attributions, rtol=1e-5)
