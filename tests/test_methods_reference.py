"""Every method against its paper's formula on a tiny hand-weighted model, computed by hand in
NumPy.

The model (``testing.hand_weighted_cnn``) is ``x (4x4x1) -> A = relu(x * w_k + b_k) (1x1 conv, 3
channels) -> z = flatten(A) @ W + b -> softmax``. Everything about it is known in closed form:
``dz_c/dA[i,j,k] = W[(i,j,k), c]`` and ``dz_c/dx[i,j] = sum_k W[(i,j,k), c] w_k [pre > 0]``.
Also here: targets beyond a class index (callables on a regression or segmentation output,
multi-label sigmoid heads, class 0 of a single-logit binary model).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import xai
from xai import testing
from xai.engine import Engine
from xai.methods import cam, cam_perturb, perturbation
from xai.methods.cam import CamContext
from xai.taps import Tap


@pytest.fixture(scope="module")
def hand():
    model = testing.hand_weighted_cnn()
    conv_w, conv_b = model.get_layer("feat").get_weights()
    dense_w, dense_b = model.get_layer("predictions").get_weights()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    return {
        "model": model,
        "explainer": xai.Explainer(model, layer="feat"),
        "x": x,
        "w": conv_w.reshape(3),
        "b": conv_b,
        "W": dense_w,
        "bW": dense_b,
    }


def _forward(h, x):
    """NumPy forward pass: (pre-activations, activations A, logits z)."""
    pre = x[..., 0:1].astype(np.float64) * h["w"] + h["b"]
    a = np.maximum(pre, 0.0)
    z = a.reshape(len(x), -1) @ h["W"] + h["bW"]
    return pre, a, z


def _grad_a(h, cls):
    """dz_c/dA, (N, 4, 4, 3)."""
    return np.stack([h["W"][:, c].reshape(4, 4, 3) for c in cls])


def _reference_cam(h, rule):
    _, a, z = _forward(h, h["x"])
    cls = z.argmax(1)
    g = _grad_a(h, cls)
    return cam.weighted_sum(a, rule(a, g, 3), 3), cls


def test_numpy_forward_matches_model(hand):
    _, _, z = _forward(hand, hand["x"])
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(
        hand["model"](hand["x"]).numpy(), p / p.sum(1, keepdims=True), rtol=1e-5
    )


@pytest.mark.parametrize(
    "name, rule",
    [
        ("gradcam", cam.gradcam_weights),
        ("gradcam_plus_plus", cam.gradcam_plus_plus_weights),
        ("hirescam", cam.hirescam_weights),
        ("xgradcam", cam.xgradcam_weights),
        ("layercam", cam.layercam_weights),
        ("eigencam", cam.eigencam_weights),
    ],
)
def test_gradient_cams_match_hand_computation(hand, name, rule):
    ref, cls = _reference_cam(hand, rule)
    e = hand["explainer"].explain(hand["x"], name)
    np.testing.assert_array_equal(e.targets, cls)
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-6)


def test_cam_variants_differ_on_this_model(hand):
    maps = {
        n: hand["explainer"].explain(hand["x"], n).attributions
        for n in ("gradcam", "gradcam_plus_plus", "hirescam", "xgradcam", "layercam")
    }
    names = sorted(maps)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.allclose(maps[a], maps[b]), (a, b)


def test_scorecam_weights_are_softmax_of_masked_input_scores(hand):
    """Wang et al.: H_k = minmax(upsample(A_k)); s_k = z_c(x * H_k); w = softmax(s)."""
    x = hand["x"]
    _, a, z = _forward(hand, x)
    cls = z.argmax(1)
    ref = np.zeros((len(x), 4, 4))
    for n in range(len(x)):
        scores = []
        for k in range(3):
            ak = a[n, :, :, k]
            span = ak.max() - ak.min()
            mask = (ak - ak.min()) / span if span > 0 else np.zeros_like(ak)
            _, _, zk = _forward(hand, (x[n : n + 1] * mask[None, :, :, None]).astype(np.float32))
            scores.append(zk[0, cls[n]])
        w = np.exp(np.array(scores) - max(scores))
        w /= w.sum()
        ref[n] = (a[n] * w).sum(-1)
    e = hand["explainer"].explain(x, "scorecam")
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-6)
    # chunking does not change anything; max_channels keeps the top-variance channels only
    e1 = hand["explainer"].explain(x, "scorecam", chunk_size=1)
    np.testing.assert_allclose(e1.attributions, e.attributions, rtol=1e-6, atol=1e-7)


def test_scorecam_weights_direct(hand):
    """The rule itself, called with a CamContext, returns the softmax weights."""
    x = hand["x"]
    _, a, z = _forward(hand, x)
    cls = z.argmax(1).astype(np.int32)
    engine = Engine(Tap.build(hand["model"], "feat"), jit_compile=False)
    ctx = CamContext(
        engine=engine, inputs=[x], targets=cls, layer_index=0, scores=z[np.arange(3), cls]
    )
    w = cam_perturb.scorecam_weights(
        a.astype(np.float32), a * 0, 3, context=ctx, max_channels=None, chunk_size=4
    )
    assert w.shape == (3, 1, 1, 3)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-6)
    w2 = cam_perturb.scorecam_weights(
        a.astype(np.float32), a * 0, 3, context=ctx, max_channels=1, chunk_size=4
    )
    assert ((w2 > 0).sum(axis=-1) == 1).all() and np.allclose(w2.sum(axis=-1), 1.0)


def test_ablationcam_matches_hand_computation(hand):
    """Ramaswamy & Desai: w_k = (y - y_k) / |y|, y_k the score with channel k zeroed."""
    x = hand["x"]
    _, a, z = _forward(hand, x)
    cls = z.argmax(1)
    ref = np.zeros((len(x), 4, 4))
    for n in range(len(x)):
        y = z[n, cls[n]]
        w = []
        for k in range(3):
            ablated = a[n].copy()
            ablated[..., k] = 0
            yk = (ablated.reshape(-1) @ hand["W"] + hand["bW"])[cls[n]]
            w.append((y - yk) / abs(y))
        ref[n] = (a[n] * np.array(w)).sum(-1)
    e = hand["explainer"].explain(x, "ablationcam", chunk_size=2)
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-6)


def _input_gradient(h, x, cls, guided=False):
    pre, _, _ = _forward(h, x)
    out = np.zeros(x.shape, np.float64)
    for n in range(len(x)):
        up = h["W"][:, cls[n]].reshape(4, 4, 3)  # dz/dA
        mask = (pre[n] > 0) * ((up > 0) if guided else 1.0)
        out[n, :, :, 0] = (up * mask * h["w"]).sum(-1)
    return out


def test_saliency_and_gradient_x_input(hand):
    x = hand["x"]
    cls = _forward(hand, x)[2].argmax(1)
    g = _input_gradient(hand, x, cls)
    e = xai.explain(hand["model"], x, "saliency")
    np.testing.assert_allclose(e.attributions, g, rtol=1e-4, atol=1e-6)
    e = xai.explain(hand["model"], x, "gradient_x_input")
    np.testing.assert_allclose(e.attributions, x * g, rtol=1e-4, atol=1e-6)


def test_guided_backprop_passes_only_positive_gradients(hand):
    """Springenberg et al.: through each ReLU, grad = upstream * [x > 0] * [upstream > 0]."""
    x = hand["x"]
    cls = _forward(hand, x)[2].argmax(1)
    ref = _input_gradient(hand, x, cls, guided=True)
    e = hand["explainer"].explain(x, "guided_backprop")
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-6)
    assert not np.allclose(ref, _input_gradient(hand, x, cls))  # guided differs from plain here


def test_guided_gradcam_is_guided_backprop_times_gradcam(hand):
    x = hand["x"]
    cam_ref, cls = _reference_cam(hand, cam.gradcam_weights)
    ref = _input_gradient(hand, x, cls, guided=True) * np.maximum(cam_ref, 0)[..., None]
    e = hand["explainer"].explain(x, "guided_gradcam")
    assert e.layer == ("feat",)
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-6)


def test_guided_backprop_handles_fused_relu6_and_relu_layers():
    """ReLU layers (with max_value) and ReLU fused into Conv/Dense are guided; the model is
    unchanged."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = L.ReLU(max_value=6.0, name="r6")(L.Conv2D(3, 1, name="c2")(x))
    x = L.Flatten()(x)
    x = L.Dense(5, activation="relu6", name="d1")(x)
    out = L.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, out)
    before = testing.model_fingerprint(model)
    images = testing.random_images(2, (6, 6, 2), seed=4) * 4

    # Reference: a plain TF graph of the same maths with the guided rule at every ReLU.
    def guided_relu(v, top=None):
        @tf.custom_gradient
        def f(t):
            y = tf.nn.relu(t) if top is None else tf.minimum(tf.nn.relu(t), top)

            def grad(dy):
                local = tf.cast(t > 0, t.dtype)
                if top is not None:
                    local *= tf.cast(t < top, t.dtype)
                return dy * local * tf.cast(dy > 0, dy.dtype)

            return y, grad

        return f(v)

    c1, c2, d1, dp = (model.get_layer(n) for n in ("c1", "c2", "d1", "predictions"))
    xt = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        h = guided_relu(tf.nn.conv2d(xt, c1.kernel, 1, "VALID") + c1.bias)
        h = guided_relu(tf.nn.conv2d(h, c2.kernel, 1, "VALID") + c2.bias, 6.0)
        h = guided_relu(tf.reshape(h, (2, -1)) @ d1.kernel + d1.bias, 6.0)
        z = h @ dp.kernel + dp.bias
        cls = tf.argmax(z, axis=1)
        score = tf.gather(z, cls, batch_dims=1)
    ref = tape.gradient(score, xt).numpy()
    e = xai.explain(model, images, "guided_backprop")
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-6)
    after = testing.model_fingerprint(model)
    assert before["configs"] == after["configs"] and before["activations"] == after["activations"]
    assert all(np.array_equal(p, q) for p, q in zip(before["weights"], after["weights"]))
    # the user's model still computes the ordinary gradient
    with tf.GradientTape() as tape:
        tape.watch(xt)
        s = tf.reduce_sum(model(xt))
    assert tape.gradient(s, xt) is not None


def test_integrated_gradients_exact_on_linear_model():
    """For z = w.x + b, IG with any baseline x' is (x - x') * w exactly, at any number of steps."""
    model = testing.linear_model()
    x = testing.random_images(4, (6,), seed=3)
    w = model.get_layer("predictions").kernel.numpy()
    for baseline, base_value in (("zeros", 0.0), (0.5, 0.5)):
        e = xai.explain(
            model, x, "integrated_gradients", targets=1, num_steps=3, baseline=baseline, seed=0
        )
        np.testing.assert_allclose(e.attributions, (x - base_value) * w[:, 1], rtol=1e-5, atol=1e-6)


def test_occlusion_single_pixel_windows(hand):
    """Zeiler & Fergus with 1x1 windows: attribution = z_c(x) - z_c(x with that pixel = fill)."""
    x = hand["x"]
    _, _, z = _forward(hand, x)
    cls = z.argmax(1)
    ref = np.zeros((len(x), 4, 4))
    for n in range(len(x)):
        for i in range(4):
            for j in range(4):
                occluded = x[n : n + 1].copy()
                occluded[0, i, j, 0] = 0.25
                ref[n, i, j] = z[n, cls[n]] - _forward(hand, occluded)[2][0, cls[n]]
    e = xai.explain(
        hand["model"], x, "occlusion", window=1, stride=1, fill_value=0.25, chunk_size=5
    )
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-6)


def test_occlusion_overlapping_windows_average_the_drops(hand):
    x = hand["x"][:1]
    _, _, z = _forward(hand, x)
    c = z.argmax(1)[0]
    drops = {}
    for i in range(3):
        for j in range(3):
            occluded = x.copy()
            occluded[0, i : i + 2, j : j + 2] = 0.0
            drops[i, j] = z[0, c] - _forward(hand, occluded)[2][0, c]
    ref = np.zeros((4, 4))
    for p in range(4):
        for q in range(4):
            covering = [d for (i, j), d in drops.items() if i <= p < i + 2 and j <= q < j + 2]
            ref[p, q] = np.mean(covering)
    e = xai.explain(hand["model"], x, "occlusion", window=2, stride=1)
    np.testing.assert_allclose(e.attributions[0], ref, rtol=1e-4, atol=1e-6)


def test_occlusion_windows_cover_every_position():
    win, windows = perturbation.occlusion_windows((10, 7), window=(4, 3), stride=3)
    assert win == (4, 3)
    covered = np.zeros((10, 7))
    for w in windows:
        covered[w] += 1
    assert covered.min() >= 1
    assert perturbation.occlusion_windows((16, 16))[0] == (2, 2)  # default: ~1/8 of each size


def test_rise_matches_formula(hand):
    """Petsiuk et al.: S = sum_i z_c(x * M_i) M_i / (N p)."""
    x = hand["x"]
    _, _, z = _forward(hand, x)
    cls = z.argmax(1)
    n_masks, grid, p = 30, 3, 0.4
    masks = perturbation.rise_masks(11, 0, n_masks, (4, 4), grid, p)
    assert masks.shape == (n_masks, 4, 4) and masks.min() >= 0 and masks.max() <= 1
    ref = np.zeros((len(x), 4, 4))
    for m in masks:
        s = _forward(hand, (x * m[None, :, :, None]).astype(np.float32))[2]
        ref += s[np.arange(len(x)), cls][:, None, None] * m
    ref /= n_masks * p
    e = xai.explain(
        hand["model"],
        x,
        "rise",
        num_masks=n_masks,
        grid_size=grid,
        keep_prob=p,
        seed=11,
        chunk_size=7,
    )
    np.testing.assert_allclose(e.attributions, ref, rtol=1e-4, atol=1e-5)


def test_rise_masks_depend_only_on_seed_and_index():
    a = perturbation.rise_masks(5, 0, 10, (9, 11), 4, 0.5)
    b = perturbation.rise_masks(5, 4, 3, (9, 11), 4, 0.5)
    np.testing.assert_array_equal(a[4:7], b)
    assert not np.array_equal(a, perturbation.rise_masks(6, 0, 10, (9, 11), 4, 0.5))
    assert perturbation.rise_masks(1, 0, 2, (12,), 3, 0.5).shape == (2, 12)  # 1-D signals


def test_smoothing_with_zero_noise(hand):
    x = hand["x"]
    g = xai.explain(hand["model"], x, "saliency").attributions
    for name, expected in (("smoothgrad", g), ("smoothgrad_squared", g * g), ("vargrad", 0 * g)):
        e = xai.explain(hand["model"], x, name, noise_level=0.0, num_samples=3, seed=0)
        np.testing.assert_allclose(e.attributions, expected, rtol=1e-5, atol=1e-9)


def test_smooth_wraps_cams_and_integrated_gradients(hand):
    x = hand["x"]
    for base in ("gradcam", "integrated_gradients", "scorecam"):
        plain = hand["explainer"].explain(x, base, seed=0)
        m = xai.smooth(base, num_samples=2, noise_level=0.0)
        e = hand["explainer"].explain(x, m, seed=0)
        assert e.method == f"smooth({base})"
        np.testing.assert_allclose(e.attributions, plain.attributions, rtol=1e-5, atol=1e-7)
        noisy = hand["explainer"].explain(
            x, xai.smooth(base, num_samples=2, noise_level=0.3), seed=0
        )
        assert not np.allclose(noisy.attributions, plain.attributions)


# ------------------------------------------------------------------------------------------------
# Targets beyond a class index
# ------------------------------------------------------------------------------------------------


def test_regression_callable_target_equals_index():
    model = testing.functional_cnn(num_classes=1, head="linear", seed=2)
    x = testing.random_images(3, seed=5)
    for name in (
        "gradcam",
        "saliency",
        "occlusion",
        "scorecam",
        "ablationcam",
        "integrated_gradients",
    ):
        kwargs = {"seed": 0, "num_steps": 4} if name == "integrated_gradients" else {}
        by_index = xai.explain(model, x, name, targets=0, **kwargs)
        by_fn = xai.explain(model, x, name, targets=lambda z: z[:, 0], **kwargs)
        np.testing.assert_allclose(by_fn.attributions, by_index.attributions, rtol=1e-5, atol=1e-7)
        assert (by_fn.targets == -1).all()
        np.testing.assert_allclose(by_fn.scores, by_index.scores, rtol=1e-6)


def test_segmentation_region_target():
    """A callable that sums one class's logits over a region: only the region's receptive field
    matters."""
    model = testing.segmentation_model()
    x = testing.random_images(2, seed=6)

    def region(z):
        return tf.reduce_sum(z[:, :4, :4, 1], axis=(1, 2))

    sal = xai.explain(model, x, "saliency", targets=region).attributions
    assert np.abs(sal[:, :6, :6]).max() > 0
    assert np.abs(sal[:, 6:, :]).max() == 0 and np.abs(sal[:, :, 6:]).max() == 0  # two 3x3 convs
    occ = xai.explain(model, x, "occlusion", targets=region, window=2, stride=2).attributions
    assert np.abs(occ[:, 8:, 8:]).max() == 0 and np.abs(occ[:, :4, :4]).max() > 0
    cam_map = xai.explain(model, x, "gradcam", targets=region, layer="conv2")
    assert np.isfinite(cam_map.attributions).all()


def test_multilabel_sigmoid_targets():
    model = testing.functional_cnn(head="sigmoid", seed=3)
    x = testing.random_images(3, seed=7)
    for name in ("gradcam", "occlusion", "integrated_gradients"):
        e = xai.explain(model, x, name, targets=[3, 0, 2], seed=0)
        np.testing.assert_array_equal(e.targets, [3, 0, 2])
        np.testing.assert_allclose(e.scores, e.logits[np.arange(3), [3, 0, 2]], rtol=1e-6)
        assert e.probabilities.shape == (3, 4)  # independent sigmoids, not a softmax


def test_binary_single_logit_class_zero_is_the_negated_logit():
    """Class 0 of a one-logit sigmoid model is -z: its gradient maps are exact negatives, and
    score-based methods see the score -z (not an empty map)."""
    model = testing.functional_cnn(num_classes=1, head="sigmoid", seed=4)
    x = testing.random_images(3, seed=8)
    for name in ("saliency", "gradient_x_input", "hirescam", "occlusion"):
        pos = xai.explain(model, x, name, targets=1)
        neg = xai.explain(model, x, name, targets=0)
        np.testing.assert_allclose(neg.attributions, -pos.attributions, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(neg.scores, -pos.scores, rtol=1e-6)
        assert neg.heatmap.max() > 0


def test_ablationcam_with_a_skip_connection_around_the_layer():
    """The head after the layer also reads an earlier tensor (residual): images are passed too."""
    import keras
    from keras import layers as L

    from xai.methods import cam_perturb

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 2))
    c1 = L.Conv2D(3, 3, padding="same", activation="relu", name="c1")(inputs)
    c2 = L.Conv2D(3, 3, padding="same", activation="relu", name="c2")(c1)
    x = L.Add(name="residual")([c2, c1])
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, out)
    images = testing.random_images(2, (8, 8, 2), seed=9)
    ex = xai.Explainer(model, layer="c2")
    e = ex.explain(images, "ablationcam", chunk_size=4)
    assert cam_perturb.ablation_head(ex.engine(True), 0).needs_images
    a1, a2 = (keras.Model(inputs, model.get_layer(n).output)(images).numpy() for n in ("c1", "c2"))
    dense = model.get_layer("predictions")
    w, b = dense.kernel.numpy(), dense.bias.numpy()

    def logit(a2_, n):
        return ((a2_ + a1[n]).mean(axis=(0, 1)) @ w + b)[e.targets[n]]

    for n in range(2):
        y = logit(a2[n], n)
        weights = []
        for k in range(3):
            ablated = a2[n].copy()
            ablated[..., k] = 0
            weights.append((y - logit(ablated, n)) / abs(y))
        np.testing.assert_allclose(
            e.attributions[n], (a2[n] * weights).sum(-1), rtol=1e-4, atol=1e-6
        )
