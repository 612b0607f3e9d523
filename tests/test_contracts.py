"""Contract tests generated over every registered method x model fixture.

For each method in ``xai.methods.available()`` and each model (functional, Sequential, nested
backbone, Conv1D): output shape/dtype/finite; batch invariance; same seed => same output (and a
different seed => a different output for stochastic methods); explicit target equal to the argmax
== default; the model unchanged afterwards. Per method: every documented parameter changes the
output (memory knobs must not), no NaN on constant inputs, class 0 of a binary single-logit model
gives a real map, callable targets equal class indices, and layer lists are fused (CAMs).

A method registered without entries in ``FAST``/``VARIANTS`` fails ``test_tables_cover_registry``,
so adding a method means adding its contract settings here.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import xai
from xai import testing
from xai.methods import available
from xai.vit import vit

# Small settings that keep every method cheap on the tiny models (merged into every call).
FAST: dict[str, dict] = {
    "gradcam": {},
    "gradcam_plus_plus": {},
    "hirescam": {},
    "xgradcam": {},
    "layercam": {},
    "eigencam": {},
    "scorecam": {},
    "ablationcam": {},
    "saliency": {},
    "gradient_x_input": {},
    "guided_backprop": {},
    "guided_gradcam": {},
    "integrated_gradients": {"num_steps": 4},
    "smoothgrad": {"num_samples": 3},
    "smoothgrad_squared": {"num_samples": 3},
    "vargrad": {"num_samples": 3},
    "occlusion": {"window": 4},
    "rise": {"num_masks": 40},
    "attention_rollout": {},
    "generic_attention": {},
}

# For each documented parameter: another value, and the other parameters it needs to matter.
VARIANTS: dict[str, dict[str, tuple]] = {
    "scorecam": {"max_channels": (2, {}), "chunk_size": (5, {})},
    "ablationcam": {"chunk_size": (5, {})},
    "integrated_gradients": {
        "num_steps": (7, {"baseline": "blurred"}),  # zero bias: f(a x) = a f(x), exact
        "baseline": ("blurred", {}),
        "blur_sigma": (1.0, {"baseline": "blurred"}),
        "chunk_size": (3, {}),
    },
    "smoothgrad": {"num_samples": (4, {}), "noise_level": (0.3, {}), "aggregate": ("variance", {})},
    "smoothgrad_squared": {
        "num_samples": (4, {}),
        "noise_level": (0.3, {}),
        "aggregate": ("mean", {}),
    },
    "vargrad": {"num_samples": (4, {}), "noise_level": (0.3, {}), "aggregate": ("mean", {})},
    "occlusion": {
        "window": (3, {}),
        "stride": (1, {}),
        "fill_value": (0.5, {}),
        "chunk_size": (7, {}),
    },
    "rise": {
        "num_masks": (30, {}),
        "grid_size": (3, {}),
        "keep_prob": (0.3, {}),
        "chunk_size": (7, {}),
    },
    "attention_rollout": {"head_fusion": ("max", {})},
}

MODELS = {
    "functional": (testing.functional_cnn, (16, 16, 3)),
    "sequential": (testing.sequential_cnn, (16, 16, 3)),
    "nested": (lambda: testing.nested_backbone(kind="functional"), (16, 16, 3)),
    "conv1d": (testing.conv1d_model, (20, 1)),
    # a class-token ViT (4x4 patches): the attention methods need attention layers
    "vit": (
        lambda: vit(
            16, 4, patch_size=4, hidden_dim=8, num_layers=2, num_heads=2, mlp_dim=8, seed=0
        ),
        (16, 16, 3),
    ),
}
METHODS = list(available())
ATTENTION = {n for n, m in available().items() if m.family == "attention"}
N = 3


def kinds_for(name: str) -> list[str]:
    """The fixtures a method's contract runs on: attention methods on the ViT, the others on
    the CNNs (and Grad-CAM on the ViT's tokens too)."""
    if name in ATTENTION:
        return ["vit"]
    return [k for k in MODELS if k != "vit"] + (["vit"] if name == "gradcam" else [])


def main_kind(name: str) -> str:
    return "vit" if name in ATTENTION else "functional"


def _class_two(z):  # one object, so compiled steps are reused across tests
    return z[:, 2]


@pytest.fixture(scope="module")
def setups():
    """One model, explainer and batch per fixture kind, built once (tracing is the slow part)."""
    out = {}
    for kind, (build, shape) in MODELS.items():
        model = build()
        out[kind] = {
            "model": model,
            "explainer": xai.Explainer(model),
            "x": testing.random_images(N, shape, seed=11),
            "spatial": shape[:-1],
        }
    return out


def _close(a, b, rtol=1e-4):
    """Equal up to float noise of different batch sizes/chunkings, relative to the map's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-30)
    return a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=rtol * scale)


def _run(setup, name, **kwargs):
    return setup["explainer"].explain(
        setup["x"], name, seed=kwargs.pop("seed", 0), **{**FAST[name], **kwargs}
    )


def test_tables_cover_registry():
    for name, m in available().items():
        assert name in FAST, f"add contract settings for {name!r} to FAST"
        missing = set(m.defaults) - set(VARIANTS.get(name, {}))
        assert not missing, f"add a VARIANTS entry for {name!r} parameters {sorted(missing)}"
        assert m.reference and m.summary and m.family in xai.methods.registry.FAMILIES
        assert m.space in ("layer", "input")


PAIRS = [(name, kind) for name in METHODS for kind in kinds_for(name)]


@pytest.mark.parametrize("name, kind", PAIRS, ids=[f"{n}-{k}" for n, k in PAIRS])
def test_contract(setups, name, kind):
    setup = setups[kind]
    model, x = setup["model"], setup["x"]
    method = available()[name]
    before = testing.model_fingerprint(model)
    outputs_before = np.asarray(model(x))

    e = _run(setup, name)
    # shape, dtype, finite
    a = e.attributions
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and np.isfinite(a).all()
    assert len(a) == N
    if method.space == "input":
        assert a.shape[1 : 1 + len(setup["spatial"])] == setup["spatial"]
    else:
        assert a.ndim == 1 + len(setup["spatial"])
    assert e.layer is not None if method.needs_layer else e.layer is None
    heat = e.heatmap
    assert heat.shape == (N, *setup["spatial"]) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert heat.max() > 0, "an empty map"
    # batch invariance: the batch at once == one sample at a time
    one = _run(setup, name, batch_size=1)
    assert _close(one.attributions, a), np.abs(one.attributions - a).max()
    # same seed => same output; another seed => another output (stochastic methods)
    np.testing.assert_array_equal(_run(setup, name).attributions, a)
    if method.stochastic and name != "integrated_gradients":  # IG's default baseline is not random
        assert not np.allclose(_run(setup, name, seed=1).attributions, a)
    # explicit targets equal to the argmax == default
    explicit = _run(setup, name, targets=e.targets.tolist())
    np.testing.assert_array_equal(explicit.targets, e.targets)
    assert _close(explicit.attributions, a, rtol=1e-6)
    # the model is unchanged
    after = testing.model_fingerprint(model)
    assert before["configs"] == after["configs"] and before["activations"] == after["activations"]
    assert (
        before["weight_names"] == after["weight_names"]
        and before["trainable"] == after["trainable"]
    )
    assert all(np.array_equal(p, q) for p, q in zip(before["weights"], after["weights"]))
    np.testing.assert_array_equal(np.asarray(model(x)), outputs_before)


PARAMS = [(name, p) for name in METHODS for p in available()[name].defaults]


@pytest.mark.parametrize("name, param", PARAMS, ids=[f"{n}-{p}" for n, p in PARAMS])
def test_every_parameter_matters(setups, name, param):
    """A documented parameter changes the output; a memory knob (chunk_size) must not."""
    setup = setups[main_kind(name)]
    value, context = VARIANTS[name][param]
    base = _run(setup, name, **context).attributions
    changed = _run(setup, name, **{**context, param: value}).attributions
    if param in available()[name].knobs:
        assert _close(changed, base), f"{param} is a memory knob but changed the output"
    else:
        assert not _close(changed, base), f"changing {param} to {value!r} did not change the output"


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("fill", [0.0, 0.5])
def test_constant_inputs_give_finite_maps(setups, name, fill):
    """No NaN ever: constant images (zero activations, zero gradients, constant masks)."""
    setup = setups[main_kind(name)]
    x = np.full_like(setup["x"], fill)
    e = setup["explainer"].explain(x, name, seed=0, **FAST[name])
    assert np.isfinite(e.attributions).all()
    assert np.isfinite(e.heatmap).all() and e.heatmap.min() >= 0 and e.heatmap.max() <= 1


@pytest.fixture(scope="module")
def binary():
    model = testing.functional_cnn(num_classes=1, head="sigmoid", seed=5)
    # Half of the channels vote for class 1 and half for class 0 (as in a trained binary model), so
    # both classes have evidence somewhere; with a random head one class may have none at all.
    dense = model.get_layer("predictions")
    dense.set_weights(
        [np.array([[1.0], [-1.0], [1.0], [-1.0], [1.0], [-1.0]], np.float32), np.zeros(1)]
    )
    vit_model = vit(
        16, 1, patch_size=4, hidden_dim=8, num_layers=2, num_heads=2, mlp_dim=8,
        activation="sigmoid", seed=5,
    )  # fmt: skip
    return {
        "model": model,
        "explainer": xai.Explainer(model),
        "vit": xai.Explainer(vit_model),
        "x": testing.random_images(N, seed=12),
    }


@pytest.mark.parametrize("name", METHODS)
def test_binary_model_class_zero_is_not_empty(binary, name):
    """Single-logit sigmoid model: class 0 (the negative class, score -z) gets a real map."""
    for cls in (0, 1):
        # (4x4 windows of zeros raise this zero-bias model's score everywhere: use 2x2 windows)
        extra = {"window": 2} if name == "occlusion" else {}
        explainer = binary["vit" if name in ATTENTION else "explainer"]
        e = explainer.explain(binary["x"], name, targets=cls, seed=0, **{**FAST[name], **extra})
        assert (e.targets == cls).all()
        assert np.isfinite(e.attributions).all()
        assert (e.heatmap.reshape(N, -1).max(axis=1) > 0).all(), f"empty map for class {cls}"


@pytest.mark.parametrize("name", METHODS)
def test_callable_target_equals_class_index(setups, name):
    setup = setups[main_kind(name)]
    by_index = _run(setup, name, targets=2)
    by_fn = _run(setup, name, targets=_class_two)
    assert (by_fn.targets == -1).all()
    assert _close(by_fn.attributions, by_index.attributions, rtol=1e-6)
    np.testing.assert_allclose(by_fn.scores, by_index.scores, rtol=1e-6)


CAMS = [n for n in METHODS if available()[n].space == "layer" and n not in ATTENTION]


@pytest.mark.parametrize("name", CAMS)
def test_layer_list_is_fused(setups, name):
    """layer=[...]: maps from several layers are fused (mean of normalised maps)."""
    setup = setups["functional"]
    ex = xai.Explainer(setup["model"], layer=["conv1", "last_conv"])
    e = ex.explain(setup["x"], name, seed=0, **FAST[name])
    assert e.layer == ("conv1", "last_conv") and e.fused == (True,)
    assert set(e.layer_maps) == {"conv1", "last_conv"}
    assert e.heatmap.shape == (N, 16, 16) and np.isfinite(e.heatmap).all()
    single = {
        p: xai.Explainer(setup["model"], layer=p).explain(setup["x"], name, seed=0, **FAST[name])
        for p in ("conv1", "last_conv")
    }
    expected = xai.postprocess.fuse([single[p].heatmap for p in ("conv1", "last_conv")])
    np.testing.assert_allclose(e.heatmap, expected, atol=1e-5)


def test_unknown_method_gets_close_matches(setups):
    with pytest.raises(xai.XaiValueError, match="Did you mean 'gradcam_plus_plus'"):
        xai.explain(setups["functional"]["model"], setups["functional"]["x"], "gradcam_plusplus")
    with pytest.raises(xai.XaiValueError, match="Did you mean 'integrated_gradients'"):
        xai.methods.get("integrated_gradient")


def test_guided_gradcam_refuses_several_layers_of_one_input(setups):
    with pytest.raises(xai.XaiValueError, match="one layer per model input"):
        xai.explain(
            setups["functional"]["model"],
            setups["functional"]["x"],
            "guided_gradcam",
            layer=["conv1", "last_conv"],
        )


def test_callable_target_on_perturbed_batches_gets_logits():
    """For callables, the score of a perturbed batch is the callable applied to its logits."""
    model = testing.functional_cnn(head="linear", seed=6)
    x = testing.random_images(2, seed=13)
    seen = []

    def target(z):
        seen.append(tuple(z.shape))
        return tf.reduce_sum(z[:, :2], axis=1)

    e = xai.explain(model, x, "occlusion", targets=target, window=8, stride=8, chunk_size=3)
    assert all(s[1] == 4 for s in seen) and max(s[0] for s in seen) <= 3
    assert np.isfinite(e.attributions).all()


@pytest.mark.parametrize(
    "name, params, many",
    [
        ("scorecam", {"chunk_size": 5}, {}),
        ("rise", {"chunk_size": 8, "num_masks": 50}, {"num_masks": 400}),
        ("occlusion", {"chunk_size": 7, "window": 4}, {"stride": 1}),
        ("integrated_gradients", {"chunk_size": 6, "num_steps": 8}, {"num_steps": 64}),
    ],
)
def test_masked_passes_are_chunked(setups, monkeypatch, name, params, many):
    """Memory is bounded by chunk_size, not by the number of masks/windows/steps: no pass over
    the engine gets more rows than max(chunk_size, batch)."""
    from xai.engine import Engine

    rows = []
    forward, gradients = Engine.forward, Engine.gradients

    def spy_forward(self, inputs):
        rows.append(len(inputs[0]))
        return forward(self, inputs)

    def spy_gradients(self, inputs, targets, wrt):
        rows.append(len(inputs[0]))
        return gradients(self, inputs, targets, wrt)

    monkeypatch.setattr(Engine, "forward", spy_forward)
    monkeypatch.setattr(Engine, "gradients", spy_gradients)
    setup = setups["functional"]
    few = setup["explainer"].explain(setup["x"], name, seed=0, **params)
    n_few, max_few = len(rows), max(rows)
    rows.clear()
    setup["explainer"].explain(setup["x"], name, seed=0, **{**params, **many})
    assert max(rows) <= max(params["chunk_size"], N) and max_few <= max(params["chunk_size"], N)
    if many:
        assert len(rows) > n_few  # more masks -> more passes, not bigger ones
    assert np.isfinite(few.attributions).all()


@pytest.mark.parametrize("name", ["occlusion", "rise", "smoothgrad", "scorecam"])
def test_callable_target_must_return_one_score_per_sample(setups, name):
    setup = setups["functional"]
    with pytest.raises(xai.XaiValueError, match="one score per sample"):
        _run(setup, name, targets=lambda z: z[:, :2])
