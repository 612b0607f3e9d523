"""Pre-softmax logits from softmax models, without changing them: Sequential, functional, nested.

python examples/logits_from_softmax_models.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import xai  # noqa: E402

x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)

# 1. A Sequential whose last Dense has softmax fused in.
sequential = keras.Sequential(
    [
        keras.Input((32, 32, 3)),
        layers.Conv2D(8, 3, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(5, activation="softmax"),
    ]
)

# 2. A functional model with Softmax as its own layer.
inputs = keras.Input((32, 32, 3))
h = layers.GlobalAveragePooling2D()(layers.Conv2D(8, 3, activation="relu")(inputs))
functional = keras.Model(inputs, layers.Softmax()(layers.Dense(5)(h)))

# 3. A backbone nested as a layer (transfer learning); random weights: no download.
backbone = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
nested = keras.Sequential(
    [
        keras.Input((32, 32, 3)),
        backbone,
        layers.GlobalAveragePooling2D(),
        layers.Dense(5, activation="softmax"),
    ]
)

for name, model in [("sequential", sequential), ("functional", functional), ("nested", nested)]:
    logits = np.asarray(xai.logits_model(model)(x))
    probabilities = np.asarray(model(x))
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    print(
        f"{name:>10}: logits {logits.shape}, max |softmax(logits) - model(x)| = "
        f"{np.abs(softmax - probabilities).max():.1e}; model still ends in softmax: "
        f"{np.allclose(probabilities.sum(axis=1), 1.0)}"
    )

# Logits plus a layer *inside* the nested backbone, in one forward pass:
logits, features = xai.tap(nested, f"{backbone.name}/out_relu")(x)
print(f"nested tap: logits {tuple(logits.shape)}, {backbone.name}/out_relu {tuple(features.shape)}")
