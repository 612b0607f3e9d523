"""ViT benchmark: Grad-CAM on tokens, attention rollout and generic attention vs their baselines.

Model: a ViT-Tiny-sized keras-hub ``ViTImageClassifier`` built from config (224 px, patch 16, 12
blocks, width 192, 3 heads, MLP 768; no download), batch 32. Ratios are measured in one process
with the runs interleaved (this machine is noisy), median of ``--repeats`` rounds after one
warm-up:

* Grad-CAM on tokens / a plain forward pass (``Engine.forward``, the same compiled kind of step);
* attention rollout / a plain forward pass;
* generic attention / one input-gradient step (``saliency``).

Peak memory: the peak RSS (VmHWM) of a fresh process that builds the model and runs one step
(compiling it), one process per step, beside the forward pass's.

Run:  python bench/bench_vit.py            (writes bench/results/vit.md and vit.json)
      python bench/bench_vit.py --quick    (a 2-block ViT at 64 px, for a smoke test)
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import rss_mib  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("gradcam", "attention_rollout", "generic_attention", "saliency")


def build(quick: bool):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    if quick:
        config = dict(image_shape=(64, 64, 3), patch_size=16, num_layers=2, num_heads=3,
                      hidden_dim=48, mlp_dim=96)  # fmt: skip
    else:
        config = dict(image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=3,
                      hidden_dim=192, mlp_dim=768)  # fmt: skip
    backbone = keras_hub.models.ViTBackbone(**config)
    model = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=1000)
    return model, config["image_shape"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one step, peak RSS
    args = parser.parse_args(argv)

    import numpy as np

    import xai

    model, shape = build(args.quick)
    x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
    explainer = xai.Explainer(model)
    targets = np.zeros(args.batch, np.int32)
    forward = explainer.engine(False)

    def run(method: str) -> None:
        explainer.explain(x, method, targets=targets, batch_size=args.batch, progress=False)

    jobs = {"forward": lambda: forward.forward([x])}
    jobs.update({m: (lambda m=m: run(m)) for m in METHODS})
    if args.child is not None:
        jobs[args.child]()
        print(f"PEAK {rss_mib('VmHWM'):.1f}")
        return 0
    peaks = {}
    for name in jobs:  # fresh processes first: nothing else is using the CPU yet
        cmd = [sys.executable, __file__, "--child", name, "--batch", str(args.batch)]
        out = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        peaks[name] = float(out.rsplit("PEAK ", 1)[1])
    for job in jobs.values():  # warm-up: build and compile every step
        job()
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            t0 = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {
        "gradcam / forward": med["gradcam"] / med["forward"],
        "attention_rollout / forward": med["attention_rollout"] / med["forward"],
        "generic_attention / input-gradient step": med["generic_attention"] / med["saliency"],
        "input-gradient step / forward": med["saliency"] / med["forward"],
    }
    targets_met = {
        "gradcam / forward": 1.3,
        "attention_rollout / forward": 1.2,
        "generic_attention / input-gradient step": 1.2,
    }
    result = {
        "model": "keras-hub ViTImageClassifier, "
        + (
            "quick 64 px, 2 blocks"
            if args.quick
            else "ViT-Tiny: 224 px, patch 16, 12 blocks, width 192, 3 heads"
        ),
        "batch": args.batch,
        "repeats": args.repeats,
        "median_seconds": {k: round(v, 4) for k, v in med.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "targets": targets_met,
        "peak_rss_mib_fresh_process": peaks,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    print(json.dumps(result, indent=2))
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "vit.json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [
            "# ViT benchmark (bench/bench_vit.py)",
            "",
            f"{result['model']}, batch {args.batch}, median of {args.repeats} interleaved rounds.",
            "",
            "| ratio | measured | target |",
            "|---|---|---|",
        ]
        for k, v in ratios.items():
            target = f"<= {targets_met[k]:.1f}x" if k in targets_met else "-"
            lines.append(f"| {k} | {v:.2f}x | {target} |")
        lines += ["", "| step | median s | peak RSS MiB (fresh process) |", "|---|---|---|"]
        for k in jobs:
            lines.append(f"| {k} | {med[k]:.3f} | {peaks[k]} |")
        (RESULTS / "vit.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
