"""Dense targets benchmark: localisation of region/box explanations, and region Grad-CAM's cost.

On the shipped models (``xai/assets/shapes_segmenter.keras``, ``shapes_detector.keras``) and the
held-out two-object scenes (``xai.scenes.make_scenes(split="test")``, objects of different
classes):

* segmentation: for each image and each of its two objects A (the other is B), the map of
  ``xai.targets.region(class_A)`` (mask=None: the pixels the model assigns to A's class);
* detection: for each image and each object A, the map of ``xai.targets.box(box_A, class_A)``;
* "peak on A" is the pointing game of ``xai.audit.localisation`` (a maximal heatmap pixel inside
  A's mask or box, tolerance 0), "on A, not B" also requires that no maximal pixel lies on B; the
  energy is the share of the heatmap's mass inside A (and inside B);
* speed: region Grad-CAM (``xai.Explainer.explain``, batch 32) over a plain compiled forward pass
  of the segmenter (``tf.function(model)``), interleaved, median of the per-repeat ratios.

Run:  python bench/bench_targets.py            (writes bench/results/targets.md and targets.json)
      python bench/bench_targets.py --quick    (fewer images and repeats)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).resolve().parent / "results"
ASSETS = Path(__file__).resolve().parents[1] / "xai" / "assets"


def box_masks(b):
    """Boolean ``(N, 64, 64)`` masks of ``(N, 4)`` boxes ``x0, y0, x1, y1``."""
    import numpy as np

    m = np.zeros((len(b), 64, 64), bool)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(b).astype(int)):
        m[i, y0:y1, x0:x1] = True
    return m


def pointing(heat, a, b) -> dict:
    """Pointing game (xai.audit.localisation: any maximal pixel inside, tolerance 0) on A, on B,
    on A and not B; mean energy inside A and inside B."""
    import numpy as np

    from xai.audit.localisation import energy_inside, pointing_game

    on_a, on_b = pointing_game(heat, a), pointing_game(heat, b)
    return {
        "maps": len(heat),
        "peak_on_A": float(on_a.mean()),
        "peak_on_B": float(on_b.mean()),
        "peak_on_A_not_B": float((on_a & ~on_b).mean()),
        "energy_inside_A_mean": float(energy_inside(heat, a).mean()),
        "energy_inside_B_mean": float(energy_inside(heat, b).mean()),
        "object_area_share_mean": float(np.mean(a.mean(axis=(1, 2)))),
    }


def segmentation_localisation(model, scenes, method: str, *, true_mask: bool = False, **params):
    """The region map of each object's class, ``region(class_A)`` (mask=None, or A's true mask
    with ``true_mask``), scored against A's and B's masks (``xai.audit.region_localisation``)."""
    import numpy as np

    from xai.audit import region_localisation

    r = region_localisation(
        model,
        np.asarray(scenes.images, np.float32),
        scenes.object_masks,
        scenes.object_classes,
        method=method,
        region_mask="true" if true_mask else "predicted",
        **params,
    )
    return {
        "maps": r["maps"],
        "peak_on_A": r["pointing_game"],
        "peak_on_B": r["on_other_object"],
        "peak_on_A_not_B": r["on_object_not_other"],
        "energy_inside_A_mean": r["energy_inside"],
        "energy_inside_B_mean": r["energy_inside_others"],
        "object_area_share_mean": float(np.mean(scenes.object_masks.mean(axis=(2, 3)))),
    }


def detection_localisation(model, scenes, method: str, **params) -> dict:
    """The map of ``box(box_k, class_k)`` for each object k, scored against the two boxes."""
    import numpy as np

    import xai
    from xai import boxes

    images = np.asarray(scenes.images, np.float32)
    anchors = boxes.shapes_anchors()
    heats, a_masks, b_masks = [], [], []
    for k in (0, 1):
        target = xai.targets.box(
            np.asarray(scenes.boxes[:, k]),
            np.asarray(scenes.object_classes[:, k]) - 1,
            anchors=anchors,
        )
        e = xai.explain(model, images, method, targets=target, output="cls_logits", **params)
        heats.append(e.heatmap)
        a_masks.append(box_masks(scenes.boxes[:, k]))
        b_masks.append(box_masks(scenes.boxes[:, 1 - k]))
    return pointing(np.concatenate(heats), np.concatenate(a_masks), np.concatenate(b_masks))


def speed(model, repeats: int, batch: int) -> dict:
    import numpy as np
    import tensorflow as tf

    import xai
    from xai.scenes import make_scenes

    x = np.asarray(make_scenes(batch, seed=1, split="test").images, np.float32)
    forward = tf.function(
        lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, 64, 64, 3))]
    )
    xt = tf.constant(x)
    explainer = xai.Explainer(model, layer="features_relu")
    target = xai.targets.region(1)
    forward(xt)
    explainer.explain(x, "gradcam", targets=target, batch_size=batch)
    fwd, cam = [], []
    for _ in range(repeats):  # interleaved
        t0 = time.perf_counter()
        forward(xt).numpy()
        fwd.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        explainer.explain(x, "gradcam", targets=target, batch_size=batch)
        cam.append(time.perf_counter() - t0)
    ratios = [c / f for c, f in zip(cam, fwd)]
    return {
        "batch": batch,
        "repeats": repeats,
        "forward_ms_per_image": 1000 * statistics.median(fwd) / batch,
        "region_gradcam_ms_per_image": 1000 * statistics.median(cam) / batch,
        "region_gradcam_over_forward_median": statistics.median(ratios),
        "ratios_min_max": [min(ratios), max(ratios)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--num-images", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    if args.quick:
        args.num_images, args.repeats = 20, 5

    import keras

    from xai.scenes import make_scenes

    seg = keras.saving.load_model(ASSETS / "shapes_segmenter.keras")
    det = keras.saving.load_model(ASSETS / "shapes_detector.keras")
    scenes = make_scenes(args.num_images, seed=0, split="test")
    feat = {"layer": "features_relu"}
    res = {
        "segmentation": {
            "gradcam (features_relu)": segmentation_localisation(seg, scenes, "gradcam", **feat),
            "gradcam (features_relu), A's true mask": segmentation_localisation(
                seg, scenes, "gradcam", true_mask=True, **feat
            ),
            "hirescam (features_relu)": segmentation_localisation(seg, scenes, "hirescam", **feat),
            "gradcam (auto layer: the logits map)": segmentation_localisation(
                seg, scenes, "gradcam"
            ),
            "smoothgrad": segmentation_localisation(seg, scenes, "smoothgrad", seed=0),
            "saliency": segmentation_localisation(seg, scenes, "saliency"),
        },
        "detection": {
            "saliency": detection_localisation(det, scenes, "saliency"),
            "smoothgrad": detection_localisation(det, scenes, "smoothgrad", seed=0),
            "gradcam (features_relu)": detection_localisation(det, scenes, "gradcam", **feat),
            "hirescam (features_relu)": detection_localisation(det, scenes, "hirescam", **feat),
            "gradcam (auto layer: cls_head)": detection_localisation(det, scenes, "gradcam"),
        },
        "speed": speed(seg, args.repeats, 32),
        "num_images": args.num_images,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        "(shared with other jobs: ratios interleaved, medians)",
    }
    name = "targets_quick" if args.quick else "targets"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# Dense targets: localisation and cost",
        "",
        f"{args.num_images} held-out two-object scenes (`make_scenes(split='test', seed=0)`); "
        "see `bench/bench_targets.py` for the definitions.",
        "",
    ]
    header = (
        "| maps | peak on A | peak on B | on A, not B | energy in A | energy in B | A's area |",
        "|---|---|---|---|---|---|---|---|",
    )
    for task, what in (
        ("segmentation", "segmenter: region(class of A), mask=None unless said; A, B = masks"),
        ("detection", "detector: box(box of A, class of A); A, B = the two boxes"),
    ):
        lines += [f"| {what} " + header[0], header[1]]
        for m, r in res[task].items():
            lines.append(
                f"| {m} | {r['maps']} | {r['peak_on_A']:.1%} | {r['peak_on_B']:.1%} | "
                f"{r['peak_on_A_not_B']:.1%} | {r['energy_inside_A_mean']:.1%} | "
                f"{r['energy_inside_B_mean']:.1%} | {r['object_area_share_mean']:.1%} |"
            )
        lines.append("")
    s = res["speed"]
    lines += [
        "",
        f"Speed (batch {s['batch']}, {s['repeats']} interleaved repeats, medians): forward "
        f"{s['forward_ms_per_image']:.3f} ms/image, region Grad-CAM "
        f"{s['region_gradcam_ms_per_image']:.3f} ms/image: **"
        f"{s['region_gradcam_over_forward_median']:.2f}x** the forward pass (range "
        f"{s['ratios_min_max'][0]:.2f}-{s['ratios_min_max'][1]:.2f}).",
        "",
        f"Machine: {res['machine']}.",
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
