"""Integrated gradients: completeness on a trained demo-sized CNN, baselines, chunking, errors."""

from __future__ import annotations

import numpy as np
import pytest

import xai
from xai import testing
from xai.methods import integrated


@pytest.fixture(scope="session")
def trained():
    """A demo CNN trained for a few seconds (seeded) on the shapes dataset, and test images.

    The "shortcut" variant (a class-coloured marker) is learnt to ~100 % in ~3 s on 2 CPU cores,
    so the logits are confident and the gradients those of a trained network.
    """
    import keras

    from xai.datasets import make_shapes

    train = make_shapes(768, seed=0, image_size=32, variant="shortcut")
    test = make_shapes(64, seed=0, image_size=32, variant="shortcut", split="test")
    model = testing.demo_cnn((32, 32, 3), 4, seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train.images.astype(np.float32), train.labels, epochs=10, batch_size=32, verbose=0)
    x = test.images.astype(np.float32)
    accuracy = float((model.predict(x, verbose=0).argmax(1) == test.labels).mean())
    assert accuracy > 0.9, f"the demo CNN did not train (test accuracy {accuracy:.2f})"
    return model, x[:8]


def _completeness_error(model, x, e, baseline):
    """Per-image relative completeness error, and that of the batch's summed attributions."""
    z = xai.logits_model(model)
    f_x = z(x).numpy()[np.arange(len(x)), e.targets].astype(np.float64)
    f_b = z(baseline).numpy()[np.arange(len(x)), e.targets].astype(np.float64)
    total = e.attributions.reshape(len(x), -1).sum(axis=1, dtype=np.float64)
    per_image = np.abs(total - (f_x - f_b)) / np.abs(f_x - f_b)
    batch = abs(total.sum() - (f_x - f_b).sum()) / abs((f_x - f_b).sum())
    return per_image, batch


@pytest.mark.parametrize("baseline", ["zeros", "blurred", "uniform"])
def test_completeness_at_64_steps(trained, baseline):
    """|sum(IG) - (f(x) - f(x'))| / |f(x) - f(x')| < 1 % at 64 steps (Sundararajan et al., Prop. 1).

    Per image, the error of a ReLU/max-pool network is the quadrature error of a piecewise
    constant integrand (one jump per unit switching along the path): it is small on average but
    not uniformly (on 64 test images, zeros baseline: median 0.4 %, a few images up to ~5 %, the
    same for Gauss-Legendre nodes and worse for trapezoid or Riemann sums). The random baseline can
    also land near the target logit, making ``f(x) - f(x')`` tiny and the ratio ill-conditioned.
    So: the mean over the images for the deterministic baselines, the median for ``"uniform"``,
    and the error of the summed attributions of the batch for all.
    """
    model, x = trained
    e = xai.explain(model, x, "integrated_gradients", num_steps=64, baseline=baseline, seed=3)
    base = integrated.make_baseline(
        x, baseline, input_index=0, seed=3, blur_sigma=4.0, is_channels_first=False
    )
    err, total_err = _completeness_error(model, x, e, base)
    print(
        f"IG completeness ({baseline}, 64 steps): per image mean {err.mean():.2e}, "
        f"median {np.median(err):.2e}, max {err.max():.2e}; batch total {total_err:.2e}"
    )
    assert (np.median(err) if baseline == "uniform" else err.mean()) < 0.01, err
    assert total_err < 0.01


def test_completeness_improves_with_steps(trained):
    model, x = trained
    errors = []
    for steps in (4, 16, 256):
        e = xai.explain(model, x, "integrated_gradients", num_steps=steps, seed=0)
        errors.append(_completeness_error(model, x, e, np.zeros_like(x))[0].mean())
    assert errors[2] < errors[1] < errors[0], errors
    assert errors[2] < 0.005, errors


def test_chunk_size_is_a_memory_knob_only(trained):
    model, x = trained
    ex = xai.Explainer(model)
    a = ex.explain(x[:3], "integrated_gradients", num_steps=10, chunk_size=1, seed=0).attributions
    b = ex.explain(x[:3], "integrated_gradients", num_steps=10, chunk_size=64, seed=0).attributions
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_user_baseline_array_and_number():
    model = testing.functional_cnn(seed=1)
    x = testing.random_images(2, seed=4)
    ex = xai.Explainer(model)
    by_number = ex.explain(x, "integrated_gradients", baseline=0.5, num_steps=4, seed=0)
    by_array = ex.explain(
        x, "integrated_gradients", baseline=np.full((16, 16, 3), 0.5), num_steps=4, seed=0
    )
    by_pixel = ex.explain(
        x, "integrated_gradients", baseline=np.full((3,), 0.5), num_steps=4, seed=0
    )
    np.testing.assert_array_equal(by_number.attributions, by_array.attributions)
    np.testing.assert_array_equal(by_number.attributions, by_pixel.attributions)
    zeros = ex.explain(x, "integrated_gradients", baseline="zeros", num_steps=4, seed=0)
    assert not np.allclose(zeros.attributions, by_number.attributions)


def test_uniform_baseline_is_seeded_and_batch_invariant():
    model = testing.functional_cnn(seed=1)
    x = testing.random_images(3, seed=4)
    ex = xai.Explainer(model)
    kw = {"baseline": "uniform", "num_steps": 4}
    a = ex.explain(x, "integrated_gradients", seed=1, **kw).attributions
    np.testing.assert_array_equal(
        a, ex.explain(x, "integrated_gradients", seed=1, **kw).attributions
    )
    assert not np.allclose(a, ex.explain(x, "integrated_gradients", seed=2, **kw).attributions)
    one = ex.explain(x, "integrated_gradients", seed=1, batch_size=1, **kw).attributions
    np.testing.assert_allclose(one, a, rtol=1e-5, atol=1e-7)
    base = integrated.make_baseline(
        x, "uniform", input_index=0, seed=1, blur_sigma=1.0, is_channels_first=False
    )
    assert base.min() >= x.min() and base.max() <= x.max()


def test_blurred_baseline():
    x = np.zeros((1, 9, 9, 1), np.float32)
    x[0, 4, 4, 0] = 1.0
    blurred = integrated.gaussian_blur(x, 1.0, (1, 2))
    assert blurred[0, 4, 4, 0] < 1.0 and blurred[0, 4, 5, 0] > 0
    np.testing.assert_allclose(blurred[0, :, :, 0], blurred[0, :, :, 0].T, atol=1e-7)  # isotropic
    const = np.full((1, 5, 5, 2), 3.0, np.float32)
    np.testing.assert_allclose(integrated.gaussian_blur(const, 2.0, (1, 2)), const, rtol=1e-6)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"baseline": "zero"}, "`baseline` must be one of 'zeros', 'blurred', 'uniform'"),
        ({"baseline": np.zeros((5, 5, 3))}, "broadcastable to one sample's shape"),
        ({"num_steps": 0}, "`num_steps` must be a positive int"),
        ({"blur_sigma": -1.0}, "`blur_sigma` must be a finite number >= 0"),
        ({"chunk_size": 0}, "`chunk_size` must be a positive int"),
        ({"num_step": 3}, "Did you mean 'num_steps'"),
    ],
)
def test_bad_parameters(params, match):
    model = testing.functional_cnn(seed=1)
    with pytest.raises(xai.XaiValueError, match=match):
        xai.explain(model, testing.random_images(1, seed=0), "integrated_gradients", **params)
