"""Every layer's output of a CNN in one forward pass (the "access all layer outputs" use case).

python examples/all_layer_outputs.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import xai  # noqa: E402

model = keras.Sequential(
    [
        keras.Input((28, 28, 1)),
        layers.Conv2D(8, 3, activation="relu", name="conv1"),
        layers.BatchNormalization(name="bn"),
        layers.MaxPooling2D(name="pool"),
        layers.Conv2D(16, 3, activation="relu", name="conv2"),
        layers.Flatten(name="flatten"),
        layers.Dense(10, activation="softmax", name="predictions"),
    ]
)
x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)

names = xai.layer_paths(model, leaves_only=True)
logits, *outputs = xai.tap(model, "all")(x)
print(f"{'logits (pre-softmax)':<22} {tuple(logits.shape)}")
for name, value in zip(names, outputs):
    value = np.asarray(value)
    print(f"{name:<22} {str(value.shape):<18} mean={value.mean():+.4f}")
