"""Tiny seeded Keras models for tests, docs and examples (no downloads, built in milliseconds).

Every builder takes a ``seed`` and returns a freshly built model; the same seed gives the same
weights. Layer names are fixed so tests can address them.
"""

from __future__ import annotations

from typing import Any, Literal

import keras
import numpy as np
from keras import layers as L


def _seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def functional_cnn(
    input_shape: tuple[int, ...] = (16, 16, 3),
    num_classes: int = 4,
    *,
    head: Literal[
        "dense_softmax", "softmax_layer", "activation_softmax", "linear", "sigmoid"
    ] = "dense_softmax",
    seed: int = 0,
) -> keras.Model:
    """``Input -> Conv(8) -> Conv(6, "last_conv") -> GAP -> Dense(num_classes) -> head``."""
    _seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="last_conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    if head == "dense_softmax":
        out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    elif head == "softmax_layer":
        out = L.Softmax(name="predictions")(L.Dense(num_classes, name="logits")(x))
    elif head == "activation_softmax":
        out = L.Activation("softmax", name="predictions")(L.Dense(num_classes, name="logits")(x))
    elif head == "linear":
        out = L.Dense(num_classes, name="predictions")(x)
    elif head == "sigmoid":
        out = L.Dense(num_classes, activation="sigmoid", name="predictions")(x)
    else:
        raise ValueError(f"unknown head {head!r}")
    return keras.Model(inputs, out, name=f"functional_cnn_{head}")


def sequential_cnn(
    input_shape: tuple[int, ...] = (16, 16, 3),
    num_classes: int = 4,
    *,
    built: Literal["input", "build", "call"] = "input",
    seed: int = 0,
) -> keras.Sequential:
    """A Sequential CNN ending in ``Dense(softmax)``, built via keras.Input, build() or a call."""
    _seed(seed)
    body = [
        L.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        L.Conv2D(6, 3, padding="same", activation="relu", name="last_conv"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Dense(num_classes, activation="softmax", name="predictions"),
    ]
    if built == "input":
        model = keras.Sequential([keras.Input(input_shape), *body], name="sequential_cnn")
    else:
        model = keras.Sequential(body, name="sequential_cnn")
        if built == "build":
            model.build((None, *input_shape))
        else:
            model(np.zeros((1, *input_shape), np.float32))
    return model


def bn_cnn(
    input_shape: tuple[int, ...] = (16, 16, 3), num_classes: int = 3, *, seed: int = 0
) -> keras.Model:
    """``Conv -> BatchNorm -> ReLU -> MaxPool -> Flatten -> Dense(softmax)``."""
    _seed(seed)
    inputs = keras.Input(input_shape)
    x = L.Conv2D(6, 3, name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="bn_cnn")


def linear_model(num_features: int = 6, num_classes: int = 3, *, seed: int = 0) -> keras.Model:
    """``Input(num_features) -> Dense(num_classes, softmax)``: logit gradients = weight columns."""
    _seed(seed)
    inputs = keras.Input((num_features,))
    out = L.Dense(num_classes, activation="softmax", name="predictions")(inputs)
    return keras.Model(inputs, out, name="linear_model")


def backbone(
    input_shape: tuple[int, ...] = (16, 16, 3), *, seed: int = 0, name: str = "backbone"
) -> keras.Model:
    """A small functional feature extractor (no head), to nest inside other models."""
    _seed(seed)
    inputs = keras.Input(input_shape)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = L.Conv2D(6, 3, padding="same", name="conv2")(x)
    x = L.ReLU(name="out_relu")(x)
    return keras.Model(inputs, x, name=name)


def nested_backbone(
    input_shape: tuple[int, ...] = (16, 16, 3),
    num_classes: int = 4,
    *,
    kind: Literal["sequential", "functional", "double"] = "functional",
    seed: int = 0,
) -> keras.Model:
    """A backbone model used as a layer: ``[Rescaling, backbone, GAP, Dense(softmax)]``.

    ``kind="double"`` nests the backbone inside a Sequential that is itself nested (two levels).
    The inner CAM layer is ``"backbone/out_relu"`` (``"wrapper/backbone/out_relu"`` for double).
    """
    base = backbone(input_shape, seed=seed)
    _seed(seed + 1)
    if kind == "sequential":
        return keras.Sequential(
            [
                keras.Input(input_shape),
                L.Rescaling(1.0, name="rescale"),
                base,
                L.GlobalAveragePooling2D(name="gap"),
                L.Dense(num_classes, activation="softmax", name="predictions"),
            ],
            name="nested_sequential",
        )
    inputs = keras.Input(input_shape)
    x = L.Rescaling(1.0, name="rescale")(inputs)
    if kind == "double":
        wrapper = keras.Sequential([keras.Input(input_shape), base], name="wrapper")
        x = wrapper(x)
    else:
        x = base(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name=f"nested_{kind}")


def residual_ops_cnn(
    input_shape: tuple[int, ...] = (16, 16, 3), num_classes: int = 4, *, seed: int = 0
) -> keras.Model:
    """A residual CNN written the Keras 3 way, ``x = x + y``: the head reads the sum.

    ``stem -> [block1_conv1 -> block1_conv2] + stem -> GAP -> Dense(softmax)``; the sum is a
    Keras operation node (``Add``), not a layer, and ``block1_conv2`` is inside the branch.
    """
    _seed(seed)
    inputs = keras.Input(input_shape, name="image")
    stem = L.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inputs)
    y = L.Conv2D(6, 3, padding="same", activation="relu", name="block1_conv1")(stem)
    y = L.Conv2D(6, 3, padding="same", activation="relu", name="block1_conv2")(y)
    x = stem + y
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="residual_ops_cnn")


def ops_tail_cnn(
    input_shape: tuple[int, ...] = (16, 16, 3), num_classes: int = 3, *, seed: int = 0
) -> keras.Model:
    """Two conv branches joined by ``keras.ops.concatenate`` (an operation node) before the head."""
    _seed(seed)
    inputs = keras.Input(input_shape, name="image")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="branch_a")(inputs)
    b = L.Conv2D(5, 5, padding="same", activation="relu", name="branch_b")(inputs)
    x = keras.ops.concatenate([a, b], axis=-1)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="ops_tail_cnn")


class ConvBlock(keras.layers.Layer):
    """A custom residual block whose conv sub-layers run inside ``call()`` (not graph nodes)."""

    def __init__(self, filters: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.conv_a = L.Conv2D(filters, 3, padding="same", name="conv_a")
        self.conv_b = L.Conv2D(filters, 3, padding="same", name="conv_b")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        y = self.conv_b(keras.ops.relu(self.conv_a(x)))
        return keras.ops.relu(x + y)

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "filters": self.filters}


class BlockStack(keras.layers.Layer):
    """Blocks called in a Python loop inside one layer, like keras-hub's transformer encoders."""

    def __init__(self, filters: int, depth: int = 2, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.filters, self.depth = filters, depth
        self.blocks = [ConvBlock(filters, name=f"block{i}") for i in range(depth)]

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        for block in self.blocks:
            x = block(x)
        return x

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "filters": self.filters, "depth": self.depth}


def custom_block_cnn(
    input_shape: tuple[int, ...] = (16, 16, 3), num_classes: int = 3, *, seed: int = 0
) -> keras.Model:
    """``stem -> BlockStack("stack": block0, block1, each with conv_a/conv_b) -> GAP -> Dense``.

    Sub-layer paths: ``"stack/block0/conv_a"``, ...; ``"stack"`` is the graph node.
    """
    _seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inputs)
    x = BlockStack(6, name="stack")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="custom_block_cnn")


def two_input_model(
    left_shape: tuple[int, ...] = (16, 16, 3),
    right_shape: tuple[int, ...] = (12, 12, 1),
    num_classes: int = 3,
    *,
    seed: int = 0,
) -> keras.Model:
    """Two image branches (``left_conv``, ``right_conv``) concatenated into one softmax head."""
    _seed(seed)
    left_in = keras.Input(left_shape, name="left")
    right_in = keras.Input(right_shape, name="right")
    a = L.Conv2D(4, 3, activation="relu", name="left_conv")(left_in)
    b = L.Conv2D(5, 3, activation="relu", name="right_conv")(right_in)
    x = L.Concatenate(name="concat")([L.GlobalAveragePooling2D()(a), L.GlobalAveragePooling2D()(b)])
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model([left_in, right_in], out, name="two_input")


def multi_output_model(input_shape: tuple[int, ...] = (16, 16, 3), *, seed: int = 0) -> keras.Model:
    """One trunk, two heads: ``"species"`` (softmax, 3) and ``"is_animal"`` (sigmoid, 1)."""
    _seed(seed)
    inputs = keras.Input(input_shape)
    x = L.Conv2D(6, 3, activation="relu", name="last_conv")(inputs)
    x = L.GlobalAveragePooling2D()(x)
    species = L.Dense(3, activation="softmax", name="species")(x)
    animal = L.Dense(1, activation="sigmoid", name="is_animal")(x)
    return keras.Model(inputs, [species, animal], name="multi_output")


def conv1d_model(
    length: int = 20, channels: int = 1, num_classes: int = 3, *, seed: int = 0
) -> keras.Model:
    """A 1-D signal classifier ``Conv1D -> Conv1D("last_conv") -> GAP -> Dense(softmax)``."""
    _seed(seed)
    inputs = keras.Input((length, channels))
    x = L.Conv1D(4, 3, activation="relu", name="conv1")(inputs)
    x = L.Conv1D(5, 3, activation="relu", name="last_conv")(x)
    x = L.GlobalAveragePooling1D()(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="conv1d_model")


def conv3d_model(
    input_shape: tuple[int, ...] = (8, 12, 12, 1), num_classes: int = 2, *, seed: int = 0
) -> keras.Model:
    """A volume classifier ``Conv3D("last_conv") -> GAP -> Dense(softmax)``."""
    _seed(seed)
    inputs = keras.Input(input_shape)
    x = L.Conv3D(4, 3, activation="relu", name="last_conv")(inputs)
    x = L.GlobalAveragePooling3D()(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="conv3d_model")


def channels_first_cnn(
    input_shape: tuple[int, ...] = (3, 16, 16), num_classes: int = 3, *, seed: int = 0
) -> keras.Model:
    """A ``channels_first`` CNN (input ``(C, H, W)``)."""
    _seed(seed)
    inputs = keras.Input(input_shape)
    x = L.Conv2D(5, 3, activation="relu", data_format="channels_first", name="last_conv")(inputs)
    x = L.GlobalAveragePooling2D(data_format="channels_first")(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="channels_first_cnn")


def mlp(num_features: int = 8, num_classes: int = 3, *, seed: int = 0) -> keras.Model:
    """A model without any spatial layer (CAM methods must refuse it; gradients still work)."""
    _seed(seed)
    inputs = keras.Input((num_features,))
    x = L.Dense(16, activation="relu", name="hidden")(inputs)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="mlp")


class SubclassedNet(keras.Model):
    """A subclassed model with a custom ``call``: it has no layer graph."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__(name="subclassed_net")
        self.conv = L.Conv2D(4, 3, activation="relu")
        self.pool = L.GlobalAveragePooling2D()
        self.head = L.Dense(num_classes, activation="softmax")

    def call(self, inputs):  # noqa: D401 - Keras signature
        return self.head(self.pool(self.conv(inputs)))


def subclassed_model(input_shape: tuple[int, ...] = (16, 16, 3), *, seed: int = 0) -> keras.Model:
    """A built :class:`SubclassedNet`."""
    _seed(seed)
    net = SubclassedNet()
    net(np.zeros((1, *input_shape), np.float32))
    return net


def random_images(
    n: int, shape: tuple[int, ...] = (16, 16, 3), *, seed: int = 0, dtype: str = "float32"
) -> np.ndarray:
    """Seeded random inputs: uint8 in [0, 255] or float in [0, 1)."""
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return rng.random((n, *shape), dtype=np.float32)


def model_fingerprint(model: keras.Model) -> dict[str, object]:
    """What must not change when xai explains ``model``: weights, configs, activations."""
    return {
        "weights": [np.array(w) for w in model.get_weights()],
        "weight_names": [w.path for w in model.weights],
        "configs": [repr(layer.get_config()) for layer in model.layers],
        "activations": [
            getattr(getattr(layer, "activation", None), "__name__", None) for layer in model.layers
        ],
        "trainable": [layer.trainable for layer in model.layers],
    }


def assert_model_unchanged(
    model: keras.Model, before: dict[str, object], x: np.ndarray, predict_before: np.ndarray
) -> None:
    """Assert that ``model`` matches its :func:`model_fingerprint` ``before`` and still predicts
    ``predict_before`` on ``x``, bit for bit."""
    after = model_fingerprint(model)
    for a, b in zip(before["weights"], after["weights"]):  # type: ignore[call-overload]
        np.testing.assert_array_equal(a, b)
    for key in ("configs", "activations", "trainable"):
        assert before[key] == after[key], key  # noqa: S101 - a test helper
    np.testing.assert_array_equal(model.predict(x, verbose=0), predict_before)


def transfer_model(
    base: keras.Model, head: list[keras.layers.Layer], wrap: Literal["sequential", "functional"]
) -> keras.Model:
    """A backbone nested under a head, the transfer-learning way: ``Sequential([Input, base,
    *head])`` or ``Input -> Rescaling(1) -> base -> *head`` (functional)."""
    shape = tuple(base.inputs[0].shape[1:])
    if wrap == "sequential":
        return keras.Sequential([keras.Input(shape), base, *head])
    inp = keras.Input(shape)
    x = L.Rescaling(1.0)(inp)
    x = base(x)
    for layer in head:
        x = layer(x)
    return keras.Model(inp, x)


# ---------------------------------------------------------------------------------------------
# Builders for the method reference and contract tests (tests/test_methods_reference.py, ...)
# ---------------------------------------------------------------------------------------------


def hand_weighted_cnn(*, softmax: bool = True) -> keras.Model:
    """A 4x4x1 -> 1x1 Conv(3, relu, "feat") -> Flatten -> Dense(2, "predictions") model with fixed
    weights, small enough to compute every method by hand.

    The 1x1 convolution keeps the input resolution (no resizing in the references), and the
    Flatten -> Dense head makes the gradient vary over positions (``dz_c/dA[i, j, k] =
    W[(i, j, k), c]``), so Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM and LayerCAM all differ.
    """
    inputs = keras.Input((4, 4, 1), name="image")
    x = L.Conv2D(3, 1, activation="relu", name="feat")(inputs)
    x = L.Flatten(name="flatten")(x)
    out = L.Dense(2, activation="softmax" if softmax else None, name="predictions")(x)
    model = keras.Model(inputs, out, name="hand_weighted_cnn")
    conv_w = np.array([1.0, -0.5, 2.0], np.float32).reshape(1, 1, 1, 3)
    conv_b = np.array([-0.2, 0.3, -0.6], np.float32)
    dense_w = (np.cos(np.arange(96, dtype=np.float32) * 0.7) * 0.5).reshape(48, 2)
    dense_b = np.array([0.1, -0.1], np.float32)
    model.get_layer("feat").set_weights([conv_w, conv_b])
    model.get_layer("predictions").set_weights([dense_w, dense_b])
    return model


def segmentation_model(
    input_shape: tuple[int, ...] = (16, 16, 3), num_classes: int = 2, *, seed: int = 0
) -> keras.Model:
    """A fully convolutional per-pixel classifier: output ``(N, H, W, num_classes)`` (softmax).

    Explain a region with a callable target on the logits, e.g.
    ``lambda z: tf.reduce_sum(z[:, :4, :4, 1], axis=(1, 2))``.
    """
    _seed(seed)
    inputs = keras.Input(input_shape)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    out = L.Conv2D(num_classes, 1, activation="softmax", name="segmentation")(x)
    return keras.Model(inputs, out, name="segmentation_model")


def demo_cnn(
    input_shape: tuple[int, ...] = (32, 32, 3),
    num_classes: int = 4,
    *,
    pooling: Literal["max", "avg"] = "max",
    seed: int = 0,
) -> keras.Model:
    """A demo-sized CNN for the shapes dataset (softmax head; train it with ``fit``).

    ``Rescaling(1/255) -> Conv(16) -> MaxPool -> Conv(16) -> MaxPool -> Conv(16, "last_conv") ->
    global max/avg pooling -> Dense``. With max pooling it learns the ``"shortcut"`` variant of
    ``xai.datasets.make_shapes`` (32x32, 768 images, 10 epochs) to ~100 % in a few seconds on CPU.
    """
    _seed(seed)
    inputs = keras.Input(input_shape)
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    pool = L.GlobalMaxPooling2D if pooling == "max" else L.GlobalAveragePooling2D
    x = pool(name="global_pool")(x)
    out = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="demo_cnn")


def shapes_cnn(
    image_size: int = 64, num_classes: int = 4, *, name: str = "shapes_cnn"
) -> keras.Model:
    """The architecture of the shipped demo models (``xai/assets/*.keras``), untrained.

    ``Input`` (RGB floats in 0-255) -> ``Rescaling(1/255)`` -> Conv-BN-ReLU blocks with three
    max-pools -> ``last_conv -> last_bn -> last_relu`` (8x8 at 64x64) -> GAP -> ``Dense(softmax)``
    named ``predictions``. ``datasets/train_demo_models.py`` trains it.
    """

    def block(x, filters, conv, bn, relu):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=conv)(x)
        x = L.BatchNormalization(name=bn)(x)
        return L.ReLU(name=relu)(x)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = block(x, 16, "conv1", "bn1", "relu1")
    x = block(x, 16, "conv1b", "bn1b", "relu1b")  # a second full-resolution conv: learns 2x faster
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = block(x, 32, "conv2", "bn2", "relu2")
    x = L.MaxPooling2D(2, name="pool2")(x)
    x = block(x, 64, "conv3", "bn3", "relu3")
    x = L.MaxPooling2D(2, name="pool3")(x)
    x = block(x, 64, "last_conv", "last_bn", "last_relu")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def conv_bn_relu(x: Any, filters: int, name: str, **kwargs: Any) -> Any:
    """A 3x3 ``Conv2D`` (no bias) -> ``BatchNormalization`` -> ``ReLU`` block, layers named
    ``name``, ``name_bn``, ``name_relu`` (the dense demo models' building block)."""
    x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=name, **kwargs)(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def shapes_segmenter(
    image_size: int = 64, num_classes: int = 5, *, name: str = "shapes_segmenter"
) -> keras.Model:
    """The architecture of the shipped segmentation demo model, untrained.

    ``Input`` (RGB floats in 0-255) -> ``Rescaling(1/255)`` -> five Conv-BN-ReLU blocks down to
    stride 4 (the last two dilated; ``features_relu`` is 16x16 at 64x64) -> 1x1 ``seg_logits`` ->
    bilinear ``UpSampling2D(4)`` -> ``Softmax`` named ``probabilities``: per-pixel class
    probabilities ``(N, H, W, num_classes)``, class 0 the background.
    ``datasets/train_dense_models.py`` trains it on :func:`xai.scenes.make_scenes`.
    """

    block = conv_bn_relu
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = block(x, 16, "conv1")
    x = block(x, 32, "conv2", strides=2)
    x = block(x, 48, "conv3", strides=2)
    x = block(x, 48, "context", dilation_rate=2)
    x = block(x, 48, "features", dilation_rate=4)
    x = L.Conv2D(num_classes, 1, name="seg_logits")(x)
    x = L.UpSampling2D(4, interpolation="bilinear", name="upsample")(x)
    outputs = L.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)
