"""Quickstart: explain the shipped shapes CNN on generated images and write overlays.

    python examples/quickstart.py [--out xai-quickstart]

Loads ``xai/assets/shapes_cnn.keras`` (trained by ``datasets/train_demo_models.py``), makes six
test images with ``xai.datasets.make_shapes``, explains them with Grad-CAM and SmoothGrad, and
writes overlays, a grid figure and manifests into the output folder.
"""

from __future__ import annotations

import argparse
import os
from importlib.resources import files
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import xai  # noqa: E402
from xai import datasets, viz  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="xai-quickstart", help="output folder")
    args = parser.parse_args()
    out = Path(args.out)

    model = keras.saving.load_model(files("xai") / "assets" / "shapes_cnn.keras")
    data = datasets.make_shapes(6, seed=2024, split="test")

    explainer = xai.Explainer(model, class_names=data.class_names)  # reuse compiled steps
    cam = explainer.explain(data.images, "gradcam")
    smooth = explainer.explain(data.images, "smoothgrad", num_samples=25, seed=0)

    written = cam.save(out / "gradcam") + smooth.save(out / "smoothgrad")
    figure = viz.figure_grid(
        data.images,
        {"Grad-CAM": cam.overlay(), "SmoothGrad": smooth.overlay()},
        row_labels=[
            f"{cam.label(i)}\ntrue: {data.class_names[t]}" for i, t in enumerate(data.labels)
        ],
    )
    grid = out / "grid.png"
    figure.savefig(grid, dpi=100, bbox_inches="tight")
    written.append(grid)

    print(f"Explained {len(data.images)} images with layer {cam.layer[0]!r}:")
    for i in range(len(cam)):
        print(f"  image {i}: predicted {cam.label(i)}, true {data.class_names[data.labels[i]]}")
    print(f"Wrote {len(written)} files under {out}/, e.g. {grid}")


if __name__ == "__main__":
    main()
