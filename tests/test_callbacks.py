"""Training-time explanations: ExplainCallback, ActivationRecorder and TrainingTap.

The models are tiny CNNs on 32x32 shapes images (the demo data) so that a whole ``fit`` takes well
under a second; what is checked is the contract: the files written (TensorBoard events read back
with TensorBoard's own reader), one trace per fit, nested backbones, ``tf.data`` input, identical
weights after a seeded fit with and without the callbacks, and a TrainingTap step equal to a plain
training step.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L

import xai
from xai import testing
from xai.callbacks import ActivationRecorder, ExplainCallback
from xai.datasets import make_shapes
from xai.errors import ModelStructureError, XaiTypeError, XaiValueError

SIZE = 32
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:`shuffle=True` was passed:UserWarning")


def demo_cnn(seed: int = 0, *, dropout: bool = True) -> keras.Model:
    """A tiny version of the demo CNN: Rescaling(1/255) inside, BN, Dropout, softmax head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    if dropout:
        x = L.Dropout(0.25, name="dropout")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="demo_cnn")


def nested_cnn(seed: int = 0) -> keras.Model:
    """The tf-explain failure case: the conv layers live in a backbone model used as a layer."""
    return testing.nested_backbone((SIZE, SIZE, 3), 4, kind="functional", seed=seed)


@pytest.fixture(scope="module")
def data():
    return make_shapes(32, seed=0, image_size=SIZE)


@pytest.fixture(scope="module")
def probe(data):
    return np.asarray(data.images[:4])


def dataset(data, batch_size: int = 8) -> tf.data.Dataset:
    x = np.asarray(data.images, np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.asarray(data.labels))).batch(batch_size)


def compiled(model: keras.Model) -> keras.Model:
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model


def attach(callback, model):
    """Drive a callback by hand, as fit does, without training (end with on_train_end)."""
    callback.set_model(model)
    callback.on_train_begin()
    return callback


def bound(callback, model):
    """A callback given its model only: explain_now()/record_now() build lazily, write nothing."""
    callback.set_model(model)
    return callback


def read_events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def decode_images(tensor_event) -> list[np.ndarray]:
    """An image summary's tensor is [width, height, png, png, ...] (TensorBoard's image plugin)."""
    values = tf.make_ndarray(tensor_event.tensor_proto)
    return [cv2.imdecode(np.frombuffer(v, np.uint8), cv2.IMREAD_COLOR) for v in values[2:]]


# ------------------------------------------------------------------------------------- fit runs


def test_one_epoch_fit_writes_tensorboard_images_and_pngs(data, probe, tmp_path):
    model = compiled(demo_cnn())
    cb = ExplainCallback(
        probe,
        "gradcam",
        log_dir=tmp_path / "tb",
        output_dir=tmp_path / "png",
        class_names=data.class_names,
    )
    assert (
        not (tmp_path / "tb").exists() and not (tmp_path / "png").exists()
    )  # made in on_train_begin
    model.fit(dataset(data), epochs=1, callbacks=[cb], verbose=0)

    acc = read_events(tmp_path / "tb")
    assert set(acc.Tags()["tensors"]) == {"explanations/gradcam", "explanations/gradcam/captions"}
    (event,) = acc.Tensors("explanations/gradcam")
    assert event.step == 0
    meta = acc.SummaryMetadata("explanations/gradcam")
    assert meta.plugin_data.plugin_name == "images"
    latest = cb.latest
    for i in range(len(probe)):
        name = data.class_names[latest.predictions[i]]
        assert (
            f"{i}. predicted {name} (p={latest.probabilities[i].max():.3f})"
            in meta.summary_description
        )
    pictures = decode_images(event)
    assert len(pictures) == len(probe)
    np.testing.assert_array_equal(pictures[0][..., ::-1], latest.overlay()[0])  # lossless PNG
    (text,) = acc.Tensors("explanations/gradcam/captions")
    assert b"| 0 |" in tf.make_ndarray(text.tensor_proto).item()

    epoch_dir = tmp_path / "png" / "epoch_001"
    names = sorted(p.name for p in epoch_dir.iterdir())
    assert names == sorted(
        [f"overlay_{i:04d}.png" for i in range(4)]
        + ["attributions.npy", "heatmaps.npy", "manifest.json"]
    )
    manifest = json.loads((epoch_dir / "manifest.json").read_text())
    assert (
        manifest["method"] == "gradcam" and manifest["predictions"] == latest.predictions.tolist()
    )
    assert sorted(cb.files) == sorted(epoch_dir.iterdir())


def test_one_epoch_fit_activation_recorder_writes_npz(data, probe, tmp_path):
    model = compiled(demo_cnn())
    rec = ActivationRecorder(
        probe, ["relu1", "last_conv", "predictions"], output_dir=tmp_path / "acts"
    )
    assert not (tmp_path / "acts").exists()
    model.fit(dataset(data), epochs=1, callbacks=[rec], verbose=0)

    assert rec.epochs.tolist() == [1]
    (path,) = rec.files
    assert path == tmp_path / "acts" / "epoch_001.npz"
    saved = np.load(path)
    assert sorted(saved.files) == sorted(
        ["epoch"]
        + [
            f"{p}/{s}"
            for p in ("relu1", "last_conv", "predictions")
            for s in ("mean", "std", "sparsity")
        ]
    )
    # Statistics are those of the activations after the epoch, computed independently
    acts = xai.tap(model, ["relu1", "last_conv", "predictions"], logits=False)(
        probe.astype(np.float32)
    )
    for p, a in zip(("relu1", "last_conv", "predictions"), acts):
        a = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
        np.testing.assert_allclose(rec.stats[p]["mean"][0], a.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(rec.stats[p]["std"][0], a.std(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(rec.stats[p]["sparsity"][0], (a == 0).mean(0))
        np.testing.assert_array_equal(saved[f"{p}/mean"], rec.stats[p]["mean"][0])
    assert rec.stats["relu1"]["mean"].shape == (1, 8)
    assert rec.activations == {}  # reduce="stats" keeps statistics only


def test_recorder_full_keeps_every_activation(data, probe, tmp_path):
    model = compiled(demo_cnn())
    rec = ActivationRecorder(probe, "last_conv", reduce="full", output_dir=tmp_path)
    model.fit(dataset(data), epochs=2, callbacks=[rec], verbose=0)
    full = rec.activations["last_conv"]
    assert full.shape == (2, 4, SIZE // 2, SIZE // 2, 8) and full.dtype == np.float32
    expected = xai.tap(model, "last_conv", logits=False)(probe.astype(np.float32))
    np.testing.assert_allclose(full[-1], np.asarray(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "epoch_002.npz")["last_conv"], full[1])
    assert rec.stats == {}
    assert not np.array_equal(full[0], full[1])  # the model learnt between the epochs


def test_nested_backbone_with_tf_data(data, probe, tmp_path):
    """The tf-explain failure ("Graph disconnected"): a layer inside a nested backbone."""
    model = compiled(nested_cnn())
    cb = ExplainCallback(probe, "gradcam", layer="backbone/out_relu", output_dir=tmp_path / "png")
    rec = ActivationRecorder(probe, ["backbone/conv1", "backbone/out_relu"])
    ds = dataset(data).shuffle(8, seed=1)
    model.fit(ds, epochs=2, callbacks=[cb, rec], verbose=0)
    assert cb.latest.layer == ("backbone/out_relu",)
    assert (tmp_path / "png" / "epoch_002" / "overlay_0003.png").exists()
    assert rec.stats["backbone/out_relu"]["mean"].shape == (2, 6)
    assert cb.trace_count == 1 and rec.trace_count == 1


def test_compiled_steps_are_not_retraced_across_epochs_or_fits(data, probe, tmp_path):
    model = compiled(demo_cnn())
    cb = ExplainCallback(probe, "gradcam", log_dir=tmp_path / "tb")
    rec = ActivationRecorder(probe, "last_conv")
    model.fit(dataset(data), epochs=3, callbacks=[cb, rec], verbose=0)
    assert cb.trace_count == 1 and rec.trace_count == 1
    engine = cb.explainer.engine(True)
    model.fit(dataset(data), epochs=2, callbacks=[cb, rec], verbose=0)  # a second fit: same steps
    assert cb.explainer.engine(True) is engine
    assert cb.trace_count == 1 and rec.trace_count == 1
    assert [e.step for e in read_events(tmp_path / "tb").Tensors("explanations/gradcam")] == [
        0,
        1,
        2,
        0,
        1,
    ]
    assert rec.epochs.tolist() == [1, 2]  # records start afresh at each fit, like History


def test_stochastic_method_is_traced_once(probe, tmp_path):
    model = demo_cnn(dropout=False)
    cb = attach(ExplainCallback(probe[:2], "smoothgrad", output_dir=tmp_path, num_samples=2), model)
    cb.on_epoch_end(0)
    after_one = cb.trace_count
    for epoch in (1, 2, 3):
        cb.on_epoch_end(epoch)
    cb.on_train_end()
    assert 1 <= after_one == cb.trace_count <= 2  # once per compiled step kind, never per epoch


def test_rebuilt_when_the_variables_change(probe, tmp_path):
    model = demo_cnn(dropout=False)
    cb = attach(ExplainCallback(probe, output_dir=tmp_path), model)
    rec = attach(ActivationRecorder(probe, "last_conv"), model)
    for c in (cb, rec):
        c.on_epoch_end(0)
        c.on_epoch_end(1)
        assert c.trace_count == 1
    explainer = cb.explainer
    layer = model.get_layer("last_conv")
    # Keras locks built layers; a variable added anyway changes the structure
    layer._tracker.unlock()
    layer.add_weight(shape=(2,), name="extra")
    layer._tracker.lock()
    cb.on_epoch_end(2)
    rec.on_epoch_end(2)
    assert cb.explainer is not explainer and cb.trace_count == 1  # a fresh step, traced once
    assert rec.trace_count == 2
    other = demo_cnn(seed=1, dropout=False)  # another model
    cb.on_train_end()
    cb.set_model(other)
    cb.on_train_begin()
    assert cb.explainer.model is other
    cb.on_train_end()


@pytest.mark.slow
def test_seeded_fit_identical_with_and_without_callbacks(data, tmp_path):
    """Dropout, BatchNorm, shuffled tf.data and per-epoch shuffling of arrays: nothing changes."""
    x = np.asarray(data.images, np.float32)
    y = np.asarray(data.labels)

    def run(with_callbacks: bool) -> list[np.ndarray]:
        model = compiled(demo_cnn(seed=3))
        keras.utils.set_random_seed(7)
        callbacks = []
        if with_callbacks:
            callbacks = [
                ExplainCallback(
                    x[:4], "gradcam", log_dir=tmp_path / "tb", output_dir=tmp_path / "png"
                ),
                ExplainCallback(x[:2], "smoothgrad", output_dir=tmp_path / "sg", num_samples=3),
                ActivationRecorder(
                    x[:4], ["relu1", "dropout", "last_conv"], output_dir=tmp_path / "a"
                ),
            ]
        model.fit(x, y, batch_size=8, epochs=2, shuffle=True, callbacks=callbacks, verbose=0)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(32).batch(8)
        model.fit(ds, epochs=1, callbacks=callbacks, verbose=0)
        return [v.numpy() for v in model.variables + model.optimizer.variables]

    without, with_ = run(False), run(True)
    assert len(without) == len(with_)
    for a, b in zip(without, with_):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "sg" / "epoch_002" / "overlay_0001.png").exists()


def test_callback_does_not_modify_the_model(probe, tmp_path):
    model = demo_cnn()
    before = testing.model_fingerprint(model)
    cb = bound(ExplainCallback(probe, "gradcam_plus_plus", output_dir=tmp_path), model)
    cb.explain_now()
    bound(ActivationRecorder(probe, "all"), model).record_now()
    after = testing.model_fingerprint(model)
    for a, b in zip(before["weights"], after["weights"]):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in before.items() if k != "weights"} == {
        k: v for k, v in after.items() if k != "weights"
    }


def test_every_n_epochs(data, probe, tmp_path):
    model = compiled(demo_cnn())
    cb = ExplainCallback(
        probe[:1], every_n_epochs=2, log_dir=tmp_path / "tb", output_dir=tmp_path / "png"
    )
    rec = ActivationRecorder(probe, "relu1", every_n_epochs=3)
    model.fit(dataset(data), epochs=4, callbacks=[cb, rec], verbose=0)
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["epoch_002", "epoch_004"]
    assert [e.step for e in read_events(tmp_path / "tb").Tensors("explanations/gradcam")] == [1, 3]
    assert rec.epochs.tolist() == [3]


def test_background_writes_finish_by_the_end_of_training(probe, tmp_path):
    model = demo_cnn(dropout=False)
    for background in (False, True):
        out = tmp_path / str(background)
        cb = attach(ExplainCallback(probe, output_dir=out, background_writes=background), model)
        rec = attach(
            ActivationRecorder(
                probe, "relu1", output_dir=out / "acts", background_writes=background
            ),
            model,
        )
        for c in (cb, rec):
            c.on_epoch_end(0)
        if not background:  # written inside on_epoch_end
            assert (out / "epoch_001" / "manifest.json").exists()
            assert (out / "acts" / "epoch_001.npz").exists()
        for c in (cb, rec):
            c.on_train_end()
        assert len(cb.files) == 4 + 3 and all(p.exists() for p in cb.files)
        assert rec.files == [out / "acts" / "epoch_001.npz"] and rec.files[0].exists()
    with pytest.raises(XaiTypeError, match="`background_writes` must be True or False"):
        ExplainCallback(probe, output_dir=tmp_path, background_writes="yes")


@pytest.mark.parametrize("background", [True, False])
def test_a_failed_write_is_raised(probe, tmp_path, background):
    model = demo_cnn(dropout=False)
    cb = attach(ExplainCallback(probe, output_dir=tmp_path, background_writes=background), model)
    (tmp_path / "epoch_001").write_text("a file where the epoch folder goes")
    with pytest.raises(OSError):
        cb.on_epoch_end(0)
        cb.on_train_end()
    cb.on_train_end()  # nothing left pending


# ------------------------------------------------------------------------- parameters matter


def _explain(probe, model, **kwargs):
    """What the callback explains at an epoch's end (nothing is written: no epoch ran)."""
    cb = ExplainCallback(probe, output_dir="never-created", **kwargs)
    cb.set_model(model)
    return cb.explain_now()


def test_method_params_seed_and_targets_matter(probe):
    model = demo_cnn(dropout=False)
    a = _explain(probe, model, method="smoothgrad", num_samples=2, seed=0)
    b = _explain(probe, model, method="smoothgrad", num_samples=2, seed=0)
    c = _explain(probe, model, method="smoothgrad", num_samples=2, seed=1)
    d = _explain(probe, model, method="smoothgrad", num_samples=3, seed=0)
    np.testing.assert_array_equal(a.attributions, b.attributions)  # same seed every epoch
    assert not np.allclose(a.attributions, c.attributions)
    assert not np.allclose(a.attributions, d.attributions) and d.params["num_samples"] == 3
    t = _explain(probe, model, targets=[0, 1, 2, 3])
    assert t.targets.tolist() == [0, 1, 2, 3]
    p = _explain(probe, model, targets=None)
    assert not np.allclose(t.attributions, p.attributions)


def test_layer_preprocess_and_batch_size(probe):
    model = demo_cnn(dropout=False)
    base = _explain(probe, model)
    assert base.layer == ("last_conv",)
    assert _explain(probe, model, layer="relu1").attributions.shape == (4, SIZE, SIZE)
    pre = _explain(probe, model, preprocess=lambda x: x[..., ::-1])
    assert not np.allclose(pre.attributions, base.attributions)
    np.testing.assert_allclose(
        _explain(probe, model, batch_size=1).attributions, base.attributions, rtol=1e-5, atol=1e-7
    )


def test_display_parameters_change_the_written_overlays(probe, tmp_path):
    model = demo_cnn(dropout=False)

    def written(name, **kwargs):
        cb = attach(ExplainCallback(probe, output_dir=tmp_path / name, **kwargs), model)
        cb.on_epoch_end(0)
        cb.on_train_end()  # waits for the background writes
        return cv2.imread(str(tmp_path / name / "epoch_001" / "overlay_0000.png"))

    base = written("base")
    assert not np.array_equal(written("alpha", alpha=0.9), base)
    assert not np.array_equal(written("colormap", colormap="viridis"), base)
    floats = probe.astype(np.float32) / 255.0
    scaled = bound(
        ExplainCallback(floats, output_dir=tmp_path, preprocess=lambda x: x * 255.0), model
    )
    wrong = scaled.explain_now().images[0]
    right = bound(
        ExplainCallback(
            floats * 2, output_dir=tmp_path, preprocess=lambda x: x * 127.5, value_range=(0, 2)
        ),
        model,
    ).explain_now()
    np.testing.assert_array_equal(right.images[0], wrong)


def test_class_names_appear_in_the_tensorboard_description(probe, tmp_path):
    model = demo_cnn(dropout=False)
    for name, names in (("named", ("a0", "b1", "c2", "d3")), ("plain", None)):
        cb = attach(ExplainCallback(probe, log_dir=tmp_path / name, class_names=names), model)
        cb.on_epoch_end(4)
        cb.on_train_end()
        acc = read_events(tmp_path / name)
        assert acc.Tensors("explanations/gradcam")[0].step == 4
        description = acc.SummaryMetadata("explanations/gradcam").summary_description
        predicted = cb.latest.predictions[0]
        assert f"0. predicted {names[predicted] if names else predicted} (p=" in description


def test_explained_class_is_shown_when_it_is_not_the_prediction(probe, tmp_path):
    model = demo_cnn(dropout=False)
    predicted = bound(ExplainCallback(probe, output_dir=tmp_path), model).explain_now().predictions
    other = (predicted + 1) % 4
    cb = attach(ExplainCallback(probe, log_dir=tmp_path, targets=other), model)
    cb.on_epoch_end(0)
    cb.on_train_end()
    description = read_events(tmp_path).SummaryMetadata("explanations/gradcam").summary_description
    assert (
        f"0. predicted {predicted[0]} (p=" in description
        and f"explaining {other[0]}" in description
    )


def test_recorder_batch_size_does_not_change_statistics(probe):
    model = demo_cnn(dropout=False)
    x = np.concatenate([probe, probe[::-1, ::-1]])
    one = bound(ActivationRecorder(x, ["relu1", "gap"], batch_size=64), model).record_now()
    chunked = bound(ActivationRecorder(x, ["relu1", "gap"], batch_size=3), model).record_now()
    assert one.keys() == chunked.keys()
    for k in one:
        np.testing.assert_allclose(chunked[k], one[k], rtol=1e-5, atol=1e-6)
    full = bound(ActivationRecorder(x, "relu1", reduce="full", batch_size=3), model).record_now()
    assert full["relu1"].shape == (8, SIZE, SIZE, 8)


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, XaiValueError, "needs somewhere to write: pass `log_dir`"),
        ({"output_dir": "o", "method": "gradcamm"}, XaiValueError, "Did you mean 'gradcam'"),
        (
            {"output_dir": "o", "every_n_epochs": 0},
            XaiValueError,
            "`every_n_epochs` must be a positive int",
        ),
        (
            {"output_dir": "o", "every_n_epochs": 1.5},
            XaiTypeError,
            "`every_n_epochs` must be a positive int",
        ),
        ({"output_dir": "o", "num_samples": 3}, XaiValueError, "does not take parameter"),
        (
            {"output_dir": "o", "method": "smoothgrad", "num_sample": 3},
            XaiValueError,
            "Did you mean 'num_samples'",
        ),
        ({"output_dir": 3}, XaiTypeError, "`output_dir` must be a directory path"),
        ({"log_dir": "o", "targets": "top"}, XaiValueError, "`targets` must be"),
        ({"log_dir": "o", "alpha": 2.0}, XaiValueError, "alpha"),
        ({"log_dir": "o", "colormap": "jett"}, XaiValueError, "Did you mean 'jet'"),
        ({"log_dir": "o", "seed": None}, XaiTypeError, "`seed` must be an int"),
        ({"log_dir": "o", "batch_size": 0}, XaiValueError, "`batch_size` must be a positive int"),
        ({"log_dir": "o", "layer": 3}, XaiTypeError, "`layer` must be"),
        ({"log_dir": "o", "class_names": "abc"}, XaiTypeError, "`class_names` must be"),
        ({"log_dir": "o", "images": np.zeros((0, 32, 32, 3))}, XaiValueError, "non-empty batch"),
        (
            {"log_dir": "o", "images": ["a", "b"]},
            XaiTypeError,
            "`images\\[0\\]` must be a numeric array",
        ),
    ],
)
def test_explain_callback_argument_errors(probe, kwargs, error, match):
    kwargs = {"images": probe, **kwargs}
    with pytest.raises(error, match=match):
        ExplainCallback(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reduce": "stat"}, XaiValueError, "`reduce` must be 'stats'.*Did you mean 'stats'"),
        ({"reduce": "mean"}, XaiValueError, "`reduce` must be"),
        ({"every_n_epochs": -1}, XaiValueError, "`every_n_epochs` must be"),
        ({"layers": []}, XaiTypeError, "`layers` must be"),
        ({"layers": [1]}, XaiTypeError, "`layers` must be"),
        ({"output_dir": b"x"}, XaiTypeError, "`output_dir` must be"),
        ({"batch_size": True}, XaiValueError, "`batch_size` must be"),
    ],
)
def test_recorder_argument_errors(probe, kwargs, error, match):
    kwargs = {"images": probe, "layers": "relu1", **kwargs}
    with pytest.raises(error, match=match):
        ActivationRecorder(**kwargs)


def test_model_dependent_errors_come_before_the_first_epoch(probe, tmp_path):
    model = compiled(demo_cnn())
    x = np.asarray(probe, np.float32)
    cases = [
        (
            ExplainCallback(probe, layer="last_cnv", output_dir=tmp_path),
            ModelStructureError,
            "Did you mean 'last_conv'",
        ),
        (
            ExplainCallback(probe[:, :16], output_dir=tmp_path),
            XaiValueError,
            "size of axis 1 is 16, expected 32",
        ),
        (ExplainCallback(probe, targets=[0, 1], output_dir=tmp_path), XaiValueError, "`targets`"),
        (
            ActivationRecorder(probe, ["relu1", "backbone/x"]),
            ModelStructureError,
            "must name a layer",
        ),
        (
            ActivationRecorder(probe[..., :1], "relu1"),
            XaiValueError,
            "channel count is 1, expected 3",
        ),
    ]
    for callback, error, match in cases:
        with pytest.raises(error, match=match):
            model.fit(x, np.zeros(4), epochs=1, callbacks=[callback], verbose=0)
    assert model.optimizer.iterations.numpy() == 0  # nothing was trained
    with pytest.raises(ModelStructureError, match="subclassed"):
        attach(ExplainCallback(probe[:, :16, :16], output_dir=tmp_path), testing.subclassed_model())


def test_non_image_inputs_are_refused_by_explain_callback(tmp_path):
    model = testing.conv1d_model()
    with pytest.raises(XaiValueError, match="2-D images"):
        attach(ExplainCallback(testing.random_images(2, (20, 1)), output_dir=tmp_path), model)
    rec = bound(ActivationRecorder(testing.random_images(2, (20, 1)), "last_conv"), model)  # fine
    assert rec.record_now()["last_conv/mean"].shape == (5,)


# ------------------------------------------------------------------------------- TrainingTap


def _steps(model, tap, x, y, seed):
    probs_loss = keras.losses.SparseCategoricalCrossentropy()
    logits_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def plain():
        with tf.GradientTape() as tape:
            loss = probs_loss(y, model(x, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    @tf.function
    def tapped():
        with tf.GradientTape() as tape:
            logits, acts = tap(x, training=True)
            loss = logits_loss(y, logits)
        return loss, tape.gradient(loss, tap.trainable_variables), acts

    start = [v.numpy() for v in model.variables]
    keras.utils.set_random_seed(seed)
    loss_a, grads_a = plain()
    after_a = [v.numpy() for v in model.variables]  # BatchNorm statistics and the dropout RNG
    for v, w in zip(model.variables, start):
        v.assign(w)
    keras.utils.set_random_seed(seed)
    loss_b, grads_b, acts = tapped()
    after_b = [v.numpy() for v in model.variables]
    return (loss_a, grads_a, after_a), (loss_b, grads_b, after_b), acts


@pytest.mark.parametrize("kind", ["demo", "nested"])
def test_training_tap_step_equals_plain_step(data, kind):
    model = demo_cnn() if kind == "demo" else nested_cnn()
    layers = ["relu1", "last_conv"] if kind == "demo" else ["backbone/conv1", "backbone/out_relu"]
    tap = xai.TrainingTap(model, layers=layers)
    x = tf.constant(np.asarray(data.images[:8], np.float32))
    y = tf.constant(np.asarray(data.labels[:8]))
    (loss_a, grads_a, after_a), (loss_b, grads_b, after_b), acts = _steps(model, tap, x, y, seed=5)
    np.testing.assert_allclose(float(loss_b), float(loss_a), rtol=1e-6)
    assert len(grads_a) == len(grads_b) == len(model.trainable_variables)
    for ga, gb in zip(grads_a, grads_b):
        np.testing.assert_allclose(gb.numpy(), ga.numpy(), rtol=1e-6, atol=1e-9)
    for a, b in zip(after_a, after_b):  # BatchNorm moved once, Dropout drew the same mask
        np.testing.assert_allclose(b, a, rtol=1e-6)
    assert list(acts) == layers
    expected = xai.tap(model, layers, logits=False)(x, training=False)
    assert [tuple(a.shape) for a in acts.values()] == [tuple(e.shape) for e in expected]


def test_training_tap_gradients_flow_into_activations(data):
    model = demo_cnn(dropout=False)
    tap = xai.TrainingTap(model, "last_conv")
    assert tap.head == "softmax" and tap.layers == ("last_conv",) and tap.channel_axes == (3,)
    assert "last_conv" in repr(tap)
    x = tf.constant(np.asarray(data.images[:4], np.float32))
    with tf.GradientTape() as tape:
        logits, acts = tap(x, training=False)
        penalty = tf.reduce_mean(acts["last_conv"])
    grads = tape.gradient(penalty, tap.trainable_variables)
    names = [v.path for v, g in zip(tap.trainable_variables, grads) if g is not None]
    assert any("last_conv" in n for n in names) and not any("predictions" in n for n in names)
    np.testing.assert_allclose(
        tf.nn.softmax(logits), model(x, training=False), rtol=1e-5, atol=1e-6
    )


def test_training_tap_output_of_a_multi_output_model():
    model = testing.multi_output_model((SIZE, SIZE, 3))
    x = testing.random_images(3, (SIZE, SIZE, 3))
    for output, head, width in (("species", "softmax", 3), ("is_animal", "sigmoid", 1)):
        tap = xai.TrainingTap(model, "last_conv", output=output)
        logits, acts = tap(x)
        assert tap.head == head and logits.shape == (3, width) and list(acts) == ["last_conv"]
        expected = model(x)[0 if output == "species" else 1]
        activation = tf.nn.softmax if head == "softmax" else tf.sigmoid
        np.testing.assert_allclose(activation(logits), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(XaiValueError, match="`output` must be given"):
        xai.TrainingTap(model, "last_conv")


def test_training_tap_errors():
    with pytest.raises(XaiValueError, match="`layers` must be one or more layer paths"):
        xai.TrainingTap(demo_cnn(), layers=[])
    with pytest.raises(ModelStructureError, match="Did you mean 'last_conv'"):
        xai.TrainingTap(demo_cnn(), layers="last_cnv")
    with pytest.raises(XaiTypeError, match="`model` must be a keras.Model"):
        xai.TrainingTap("model", layers="x")


@pytest.mark.slow
def test_example_trains_with_the_tap():
    spec = importlib.util.spec_from_file_location(
        "train_with_tap", ROOT / "examples" / "train_with_tap.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    history = module.main(["--num-images", "32", "--image-size", "32", "--batch-size", "16"])
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    assert all(0.0 <= s <= 1.0 for s in history["sparsity/last_relu"])
