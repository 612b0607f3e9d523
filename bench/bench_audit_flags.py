"""How often the audit's "deletion is no better than random" flag fires, where it should and not.

On the shipped *clean* model (``xai/assets/shapes_cnn.keras``), ``--runs`` audits of 32 fresh
test images each (a new seed, so new images, a new image order and new random baselines every
run): the false-alarm rate is how often the flag fires for Grad-CAM and SmoothGrad, whose maps
are informative; the hit rate is how often it fires for ``uninformative``, a method registered
here whose maps are seeded uniform noise (what a broken explainer produces).

Run:  python bench/bench_audit_flags.py            (writes bench/results/audit_flags.md/.json)
      python bench/bench_audit_flags.py --runs 3   (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import RESULTS  # noqa: E402


def register_uninformative() -> None:
    import numpy as np

    from xai.methods.gradient import GRADIENT_DISPLAY
    from xai.methods.registry import Method, MethodResult, available, register
    from xai.methods.scoring import clean_targets

    if "uninformative" in available():
        return

    def compute(engine, inputs, targets, *, seed):
        logits = engine.forward(inputs)
        resolved, scores = clean_targets(engine, logits, targets)
        rng = np.random.default_rng([seed, len(inputs[0])])
        maps = [rng.random(x.shape, dtype=np.float32) for x in inputs]
        return MethodResult(maps=maps, logits=logits, targets=resolved, scores=scores)

    register(
        Method(
            name="uninformative",
            compute=compute,
            space="input",
            stochastic=True,
            defaults={},
            display=GRADIENT_DISPLAY,
            reference="uniform noise (a broken explainer), for the audit's flag benchmark",
            summary="seeded uniform noise",
            family="gradient",
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--images", type=int, default=32)
    args = ap.parse_args()

    import keras
    import numpy as np

    import xai
    from xai import datasets, demo

    register_uninformative()
    model = keras.saving.load_model(demo.shipped_model_path())
    methods = ["gradcam", "smoothgrad", "uninformative"]
    fired: dict[str, list[bool]] = {m: [] for m in methods}
    bounds: dict[str, list[float]] = {m: [] for m in methods}
    start = time.perf_counter()
    for run in range(args.runs):
        data = datasets.make_shapes(args.images, seed=1000 + run, split="test")
        report = xai.run_audit(
            model,
            data.images,
            data.labels,
            methods=methods,
            method_params={"smoothgrad": {"num_samples": 8}},
            sanity_images=2,
            sanity_stages=1,
            seed=run,
            progress=False,
        )
        for f in report.flags:
            if f.key == "deletion_vs_random":
                fired[f.method].append(f.raised)
                bounds[f.method].append(f.value)
        print(run, {m: fired[m][-1] for m in methods}, flush=True)
    res = {
        "model": "shapes_cnn.keras (clean)",
        "runs": args.runs,
        "images_per_run": args.images,
        "seconds": round(time.perf_counter() - start, 1),
        "rate_fired": {m: float(np.mean(v)) for m, v in fired.items()},
        "lower_bound_median": {m: float(np.median(v)) for m, v in bounds.items()},
        "false_alarm_rate": float(np.mean(fired["gradcam"] + fired["smoothgrad"])),
        "hit_rate_uninformative": float(np.mean(fired["uninformative"])),
    }
    RESULTS.mkdir(exist_ok=True)
    name = "audit_flags" if args.runs >= 20 else "audit_flags_quick"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [
        f"# Deletion flag: {args.runs} audits of {args.images} fresh images, clean shapes model",
        "",
        "| method | maps | flag fired | median lower bound of mean(d) |",
        "|---|---|---|---|",
    ]
    kinds = {"gradcam": "informative", "smoothgrad": "informative", "uninformative": "noise"}
    for m in methods:
        md.append(
            f"| {m} | {kinds[m]} | {sum(fired[m])}/{len(fired[m])} "
            f"({res['rate_fired'][m]:.0%}) | {res['lower_bound_median'][m]:+.3f} |"
        )
    md += [
        "",
        f"False-alarm rate (informative maps): {res['false_alarm_rate']:.1%}; hit rate "
        f"(noise maps): {res['hit_rate_uninformative']:.0%}. The flag fires when the lower "
        "one-sided 95% bound of mean(d) is above -0.03 (d = method - random deletion AUC).",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
