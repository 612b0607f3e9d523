"""A two-branch model (an RGB photo and a grey depth map): one Grad-CAM per input branch.

python examples/multi_input.py [--out xai-multi-input]
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import xai  # noqa: E402
from xai import io  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="xai-multi-input")
out = Path(parser.parse_args().out)

keras.utils.set_random_seed(0)
photo = keras.Input((32, 32, 3), name="photo")
depth = keras.Input((24, 24, 1), name="depth")
a = layers.Conv2D(8, 3, activation="relu", name="photo_conv")(photo)
b = layers.Conv2D(8, 3, activation="relu", name="depth_conv")(depth)
merged = layers.Concatenate()(
    [layers.GlobalAveragePooling2D()(a), layers.GlobalAveragePooling2D()(b)]
)
model = keras.Model([photo, depth], layers.Dense(3, activation="softmax")(merged))

rng = np.random.default_rng(1)
photos = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
depths = rng.integers(0, 256, (2, 24, 24, 1), dtype=np.uint8)

e = xai.explain(model, [photos, depths], "gradcam")  # layers auto-selected per branch
print("layers:", e.layer)
for j, name in enumerate(["photo", "depth"]):
    heat = e.heatmap_for(j)
    overlays = e.overlay(input_index=j)
    for i, o in enumerate(overlays):
        io.write_png(out / f"{name}_{i}.png", o)
    print(
        f"{name}: raw CAM {e.attributions[j].shape}, heatmap {heat.shape}, "
        f"overlays {overlays.shape}"
    )
print(f"wrote overlays to {out}/")
