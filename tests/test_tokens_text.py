"""Token models: attribution at the embedding, one score per token, coloured tokens.

Pinned here: the shipped keyword model's ground truth (the deciding token is the top token, the
signs of the evidence for and against), integrated gradients' completeness at the embedding on
five architectures, the gradients against an eager GradientTape on the embedding output computed
by hand, padding, occlusion by the padding id, attribution at a layer of an image model, and the
coloured-token HTML (escaped; loaded in a headless browser).
"""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import xai
from xai import demo, intervention, testing
from xai.errors import XaiValueError
from xai.text_data import VOCABULARY, make_keyword_sequences
from xai.tokens_text import TokenExplanation, find_token_model
from xai.viz import text as viz_text

L = keras.layers
BIG = keras.initializers.RandomNormal(stddev=1.0)  # random nets with O(1) score differences


# ----------------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def keyword():
    model = keras.saving.load_model(demo.shipped_model_path("keyword_gru.keras"))
    return model, make_keyword_sequences(200, seed=2, weak_fraction=0.0)


def gru_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    ids = keras.Input((7,), dtype="int32")
    x = L.Embedding(12, 4, mask_zero=True, embeddings_initializer=BIG, name="emb")(ids)
    x = L.GRU(5, name="gru")(x)
    return keras.Model(ids, L.Dense(3, activation="softmax", name="head")(x), name="gru_model")


def conv1d_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((9,), dtype="int32"),
            L.Embedding(15, 6, embeddings_initializer=BIG, name="emb"),
            L.Conv1D(8, 3, activation="tanh", name="conv"),
            L.GlobalAveragePooling1D(),
            L.Dense(2, activation="softmax", name="head"),
        ],
        name="conv1d_text",
    )
    return model


class TokenAndPosition(L.Layer):
    """The keras.io text-transformer embedding: token + learned position embeddings."""

    def __init__(self, length: int, vocab: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.tok = L.Embedding(vocab, dim, embeddings_initializer=BIG)
        self.pos = L.Embedding(length, dim)
        self.length = length

    def call(self, x):
        return self.tok(x) + self.pos(keras.ops.arange(self.length))


def transformer_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    ids = keras.Input((8,), dtype="int32")
    h = TokenAndPosition(8, 20, 8, name="tok_pos")(ids)
    a = L.MultiHeadAttention(2, 4, name="mha")(h, h)
    h = L.LayerNormalization(name="ln")(h + a)
    h = L.GlobalAveragePooling1D()(h)
    return keras.Model(ids, L.Dense(3, name="logits")(h), name="tiny_transformer")


SENTENCES = ["good movie", "bad plot and dull cast", "a wonderful film", "awful <script>"]


def vectorizer_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    vec = L.TextVectorization(max_tokens=30, output_sequence_length=6, standardize=None)
    vec.adapt(SENTENCES)
    text = keras.Input((1,), dtype="string")
    x = L.Embedding(30, 4, mask_zero=True, embeddings_initializer=BIG, name="emb")(vec(text))
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(text, L.Dense(2, activation="softmax")(x), name="vectorized")


def bert_classifier():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=10,
    )
    return keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)


def bert_inputs():
    rng = np.random.default_rng(0)
    token_ids = rng.integers(2, 30, size=(3, 10)).astype(np.int32)
    padding_mask = np.ones((3, 10), np.int32)
    padding_mask[0, 6:] = 0
    padding_mask[2, 8:] = 0
    token_ids[padding_mask == 0] = 0
    return {
        "token_ids": token_ids,
        "segment_ids": np.zeros((3, 10), np.int32),
        "padding_mask": padding_mask,
    }


def _ids(model_name: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if model_name == "gru":
        ids = rng.integers(1, 12, size=(4, 7)).astype(np.int32)
        ids[0, 4:] = 0
        ids[2, 2:] = 0
        return ids
    if model_name == "conv1d":
        return rng.integers(0, 15, size=(4, 9)).astype(np.int32)
    return rng.integers(0, 20, size=(4, 8)).astype(np.int32)


ARCHITECTURES = {
    "gru": (gru_model, lambda: _ids("gru")),
    "conv1d": (conv1d_model, lambda: _ids("conv1d")),
    "transformer": (transformer_model, lambda: _ids("transformer")),
    "text_vectorization": (vectorizer_model, lambda: tf.constant(SENTENCES)[:, None]),
    "bert": (bert_classifier, bert_inputs),
}


@pytest.fixture(scope="module")
def built():
    cache: dict = {}

    def get(name):
        if name not in cache:
            make, data = ARCHITECTURES[name]
            cache[name] = (make(), data())
        return cache[name]

    return get


# ----------------------------------------------------------------------------------- ground truth


def test_shipped_model_ig_top_token_is_the_deciding_token_with_the_right_signs(keyword):
    model, data = keyword
    ex = xai.explain(model, data.ids, "integrated_gradients", targets=data.labels)
    assert isinstance(ex, TokenExplanation) and ex.layer == ("embedding",)
    assert ex.params["baseline"] == "padding" and ex.params["num_steps"] == 64
    s = ex.token_scores
    rows = np.arange(len(data))
    assert np.mean(s.argmax(axis=1) == data.deciding) >= 0.95
    assert np.mean(s[rows, data.deciding] > 0) >= 0.95  # evidence for the label
    assert data.against.sum() > 100 and np.mean(s[data.against] < 0) >= 0.95  # against it
    # completeness at the embedding, 64 steps: sum of attributions = S(x) - S(baseline)
    gap = ex.scores - ex.baseline_scores
    assert np.all(np.abs(ex.convergence_delta) <= 0.01 * np.abs(gap))
    assert np.all(s[~ex.mask] == 0) and (~ex.mask).any()  # padding gets nothing


def test_shipped_model_explained_through_its_vocabulary(keyword):
    model, data = keyword
    entry = json.loads((demo.shipped_model_path("models.json")).read_text())["models"][
        "keyword_gru"
    ]
    vocab = json.loads(demo.shipped_model_path(entry["vocabulary_file"]).read_text())
    assert tuple(vocab) == VOCABULARY and entry["test_accuracy"]["decided_test"] >= 0.99
    ex = xai.explain(model, data.ids[:2], "integrated_gradients", vocabulary=vocab)
    first = ex.tokens[0]
    assert first[int(data.deciding[0])] in VOCABULARY[2:8]
    assert first[: int(ex.mask[0].sum())] == [VOCABULARY[i] for i in data.ids[0] if i]


# ----------------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_ig_completeness_at_the_embedding_on_every_architecture(built, name):
    model, inputs = built(name)
    before = testing.model_fingerprint(model)
    predicted = model.predict(inputs, verbose=0)
    ex = xai.explain(model, inputs, "integrated_gradients", num_steps=64)
    testing.assert_model_unchanged(model, before, inputs, predicted)
    assert isinstance(ex, TokenExplanation)
    gap = ex.scores - ex.baseline_scores
    np.testing.assert_array_less(np.abs(ex.convergence_delta), 0.01 * np.abs(gap) + 1e-4)
    n, length = ex.token_scores.shape
    assert n == len(predicted) and ex.token_ids.shape == (n, length)
    # the explained logits are the model's own (masks and context kept by the split)
    if ex.probabilities is not None:
        np.testing.assert_allclose(ex.probabilities, predicted, atol=1e-5)
    else:
        np.testing.assert_allclose(ex.logits, predicted, atol=1e-5)


def test_embedding_choice_and_masks(built):
    assert find_token_model(built("gru")[0]).layer == "emb"
    assert find_token_model(built("transformer")[0]).layer == "tok_pos"  # the custom layer
    vec = find_token_model(built("text_vectorization")[0])
    assert vec.layer == "emb" and vec.ids_path is not None and "<script>" in vec.vocabulary
    bert = find_token_model(built("bert")[0])
    assert bert.layer.endswith("token_embedding") and bert.padding_mask_input is not None
    assert find_token_model(testing.functional_cnn()) is None


def test_bert_padding_positions_get_no_attribution(built):
    model, inputs = built("bert")
    ex = xai.explain(model, inputs, "integrated_gradients", num_steps=16)
    pad = inputs["padding_mask"] == 0
    np.testing.assert_array_equal(ex.mask, ~pad)
    assert np.all(ex.token_scores[pad] == 0) and np.all(ex.token_scores[~pad] != 0)


def test_text_vectorization_tokens_come_from_its_vocabulary_and_are_escaped(built):
    model, inputs = built("text_vectorization")
    ex = xai.explain(model, inputs, "saliency")
    assert ex.tokens[3][:2] == ["awful", "<script>"] and ex.mask[3].sum() == 2
    page = ex.to_html()
    assert "&lt;script&gt;" in page and "<script" not in page.lower()


# ----------------------------------------------------------------------------------- references


def _manual_gru_gradients(model, ids, targets):
    """Eager GradientTape on the embedding output, computed layer by layer by hand."""
    emb, gru, head = model.get_layer("emb"), model.get_layer("gru"), model.get_layer("head")
    h = tf.constant(emb(ids))
    mask = emb.compute_mask(ids)
    with tf.GradientTape() as tape:
        tape.watch(h)
        z = tf.matmul(gru(h, mask=mask), head.kernel) + head.bias  # the pre-softmax logits
        score = tf.gather(z, targets, batch_dims=1)
    return h.numpy(), tape.gradient(score, h).numpy()


def test_gradients_at_the_embedding_match_an_eager_tape_by_hand(built):
    model, ids = built("gru")
    targets = np.array([0, 1, 2, 1], np.int32)
    h, g = _manual_gru_gradients(model, ids, targets)
    sal = xai.explain(model, ids, "saliency", targets=targets)
    np.testing.assert_allclose(sal.layer_maps["emb"], g, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sal.token_scores, g.sum(-1) * (ids != 0), rtol=1e-5, atol=1e-7)
    gxi = xai.explain(model, ids, "gradient_x_input", targets=targets)
    np.testing.assert_allclose(gxi.token_scores, (g * h).sum(-1) * (ids != 0), atol=1e-6)
    # SmoothGrad with zero noise in embedding space is the plain gradient
    sg = xai.explain(model, ids, "smoothgrad", targets=targets, num_samples=2, noise_level=0.0)
    np.testing.assert_allclose(sg.token_scores, sal.token_scores, atol=1e-7)
    # IG with a zero embedding baseline and one step: h * grad at h / 2 (midpoint)
    _, g_half = _manual_gru_gradients_at(model, ids, targets, 0.5)
    ig1 = xai.explain(model, ids, "integrated_gradients", targets=targets, num_steps=1,
                      baseline="zeros")  # fmt: skip
    np.testing.assert_allclose(ig1.layer_maps["emb"], h * g_half, atol=1e-6)


def _manual_gru_gradients_at(model, ids, targets, alpha):
    emb, gru, head = model.get_layer("emb"), model.get_layer("gru"), model.get_layer("head")
    h = tf.constant(emb(ids)) * alpha
    with tf.GradientTape() as tape:
        tape.watch(h)
        z = tf.matmul(gru(h, mask=emb.compute_mask(ids)), head.kernel) + head.bias
        score = tf.gather(z, targets, batch_dims=1)
    return h.numpy(), tape.gradient(score, h).numpy()


def test_conv1d_gradient_x_input_matches_a_tape_by_hand(built):
    model, ids = built("conv1d")
    emb, conv, head = (model.get_layer(n) for n in ("emb", "conv", "head"))
    h = tf.constant(emb(ids))
    with tf.GradientTape() as tape:
        tape.watch(h)
        z = tf.matmul(tf.reduce_mean(conv(h), axis=1), head.kernel) + head.bias
        score = tf.gather(z, [1] * len(ids), batch_dims=1)
    g = tape.gradient(score, h).numpy()
    ex = xai.explain(model, ids, "gradient_x_input", targets=1)
    np.testing.assert_allclose(ex.token_scores, (g * h.numpy()).sum(-1), atol=1e-6)


def _keyword_logit(model, ids):
    """The shipped model's pre-sigmoid logit, layer by layer by hand."""
    emb, gru, dense = (model.get_layer(n) for n in ("embedding", "gru", "predictions"))
    h = emb(ids)
    return (gru(h, mask=emb.compute_mask(ids)) @ dense.kernel + dense.bias).numpy()[:, 0]


def test_occlusion_replaces_tokens_by_the_padding_id(keyword):
    model, data = keyword
    ids = data.ids[:3]
    ex = xai.explain(model, ids, "occlusion", targets=1)
    logit = _keyword_logit(model, ids)
    for i, pos in [(0, int(data.deciding[0])), (1, 0), (2, 3)]:
        occluded = ids[i : i + 1].copy()
        occluded[0, pos] = 0
        expected = logit[i] - _keyword_logit(model, occluded)[0]
        np.testing.assert_allclose(ex.token_scores[i, pos], expected, rtol=1e-4, atol=1e-4)
    assert np.all(ex.token_scores[~ex.mask] == 0)
    unk = xai.explain(model, ids, "occlusion", targets=1, fill_value=1)  # the [UNK] id instead
    assert not np.allclose(unk.token_scores, ex.token_scores)


def test_batch_invariance_and_parameters_matter(keyword):
    model, data = keyword
    ids = data.ids[:5]
    whole = xai.explain(model, ids, "integrated_gradients", num_steps=16)
    one = xai.explain(model, ids, "integrated_gradients", num_steps=16, batch_size=1)
    np.testing.assert_allclose(whole.token_scores, one.token_scores, atol=1e-5)
    zeros = xai.explain(model, ids, "integrated_gradients", num_steps=16, baseline="zeros")
    assert zeros.params["baseline"] == "zeros"
    assert not np.allclose(zeros.token_scores, whole.token_scores, atol=1e-3)
    steps = xai.explain(model, ids, "integrated_gradients", num_steps=2)
    assert not np.allclose(steps.token_scores, whole.token_scores, atol=1e-3)
    noisy = [
        xai.explain(model, ids, "smoothgrad", num_samples=4, noise_level=0.5, seed=s).token_scores
        for s in (0, 0, 1)
    ]
    np.testing.assert_array_equal(noisy[0], noisy[1])
    assert not np.allclose(noisy[0], noisy[2])


# ----------------------------------------------------------------------------------- any layer


def test_layer_attribution_on_an_image_model():
    model = testing.functional_cnn()
    images = testing.random_images(3, seed=4)
    ig = xai.explain(model, images, "integrated_gradients", layer="conv1", num_steps=64)
    tap = xai.tap(model, ["conv1"])
    logits, act = tap(images)
    assert ig.layer == ("conv1",) and ig.attributions.shape == tuple(act.shape)
    zero = intervention.split_model(model, "conv1").suffix.model(np.zeros(act.shape, np.float32))
    rows = np.arange(3)
    gap = logits.numpy()[rows, ig.targets] - zero.numpy()[rows, ig.targets]
    np.testing.assert_allclose(ig.attributions.reshape(3, -1).sum(1), gap, rtol=0.01, atol=1e-4)
    sal = xai.explain(model, images, "saliency", layer="conv1", targets=2)
    a = tf.constant(act)
    last, dense = model.get_layer("last_conv"), model.get_layer("predictions")
    with tf.GradientTape() as tape:  # by hand: conv1's output through the rest, pre-softmax
        tape.watch(a)
        score = (tf.reduce_mean(last(a), axis=(1, 2)) @ dense.kernel + dense.bias)[:, 2]
    np.testing.assert_allclose(sal.attributions, tape.gradient(score, a).numpy(), atol=1e-6)
    assert ig.heatmap.shape == (3, *act.shape[1:3]) and ig.overlay().shape[1:3] == images.shape[1:3]
    at = xai.Explainer(model, attribute_at="conv1").explain(images, "saliency", targets=2)
    np.testing.assert_array_equal(at.attributions, sal.attributions)
    # an Explainer's layer stays the CAM layer for input methods (unchanged behaviour)
    plain = xai.Explainer(model, layer="conv1").explain(images, "saliency")
    assert plain.attributions.shape == images.shape


def test_errors_are_clear(keyword):
    model, data = keyword
    with pytest.raises(XaiValueError, match="vocabulary"):
        xai.explain(testing.functional_cnn(), testing.random_images(1), "saliency",
                    layer="conv1", vocabulary=["a"])  # fmt: skip
    with pytest.raises(XaiValueError, match="preprocess"):
        xai.explain(model, data.ids[:1], "saliency", preprocess=lambda x: x)
    with pytest.raises(XaiValueError, match="fill_value"):
        xai.explain(model, data.ids[:1], "occlusion", fill_value=0.5)
    with pytest.raises(XaiValueError, match="whole numbers"):
        xai.explain(model, data.ids[:1] + 0.5, "saliency")
    with pytest.raises(XaiValueError, match="tokens"):
        xai.explain(model, data.ids[:2], "saliency").with_tokens([["a"] * 16])
    for method in ("rise", "guided_backprop"):  # they would perturb or differentiate the ids
        with pytest.raises(xai.ModelStructureError, match="integer token ids"):
            xai.explain(model, data.ids[:1], method)


# ----------------------------------------------------------------------------------- pictures


def test_token_colours_are_symmetric_with_white_at_zero():
    assert viz_text.token_colour(0.0, 2.0) == (255, 255, 255)
    assert viz_text.token_colour(2.0, 2.0) == viz_text.POSITIVE
    assert viz_text.token_colour(-5.0, 2.0) == viz_text.NEGATIVE  # clipped at the scale
    half_pos, half_neg = viz_text.token_colour(1.0, 2.0), viz_text.token_colour(-1.0, 2.0)
    # equal magnitudes, equal strength: both halfway between white and their colour
    for half, colour in ((half_pos, viz_text.POSITIVE), (half_neg, viz_text.NEGATIVE)):
        for c, p in zip(half, colour):
            assert abs(c - (255 + p) / 2) <= 0.5


def _explained_with_bad_tokens(keyword):
    model, data = keyword
    tokens = [list(VOCABULARY[i] for i in row) for row in data.ids[:3]]
    tokens[0][0] = "<script>alert(1)</script>"
    return xai.explain(model, data.ids[:3], "integrated_gradients", tokens=tokens)


def test_html_escapes_tokens_and_shows_values_in_tooltips(keyword):
    ex = _explained_with_bad_tokens(keyword)
    page = ex.to_html()
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page
    spans = re.findall(
        r'<span class="xai-token" style="background-color:rgb\((\d+),(\d+),(\d+)\)', page
    )
    assert len(spans) == int(ex.mask.sum()) + 2  # one per shown token, two in the legend
    value = float(ex.token_scores[0, int(keyword[1].deciding[0])])
    assert f"{value:+.4g}" in page
    assert "xai-token" in ex._repr_html_() and "<!DOCTYPE" not in ex._repr_html_()
    assert ex.to_html(max_samples=1).count("xai-row") < page.count("xai-row")


def test_plot_and_save(keyword, tmp_path):
    ex = _explained_with_bad_tokens(keyword)
    fig = ex.plot([0, 1])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "<script>alert(1)</script>" in texts and sum(1 for t in texts if t) >= ex.mask[:2].sum()
    paths = ex.save(tmp_path / "out")
    names = [p.name for p in paths]
    assert names[-1] == "manifest.json" and {"tokens.html", "tokens.png"} <= set(names)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["tokens"][0][0] == "<script>alert(1)</script>"
    np.testing.assert_allclose(manifest["token_scores"], ex.token_scores, rtol=1e-6)
    sub = ex[1]
    assert len(sub) == 1 and sub.tokens[0] == ex.tokens[1] and sub.token_ids.shape == (1, 16)


def test_token_html_in_headless_chromium(keyword, tmp_path):
    from test_audit import _find_chromium, headless_screenshot

    browser = _find_chromium()
    if browser is None:
        pytest.skip("chromium not found (CI installs Debian's chromium; apt-get install chromium)")
    ex = _explained_with_bad_tokens(keyword)
    page = ex.save(tmp_path / "out")[-3]
    assert page.name == "tokens.html"
    shot, proc = headless_screenshot(browser, page, tmp_path, window="900,400")
    import cv2

    image = cv2.imread(str(shot))
    assert image is not None, proc.stderr[-2000:]
    rgb = image[..., ::-1].reshape(-1, 3).astype(int)
    # both colours of the evidence are on screen (the deciding word green, the against-words pink)
    green = np.all(np.abs(rgb - np.array(viz_text.POSITIVE)) < 40, axis=1).sum()
    pink = np.all(np.abs(rgb - np.array(viz_text.NEGATIVE)) < 60, axis=1).sum()
    assert green > 50 and pink > 20, (green, pink)


def test_layer_gradients_reach_activations_after_an_embedding(built):
    """Grad-CAM-style layer gradients on a token model: before the engine watched the variables,
    nothing after the (non-differentiable) id lookup was recorded and every gradient was 0."""
    from xai.engine import Engine
    from xai.taps import Tap

    model, ids = built("gru")
    targets = np.array([0, 1, 2, 1], np.int32)
    _, g = _manual_gru_gradients(model, ids, targets)
    step = Engine(Tap.build(model, ["emb"]), False).gradients([ids], targets, wrt="layers")
    np.testing.assert_allclose(step.gradients[0], g, rtol=1e-5, atol=1e-7)
    cam = xai.explain(conv1d_model(), _ids("conv1d"), "gradcam", layer="conv")
    assert np.abs(cam.attributions).max() > 0
