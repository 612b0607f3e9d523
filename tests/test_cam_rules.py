"""CAM weight rules against their papers' formulas, on hand-written activation/gradient arrays.

Every reference below is written independently of ``xai.methods.cam`` (explicit loops over
positions and channels), so a shared bug in vectorised code cannot hide.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from xai import postprocess
from xai.methods import cam, cam_perturb


def _arrays(seed=0, shape=(2, 3, 4, 5)):
    rng = np.random.default_rng(seed)
    a = np.maximum(rng.normal(size=shape), 0).astype(np.float32)  # post-ReLU activations
    g = rng.normal(size=shape).astype(np.float32)
    return a, g


def _positions(shape):
    return list(itertools.product(*(range(s) for s in shape)))


def _cam(a, w, axis=-1):
    return cam.weighted_sum(a, w, axis % a.ndim)


def test_gradcam_weight_is_mean_gradient():
    a, g = _arrays()
    b, h, w, c = a.shape
    ref = np.zeros((b, c))
    for n, k in itertools.product(range(b), range(c)):
        ref[n, k] = sum(g[n, i, j, k] for i, j in _positions((h, w))) / (h * w)
    got = cam.gradcam_weights(a, g, 3)
    assert got.shape == (b, 1, 1, c)
    np.testing.assert_allclose(got[:, 0, 0], ref, rtol=1e-5)


def test_gradcam_plus_plus_closed_form():
    """alpha = g^2 / (2 g^2 + sum(A) g^3); w = sum(alpha * relu(g)) (Chattopadhyay et al.,
    eq. 19)."""
    a, g = _arrays(1)
    b, h, w, c = a.shape
    ref = np.zeros((b, c))
    for n, k in itertools.product(range(b), range(c)):
        total_a = sum(float(a[n, i, j, k]) for i, j in _positions((h, w)))
        for i, j in _positions((h, w)):
            gij = float(g[n, i, j, k])
            den = 2 * gij**2 + total_a * gij**3
            alpha = gij**2 / den if den != 0 else 0.0
            ref[n, k] += alpha * max(gij, 0.0)
    got = cam.gradcam_plus_plus_weights(a, g, 3)[:, 0, 0]
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_gradcam_plus_plus_reduces_to_gradcam_scale_for_uniform_gradients():
    """With a constant positive gradient per channel, alpha = 1 / (2 + sum(A) g): the closed form
    gives w_c = HW * g / (2 + sum(A_c) g)."""
    a, _ = _arrays(2)
    g = np.broadcast_to(np.array([0.5, 1.0, 2.0, 0.1, 3.0], np.float32), a.shape).copy()
    total = a.sum(axis=(1, 2))
    ref = 12 * g[:, 0, 0] / (2 + total * g[:, 0, 0])
    np.testing.assert_allclose(cam.gradcam_plus_plus_weights(a, g, 3)[:, 0, 0], ref, rtol=1e-6)


def test_hirescam_is_elementwise_product_summed_over_channels():
    a, g = _arrays(3)
    b, h, w, c = a.shape
    ref = np.zeros((b, h, w))
    for n, i, j, k in _positions(a.shape):
        ref[n, i, j] += g[n, i, j, k] * a[n, i, j, k]
    np.testing.assert_allclose(_cam(a, cam.hirescam_weights(a, g, 3)), ref, rtol=1e-5, atol=1e-6)


def test_xgradcam_weights_normalised_by_activation_sums():
    a, g = _arrays(4)
    a[0, ..., 2] = 0.0  # a channel whose activations sum to 0: weight 0, not NaN
    b, h, w, c = a.shape
    ref = np.zeros((b, c))
    for n, k in itertools.product(range(b), range(c)):
        s = sum(float(a[n, i, j, k]) for i, j in _positions((h, w)))
        if s:
            ref[n, k] = sum(float(a[n, i, j, k] * g[n, i, j, k]) / s for i, j in _positions((h, w)))
    np.testing.assert_allclose(cam.xgradcam_weights(a, g, 3)[:, 0, 0], ref, rtol=1e-5, atol=1e-12)


def test_layercam_is_relu_gradient_times_activation():
    a, g = _arrays(5)
    ref = np.zeros(a.shape[:3])
    for n, i, j, k in _positions(a.shape):
        ref[n, i, j] += max(float(g[n, i, j, k]), 0.0) * a[n, i, j, k]
    np.testing.assert_allclose(_cam(a, cam.layercam_weights(a, g, 3)), ref, rtol=1e-5, atol=1e-6)


def test_eigencam_is_projection_on_first_principal_component():
    a, g = _arrays(6)
    maps = _cam(a, cam.eigencam_weights(a, g, 3))
    for n in range(len(a)):
        o = a[n].reshape(-1, a.shape[-1]).astype(np.float64)
        vals, vecs = np.linalg.eigh(o.T @ o)  # v1 = top eigenvector of O^T O
        v1 = vecs[:, np.argmax(vals)]
        ref = (o @ v1).reshape(a.shape[1:3])
        ref = ref if ref.sum() >= 0 else -ref  # the documented sign convention
        np.testing.assert_allclose(maps[n], ref, rtol=1e-4, atol=1e-5)
    # non-negative activations: the first singular vector is non-negative, so is the map
    assert (maps >= -1e-5).all()


def test_eigencam_ignores_gradients():
    a, g = _arrays(7)
    np.testing.assert_array_equal(cam.eigencam_weights(a, g, 3), cam.eigencam_weights(a, -3 * g, 3))


def test_scorecam_weights_are_softmax_of_scores():
    scores = np.array([[1.0, 2.0, -1.0], [1000.0, 1000.0, -np.inf]])
    w = cam_perturb.softmax(scores, axis=1)
    e = np.exp(np.array([1.0, 2.0, -1.0]))
    np.testing.assert_allclose(w[0], e / e.sum())
    np.testing.assert_allclose(w[1], [0.5, 0.5, 0.0])  # saturating scores: no overflow, no NaN


def test_top_variance_channels():
    maps = np.zeros((1, 4, 3, 3))
    maps[0, 1] = np.arange(9).reshape(3, 3)  # largest variance
    maps[0, 3, 0, 0] = 1.0
    np.testing.assert_array_equal(cam_perturb.top_variance_channels(maps, 2), [[1, 3]])
    np.testing.assert_array_equal(cam_perturb.top_variance_channels(maps, None), [[0, 1, 2, 3]])


RULES = {
    "gradcam": cam.gradcam_weights,
    "gradcam_plus_plus": cam.gradcam_plus_plus_weights,
    "hirescam": cam.hirescam_weights,
    "xgradcam": cam.xgradcam_weights,
    "layercam": cam.layercam_weights,
    "eigencam": cam.eigencam_weights,
}


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize(
    "case",
    ["zero_everything", "constant_activations_zero_grads", "all_negative", "zero_grads", "huge"],
)
def test_rules_never_give_nan(name, case):
    """Constant maps, all-negative maps and zero gradients give zero heatmaps, never NaN."""
    shape = (2, 4, 4, 3)
    rng = np.random.default_rng(0)
    if case == "zero_everything":
        a, g = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    elif case == "constant_activations_zero_grads":
        a, g = np.full(shape, 2.0, np.float32), np.zeros(shape, np.float32)
    elif case == "all_negative":  # e.g. a pre-ReLU layer where every activation is negative
        a = -np.abs(rng.normal(size=shape)).astype(np.float32) - 0.1
        g = np.abs(rng.normal(size=shape)).astype(np.float32)
    elif case == "zero_grads":
        a, g = np.abs(rng.normal(size=shape)).astype(np.float32), np.zeros(shape, np.float32)
    else:
        a = np.full(shape, 1e30, np.float32)
        g = np.full(shape, 1e-30, np.float32)
    m = _cam(a, RULES[name](a, g, 3))
    assert m.dtype == np.float32 and np.isfinite(m).all()
    heat = postprocess.heatmap(m, (8, 8), cam.CAM_DISPLAY)
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    if case in ("zero_everything", "constant_activations_zero_grads") or (
        case == "zero_grads" and name != "eigencam"
    ):
        assert not heat.any(), "a constant or gradient-free map must give a zero heatmap"


@pytest.mark.parametrize("name", sorted(RULES))
def test_rules_are_rank_generic_and_respect_channel_axis(name):
    """Conv1D (B, L, C), channels-first (B, C, H, W) and Conv3D (B, D, H, W, C) activations."""
    a, g = _arrays(8, (2, 4, 3, 5))  # channels-last 2-D
    ref = _cam(a, RULES[name](a, g, 3))
    cf_a, cf_g = np.moveaxis(a, 3, 1), np.moveaxis(g, 3, 1)
    np.testing.assert_allclose(
        cam.weighted_sum(cf_a, RULES[name](cf_a, cf_g, 1), 1), ref, rtol=1e-5, atol=1e-6
    )
    a1, g1 = _arrays(9, (2, 7, 3))
    assert cam.weighted_sum(a1, RULES[name](a1, g1, 2), 2).shape == (2, 7)
    a3, g3 = _arrays(10, (1, 2, 3, 4, 3))
    assert cam.weighted_sum(a3, RULES[name](a3, g3, 4), 4).shape == (1, 2, 3, 4)
