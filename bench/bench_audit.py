"""Audit benchmark: wall time of ``xai.audit`` on 500 demo images (the issue asks for < 3 minutes).

The shipped clean shapes model (``xai/assets/shapes_cnn.keras``) audited on
``make_shapes(500, seed=0, split="test")`` with masks and the default methods (Grad-CAM and
SmoothGrad with their defaults), 16 deletion/insertion steps on all 500 images for each method and
the random baseline, and the sanity checks (cascading randomisation of every weighted layer, 11
stages, and the random-logit test) on the default 32-image subset. The time includes tracing and
the report's figures (``report.save``), excludes importing TensorFlow and loading the model.
The number of CPU cores and the load average are recorded next to the time.

Run:  python bench/bench_audit.py            (writes bench/results/audit.md and audit.json)
      python bench/bench_audit.py --images 64  (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument(
        "--out",
        default=None,
        help="results stem (default: audit, or audit_<n> when --images != 500)",
    )
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    import xai
    from xai import datasets, demo

    model = keras.saving.load_model(demo.shipped_model_path("shapes_cnn.keras"))
    data = datasets.make_shapes(args.images, seed=0, split="test")
    load_before = os.getloadavg()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    report = xai.audit(
        model, data.images, data.labels, masks=data.masks, class_names=data.class_names, seed=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        report.save(tmp)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    result = {
        "images": args.images,
        "methods": list(report.methods),
        "method_params": report.params["method_params"],
        "sanity_images": report.params["sanity_images"],
        "sanity_stages": len(report.sanity["layers"]),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_before": [round(v, 2) for v in load_before],
        "platform": platform.platform(),
        "raised": [f.message for f in report.raised],
        "accuracy": report.accuracy,
        "deletion_auc": {
            k: round(v["deletion"]["auc"], 3) for k, v in report.faithfulness["methods"].items()
        },
        "insertion_auc": {
            k: round(v["insertion"]["auc"], 3) for k, v in report.faithfulness["methods"].items()
        },
    }
    stem = args.out or ("audit" if args.images == 500 else f"audit_{args.images}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        f"# xai.audit on {args.images} demo images",
        "",
        "Command: `python bench/bench_audit.py`",
        "",
        "| images | methods | sanity (images x stages) | wall (s) | CPU (s) | cores "
        "| load before |",
        "|---|---|---|---|---|---|---|",
        f"| {args.images} | {', '.join(result['methods'])} | "
        f"{result['sanity_images']} x {result['sanity_stages']} | "
        f"{result['wall_s']} | {result['cpu_s']} | {result['affinity'] or result['cpu_count']} | "
        f"{' / '.join(str(v) for v in result['loadavg_before'])} |",
        "",
        f"Accuracy {result['accuracy']:.3f}. Deletion AUC {result['deletion_auc']}; insertion AUC "
        f"{result['insertion_auc']}. Flags raised: {result['raised'] or 'none'}.",
        "",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
