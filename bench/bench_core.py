"""Core benchmark: Grad-CAM and SmoothGrad cost relative to a plain forward pass.

Model: ``keras.applications.MobileNetV2(weights=None)`` at 224x224, batch 32 (no download).
Every figure is a ratio measured in one process with the runs interleaved (this machine is noisy),
median of ``--repeats`` runs after one warm-up; peak RSS of SmoothGrad(50) is measured in a fresh
subprocess (``ru_maxrss``).

Run:  python bench/bench_core.py            (writes bench/results/core.md and core.json)
      python bench/bench_core.py --quick    (small CNN, for a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).resolve().parent / "results"


def build(quick: bool):
    import keras

    if quick:
        from xai import testing

        return testing.functional_cnn((64, 64, 3), 10), (64, 64, 3)
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None), (224, 224, 3)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rss_mib(field: str = "VmRSS", reset: bool = False) -> float:
    """Current (VmRSS) or peak-since-reset (VmHWM) resident memory of this process, in MiB.

    ``reset=True`` then resets the peak (Linux ``/proc/self/clear_refs``), so the next VmHWM
    reading covers only what ran in between.
    """
    value = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith(field + ":")
    )
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    return value / 1024


def peak_rss_child(quick: bool, num_samples: int, batch: int) -> float:
    """RSS (MiB) in a fresh process: with the model built, peak of one gradient step, peak of
    SmoothGrad."""
    code = f"""
import os, sys
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import numpy as np, xai
from bench_core import build, rss_mib
model, shape = build({quick})
x = np.random.default_rng(0).random(({batch}, *shape), dtype=np.float32)
floor = rss_mib(reset=True)
xai.Explainer(model).explain(x, 'saliency', batch_size={batch})
after_grad = rss_mib('VmHWM', reset=True)
xai.Explainer(model).explain(x, 'smoothgrad', batch_size={batch}, num_samples={num_samples}, seed=0)
print(floor, after_grad, rss_mib('VmHWM'))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    floor, after_grad, peak = (float(v) for v in out.stdout.split()[-3:])
    return floor, after_grad, peak


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small CNN instead of MobileNetV2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sg-repeats", type=int, default=5)
    ap.add_argument(
        "--no-rss", action="store_true", help="skip the SmoothGrad(50) peak-RSS subprocess"
    )
    args = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    import xai

    model, shape = build(args.quick)
    x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
    forward = tf.function(
        lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, *shape))]
    )
    xt = tf.constant(x)
    explainer = xai.Explainer(model)
    engine = explainer.engine(False)
    targets = np.full(args.batch, -1, np.int32)

    first = {}
    first["gradcam_first_call_s"] = timed(lambda: xai.Explainer(model).explain(x[:1], "gradcam"))
    # warm-up of every measured step
    forward(xt)
    explainer.explain(x, "gradcam", batch_size=args.batch)
    engine.gradients([x], targets, "inputs")

    fwd, cam, cam_heat, grad = [], [], [], []
    for _ in range(args.repeats):  # interleaved
        fwd.append(timed(lambda: forward(xt).numpy()))
        cam.append(timed(lambda: explainer.explain(x, "gradcam", batch_size=args.batch)))
        cam_heat.append(
            timed(lambda: explainer.explain(x, "gradcam", batch_size=args.batch).heatmap)
        )
        grad.append(timed(lambda: engine.gradients([x], targets, "inputs")))
    sg, grad_sg = [], []
    for _ in range(args.sg_repeats):
        grad_sg.append(timed(lambda: engine.gradients([x], targets, "inputs")))
        sg.append(
            timed(
                lambda: explainer.explain(
                    x, "smoothgrad", batch_size=args.batch, num_samples=20, seed=0
                )
            )
        )
    med = statistics.median
    ratio = [c / f for c, f in zip(cam, fwd)]
    ratio_heat = [c / f for c, f in zip(cam_heat, fwd)]
    sg_ratio = [s / (20 * g) for s, g in zip(sg, grad_sg)]
    res = {
        "model": "small CNN 64x64" if args.quick else "MobileNetV2(weights=None) 224x224",
        "batch": args.batch,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "forward_ms_per_image": 1000 * med(fwd) / args.batch,
        "gradcam_ms_per_image": 1000 * med(cam) / args.batch,
        "gradcam_over_forward": med(ratio),
        "gradcam_with_heatmap_over_forward": med(ratio_heat),
        "input_gradient_ms_per_image": 1000 * med(grad) / args.batch,
        "input_gradient_over_forward": med([g / f for g, f in zip(grad, fwd)]),
        "smoothgrad20_ms_per_image": 1000 * med(sg) / args.batch,
        "smoothgrad20_over_20_gradient_steps": med(sg_ratio),
        **first,
    }
    if not args.no_rss:
        floor, after_grad, peak = peak_rss_child(args.quick, 50, args.batch)
        res.update(
            rss_model_mib=floor,
            rss_one_gradient_step_mib=after_grad,
            rss_smoothgrad50_peak_mib=peak,
        )
    RESULTS.mkdir(exist_ok=True)
    name = "core_quick" if args.quick else "core"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    rows = [
        ("plain forward pass", f"{res['forward_ms_per_image']:.2f}", "1.00"),
        (
            "Grad-CAM (`explain`, raw maps)",
            f"{res['gradcam_ms_per_image']:.2f}",
            f"{res['gradcam_over_forward']:.2f}",
        ),
        (
            "Grad-CAM + heatmaps at input size",
            "",
            f"{res['gradcam_with_heatmap_over_forward']:.2f}",
        ),
        (
            "one input-gradient step",
            f"{res['input_gradient_ms_per_image']:.2f}",
            f"{res['input_gradient_over_forward']:.2f}",
        ),
        (
            "SmoothGrad, 20 samples",
            f"{res['smoothgrad20_ms_per_image']:.2f}",
            f"{res['smoothgrad20_over_20_gradient_steps']:.3f} x (20 gradient steps)",
        ),
    ]
    md = [
        f"# Core benchmark: {res['model']}, batch {args.batch}, {res['machine']}",
        "",
        "| step | ms / image | ratio |",
        "|---|---|---|",
    ]
    md += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    md += [
        "",
        "First `explain()` call on one image (build tap + trace): "
        f"{res['gradcam_first_call_s']:.2f} s",
    ]
    if "rss_smoothgrad50_peak_mib" in res:
        md += [
            f"Peak RSS, SmoothGrad(50) on batch {args.batch}: "
            f"{res['rss_smoothgrad50_peak_mib']:.0f} MiB "
            f"(model built, before explaining: {res['rss_model_mib']:.0f} MiB; "
            "peak of saliency, one gradient step: "
            f"{res['rss_one_gradient_step_mib']:.0f} MiB)"
        ]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
