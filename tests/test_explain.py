"""explain(): Grad-CAM, saliency and SmoothGrad against analytic references; invariances."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import xai
from xai import testing
from xai.errors import ModelStructureError, XaiValueError


def test_gradcam_equals_cam_on_gap_dense_head(cnn, images):
    """For GAP -> Dense, Grad-CAM weights are W[:, c] / (H*W): Grad-CAM = CAM (Zhou et al.) / HW."""
    e = xai.explain(cnn, images, "gradcam", layer="last_conv")
    feats = np.asarray(keras.Model(cnn.inputs[0], cnn.get_layer("last_conv").output)(images))
    w = cnn.get_layer("predictions").kernel.numpy()
    cam = np.einsum("nhwc,cn->nhw", feats, w[:, e.targets])
    np.testing.assert_allclose(e.attributions, cam / (16 * 16), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(e.targets, np.asarray(cnn(images)).argmax(1))


def _textbook_gradcam(model, layer, x, cls):
    """The textbook recipe, written independently: gradient of the pre-softmax logit."""
    inner = keras.Model(
        model.inputs[0], [model.get_layer(layer).output, model.get_layer("flatten").output]
    )
    dense = model.get_layer("predictions")
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        a, flat = inner(x)
        tape.watch(a)
        a2 = a  # logits recomputed from A through the rest of the network by hand
        pooled = keras.layers.MaxPooling2D()(tf.nn.relu(model.get_layer("bn")(a2, training=False)))
        logits = tf.matmul(tf.reshape(pooled, (x.shape[0], -1)), dense.kernel) + dense.bias
        score = tf.gather(logits, cls, batch_dims=1)
    g = tape.gradient(score, a2).numpy()
    weights = g.mean(axis=(1, 2), keepdims=True)
    return (weights * a.numpy()).sum(-1)


def test_gradcam_matches_textbook_on_bn_cnn():
    model = testing.bn_cnn()
    x = testing.random_images(5, seed=7)
    e = xai.explain(model, x, "gradcam", layer="conv")
    ref = _textbook_gradcam(model, "conv", x, e.targets)
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-6)
    heat = e.heatmap
    assert heat.shape == (5, 16, 16) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1


def test_saliency_of_linear_model_is_weight_column():
    model = testing.linear_model()
    x = testing.random_images(4, (6,), seed=3)
    w = model.get_layer("predictions").kernel.numpy()
    for cls in range(3):
        e = xai.explain(model, x, "saliency", targets=cls)
        np.testing.assert_array_equal(e.attributions, np.repeat(w[:, cls][None], 4, axis=0))
    e = xai.explain(model, x, "saliency", targets=[0, 1, 2, 0])
    np.testing.assert_array_equal(e.attributions, w[:, [0, 1, 2, 0]].T)


def test_smoothgrad_zero_noise_equals_saliency(cnn, images):
    s = xai.explain(cnn, images, "saliency")
    sg = xai.explain(cnn, images, "smoothgrad", noise_level=0.0, num_samples=3, seed=0)
    np.testing.assert_allclose(sg.attributions, s.attributions, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(sg.targets, s.targets)
    np.testing.assert_allclose(sg.scores, s.scores, rtol=1e-6)


def test_smoothgrad_seed_and_parameters(cnn, images):
    a = xai.explain(cnn, images, "smoothgrad", num_samples=4, seed=5).attributions
    b = xai.explain(cnn, images, "smoothgrad", num_samples=4, seed=5).attributions
    c = xai.explain(cnn, images, "smoothgrad", num_samples=4, seed=6).attributions
    d = xai.explain(cnn, images, "smoothgrad", num_samples=5, seed=5).attributions
    f = xai.explain(cnn, images, "smoothgrad", num_samples=4, seed=5, noise_level=0.3).attributions
    np.testing.assert_array_equal(a, b)
    for other in (c, d, f):
        assert np.abs(a - other).max() > 1e-6
    sq = xai.explain(
        cnn, images, "smoothgrad", num_samples=4, seed=5, aggregate="mean_squared"
    ).attributions
    var = xai.explain(
        cnn, images, "smoothgrad", num_samples=4, seed=5, aggregate="variance"
    ).attributions
    np.testing.assert_allclose(var, np.maximum(sq - a**2, 0), rtol=1e-4, atol=1e-10)
    assert (sq >= 0).all() and (var >= 0).all()


def test_smoothgrad_seed_recorded(cnn, images):
    e = xai.explain(cnn, images[:2], "smoothgrad", num_samples=2)
    again = xai.explain(cnn, images[:2], "smoothgrad", num_samples=2, seed=e.params["seed"])
    np.testing.assert_array_equal(e.attributions, again.attributions)


@pytest.mark.parametrize(
    "method, params",
    [("gradcam", {}), ("saliency", {}), ("smoothgrad", {"num_samples": 3, "seed": 1})],
)
def test_batch_invariance(method, params, cnn, images):
    whole = xai.explain(cnn, images, method, **params)
    singles = np.concatenate(
        [xai.explain(cnn, images[i], method, **params).attributions for i in range(8)]
    )
    np.testing.assert_allclose(whole.attributions, singles, rtol=1e-5, atol=1e-7)
    small = xai.explain(cnn, images, method, batch_size=3, **params)
    np.testing.assert_allclose(whole.attributions, small.attributions, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(whole.targets, small.targets)


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_explicit_target_equals_predicted(method, cnn, images):
    default = xai.explain(cnn, images, method)
    explicit = xai.explain(cnn, images, method, targets=list(np.asarray(cnn(images)).argmax(1)))
    np.testing.assert_array_equal(default.attributions, explicit.attributions)
    other = xai.explain(cnn, images, method, targets=(default.targets + 1) % 4)
    assert np.abs(other.attributions - default.attributions).max() > 0


def test_callable_target(cnn, images):
    e = xai.explain(cnn, images, "gradcam", targets=lambda z: z[:, 2] - z[:, 0])
    a = xai.explain(cnn, images, "gradcam", targets=2).attributions
    b = xai.explain(cnn, images, "gradcam", targets=0).attributions
    np.testing.assert_allclose(e.attributions, a - b, rtol=1e-5, atol=1e-7)
    assert (e.targets == -1).all()
    z = np.asarray(xai.logits_model(cnn)(images))
    np.testing.assert_allclose(e.scores, z[:, 2] - z[:, 0], rtol=1e-5)


def test_binary_single_logit_negative_class_is_not_empty(images):
    model = testing.functional_cnn(num_classes=1, head="sigmoid")
    pos = xai.explain(model, images, "gradcam", targets=1)
    neg = xai.explain(model, images, "gradcam", targets=0)
    np.testing.assert_allclose(neg.attributions, -pos.attributions, rtol=1e-6, atol=1e-9)
    assert neg.heatmap.max() == pytest.approx(1.0)
    p = np.asarray(model(images))[:, 0]
    np.testing.assert_allclose(neg.probabilities[:, 0], 1 - p, rtol=1e-5)
    pred = xai.explain(model, images, "saliency")
    np.testing.assert_array_equal(pred.targets, (p > 0.5).astype(int))


def test_multi_input_gives_one_cam_per_branch():
    model = testing.two_input_model()
    left = testing.random_images(3, (16, 16, 3), seed=3)
    right = testing.random_images(3, (12, 12, 1), seed=4)
    e = xai.explain(model, [left, right], "gradcam")
    a, b = e.attributions
    assert a.shape == (3, 14, 14) and b.shape == (3, 10, 10)
    ha, hb = e.heatmap
    assert ha.shape == (3, 16, 16) and hb.shape == (3, 12, 12)
    s = xai.explain(model, [left, right], "saliency")
    assert s.attributions[0].shape == left.shape and s.attributions[1].shape == right.shape
    assert e.overlay(input_index=1).shape == (3, 12, 12, 3)


def test_conv1d_and_conv3d_maps(cnn1d):
    x = testing.random_images(4, (20, 1))
    e = xai.explain(cnn1d, x, "gradcam")
    assert e.attributions.shape == (4, 16) and e.heatmap.shape == (4, 20)
    with pytest.raises(xai.XaiValueError, match="overlay\\(\\) needs 2-D image"):
        e.overlay()
    assert e.plot(0) is not None
    m3 = testing.conv3d_model()
    v = testing.random_images(2, (8, 12, 12, 1))
    e3 = xai.explain(m3, v, "gradcam")
    assert e3.attributions.shape == (2, 6, 10, 10) and e3.heatmap.shape == (2, 8, 12, 12)
    s3 = xai.explain(m3, v, "saliency")
    assert s3.heatmap.shape == (2, 8, 12, 12)


def test_channels_first():
    model = testing.channels_first_cnn()
    x = testing.random_images(2, (3, 16, 16))
    e = xai.explain(model, x, "gradcam")
    feats = np.asarray(
        keras.Model(model.inputs[0], model.get_layer("last_conv").output)(x)
    )  # (2,5,14,14)
    w = model.get_layer("predictions").kernel.numpy()
    cam = np.einsum("nchw,cn->nhw", feats, w[:, e.targets]) / (14 * 14)
    np.testing.assert_allclose(e.attributions, cam, rtol=1e-5, atol=1e-7)
    assert e.heatmap.shape == (2, 16, 16)
    assert xai.explain(model, x, "saliency").heatmap.shape == (2, 16, 16)


def test_frozen_model_still_gets_gradients(images):
    model = testing.functional_cnn(seed=3)
    model.trainable = False
    e = xai.explain(model, images, "gradcam")
    assert np.abs(e.attributions).max() > 0


def test_mixed_precision_maps_are_float32(images):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = testing.functional_cnn(seed=4)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    e = xai.explain(model, images, "gradcam")
    assert e.attributions.dtype == np.float32 and np.isfinite(e.attributions).all()
    ref = xai.explain(model, images, "gradcam", targets=e.targets)
    np.testing.assert_allclose(e.attributions, ref.attributions)


def test_model_unchanged_after_explaining(images):
    model = testing.nested_backbone(kind="sequential")
    before = testing.model_fingerprint(model)
    out_before = model.predict(images, verbose=0)
    for method in ("gradcam", "saliency", "smoothgrad"):
        xai.explain(
            model, images, method, num_samples=2, seed=0
        ) if method == "smoothgrad" else xai.explain(model, images, method)
    after = testing.model_fingerprint(model)
    for a, b in zip(before["weights"], after["weights"]):
        np.testing.assert_array_equal(a, b)
    assert before["configs"] == after["configs"] and before["activations"] == after["activations"]
    np.testing.assert_array_equal(out_before, model.predict(images, verbose=0))


def test_partial_batches_do_not_retrace(cnn):
    explainer = xai.Explainer(cnn)
    x = testing.random_images(10, seed=9)
    explainer.explain(x, "gradcam", batch_size=4)  # batches of 4, 4, 2
    explainer.explain(x[:3], "gradcam", batch_size=4)
    assert explainer.engine(True).trace_count == 1
    explainer.explain(x, "smoothgrad", batch_size=4, num_samples=2, seed=0)
    explainer.explain(x, "saliency", batch_size=7)
    # one input-gradient step and one forward step, each traced once
    assert explainer.engine(False).trace_count == 2


def test_jit_compile_gives_the_same_gradcam(cnn, images):
    plain = xai.explain(cnn, images, "gradcam", jit_compile=False)
    jit = xai.explain(cnn, images, "gradcam", jit_compile=True)
    np.testing.assert_allclose(jit.attributions, plain.attributions, rtol=1e-4, atol=1e-6)


def test_several_layers_are_fused(cnn, images):
    e = xai.explain(cnn, images, "gradcam", layer=["conv1", "last_conv"])
    assert e.layer == ("conv1", "last_conv")
    assert set(e.layer_maps) == {"conv1", "last_conv"}
    one = xai.explain(cnn, images, "gradcam", layer="conv1").heatmap
    two = xai.explain(cnn, images, "gradcam", layer="last_conv").heatmap
    from xai.postprocess import normalize

    np.testing.assert_allclose(
        e.heatmap, normalize((normalize(one) + normalize(two)) / 2), atol=1e-5
    )


def test_uint8_and_preprocess(cnn, images_uint8):
    as_float = xai.explain(cnn, images_uint8.astype(np.float32) / 255.0, "gradcam")
    pre = xai.explain(
        cnn, images_uint8, "gradcam", preprocess=lambda b: b.astype(np.float32) / 255.0
    )
    np.testing.assert_allclose(pre.attributions, as_float.attributions, rtol=1e-6)
    # the overlay is drawn on the original uint8 pixels
    np.testing.assert_array_equal(pre.overlay(alpha=0.0), images_uint8)


# ------------------------------------------------------- wrong layers and targets fail early
@pytest.mark.parametrize("layer", ["gap", "predictions"])
def test_a_layer_without_spatial_axes_is_refused_at_the_call(cnn, images, layer):
    with pytest.raises(
        ModelStructureError, match=f"layer='{layer}' with output shape .* no spatial"
    ):
        xai.explain(cnn, images[:2], "gradcam", layer=layer)


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_a_flattened_target_score_is_refused(cnn, images, method):
    with pytest.raises(XaiValueError, match="one score per sample.*8 scores for a batch of 2"):
        xai.explain(cnn, images[:2], method, targets=lambda z: tf.reshape(z, (-1,)))


def test_a_target_callable_returning_none_is_refused(cnn, images):
    with pytest.raises(XaiValueError, match="Received: None"):
        xai.explain(cnn, images[:2], "gradcam", targets=lambda z: None)


def test_save_onto_a_file_is_refused_and_writes_nothing(cnn, images, tmp_path):
    e = xai.explain(cnn, images[:2], "gradcam")
    target = tmp_path / "taken"
    target.write_text("mine", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="`directory` must be a folder.*it is a file"):
        e.save(target)
    assert target.read_text(encoding="utf-8") == "mine"


def test_save_is_all_or_nothing(cnn, images, tmp_path, monkeypatch):
    from xai import io

    e = xai.explain(cnn, images[:2], "gradcam")
    real, calls = io.write_png, []

    def failing(path, image, compression=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real(path, image, compression)

    monkeypatch.setattr(io, "write_png", failing)
    with pytest.raises(OSError, match="No space left"):
        e.save(tmp_path / "out")
    assert list((tmp_path / "out").glob("*")) == []  # what was written is removed again
