"""Grad-CAM and SmoothGrad on a 1-D signal classifier (Conv1D): where in time is the evidence?

A tiny model is trained for a few seconds to tell a signal with a bump in its first half from one
with a bump in its second half; Grad-CAM should point at the bump.

    python examples/signal_1d.py [--out xai-signal.png]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import xai  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="xai-signal.png")
args = parser.parse_args()

rng = np.random.default_rng(0)
length = 64


def make(n):
    t = np.arange(length)
    labels = rng.integers(0, 2, n)
    centres = np.where(labels == 0, rng.integers(8, 24, n), rng.integers(40, 56, n))
    signals = np.exp(-0.5 * ((t[None] - centres[:, None]) / 3.0) ** 2) + 0.2 * rng.normal(
        size=(n, length)
    )
    return signals[..., None].astype(np.float32), labels, centres


x, y, _ = make(512)
keras.utils.set_random_seed(0)
model = keras.Sequential(
    [
        keras.Input((length, 1)),
        layers.Conv1D(8, 5, activation="relu", padding="same"),
        layers.Conv1D(8, 5, activation="relu", padding="same", name="last_conv"),
        layers.GlobalAveragePooling1D(),
        layers.Dense(2, activation="softmax"),
    ]
)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=8, batch_size=32, verbose=0)

test_x, test_y, centres = make(8)
cam = xai.explain(model, test_x, "gradcam", targets=test_y)
hits = np.abs(cam.heatmap.argmax(axis=1) - centres) <= 6
print(f"layer {cam.layer[0]}: CAM {cam.attributions.shape} -> heatmap {cam.heatmap.shape}")
print(f"Grad-CAM peak within 6 steps of the bump on {hits.sum()}/{len(hits)} signals")
smooth = xai.explain(model, test_x, "smoothgrad", targets=test_y, num_samples=20, seed=0)
print(f"SmoothGrad attributions {smooth.attributions.shape}")
fig = cam.plot(0)
fig.savefig(args.out, dpi=80)
print(f"wrote {args.out}")
