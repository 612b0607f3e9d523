"""Vision Transformers: the shipped ViT and a keras-hub ViT, explained without a reshape_transform.

Grad-CAM on the token grid, attention rollout and generic attention (Chefer et al., ICCV 2021),
side by side; the attention probabilities of any block, read without changing a layer.

python examples/vision_transformer.py [--out xai-vit]
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import xai  # noqa: E402
from xai import io  # noqa: E402
from xai.datasets import make_shapes  # noqa: E402
from xai.demo import shipped_model_path  # noqa: E402
from xai.models_io import load_model  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="xai-vit")
out = Path(parser.parse_args().out)

# 1. The shipped ViT (class token, 8x8 patch grid) on shapes it has not seen.
vit = load_model(shipped_model_path("shapes_vit.keras"))
data = make_shapes(4, seed=7, split="test")
explainer = xai.Explainer(vit, class_names=data.class_names)
for method in ("gradcam", "attention_rollout", "generic_attention"):
    e = explainer.explain(data.images, method)
    print(f"{method:18s} layer(s) {e.layer[-1]!r:28s} map {e.attributions.shape[1:]}")
    for i, overlay in enumerate(e.overlay()):
        io.write_png(out / f"shapes_{i}_{method}.png", overlay)

# 2. Any block's attention probabilities (B, heads, T, T), and the tokens it attends over.
logits, attention, tokens = xai.tap(vit, ["block2_attention:attention", "block2_attention:input"])(
    data.images.astype("float32")
)
print(
    "attention", tuple(attention.shape), "rows sum to", float(np.asarray(attention).sum(-1).mean())
)

# 3. A keras-hub ViT built from config (no download), if the `hub` extra is installed.
try:
    import keras_hub
except ImportError:
    print("keras-hub not installed: pip install 'xai[hub]' for part 3")
else:
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(64, 64, 3), patch_size=16, num_layers=2, num_heads=2, hidden_dim=32,
        mlp_dim=64,
    )  # fmt: skip
    hub_vit = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=4)
    e = xai.explain(hub_vit, data.images / 255.0, "generic_attention")
    print("keras-hub ViT:", e.layer[0], "...", e.attributions.shape[1:], "grid")
print(f"overlays in {out}/")
