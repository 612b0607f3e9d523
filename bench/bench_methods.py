"""Method benchmark: cost of every registered method relative to a plain forward pass, and memory.

Models: a small CNN (``xai.testing.functional_cnn`` at 64x64, 10 classes) and
``keras.applications.MobileNetV2(weights=None)`` at 224x224 (no download), batch 32.

* Time: for each method, ``--repeats`` runs (>= 5) of ``Explainer.explain`` on the batch, each
  interleaved with a plain forward pass of the same batch (this machine is noisy, so the ratio of
  the two, measured side by side, is what to trust); one warm-up call first (tracing). Reported:
  median ms per image and median ratio to the forward pass.
* Memory: peak RSS of a fresh subprocess per method that builds the model, runs one forward pass
  and one ``explain`` call, next to the floor (its current RSS, ``VmRSS``, after the forward pass,
  before ``explain``). The peak is the child's ``VmHWM`` (``/proc/self/status``), not
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: on Linux ``ru_maxrss`` survives ``exec`` and
  starts from the RSS of the process that forked the child (this benchmark, which grows to ~2 GiB
  on MobileNetV2), so it reported the parent's memory; it is still recorded in the JSON.
* Bounded memory: the peak RSS of Score-CAM, RISE and occlusion at a small and at a large number
  of masks/windows (same ``chunk_size``): it must not grow with the number of masks.

Methods whose cost is a number of passes run with the parameters shown in the table (fewer masks,
steps or samples than their defaults on MobileNetV2, so that the full run fits in ~30 minutes on
2 CPU cores); the cost scales linearly with those numbers.

Run:  python bench/bench_methods.py            (both models; writes bench/results/methods.md)
      python bench/bench_methods.py --quick    (small CNN only, 3 repeats; methods_quick.md)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# Per model: parameters of the methods whose cost is a number of passes.
PARAMS = {
    "small": {
        "scorecam": {},
        "integrated_gradients": {"num_steps": 32},
        "smoothgrad": {"num_samples": 10},
        "smoothgrad_squared": {"num_samples": 10},
        "vargrad": {"num_samples": 10},
        "rise": {"num_masks": 500},
    },
    "mobilenet": {
        "scorecam": {"max_channels": 64},
        "integrated_gradients": {"num_steps": 16},
        "smoothgrad": {"num_samples": 8},
        "smoothgrad_squared": {"num_samples": 8},
        "vargrad": {"num_samples": 8},
        "occlusion": {"window": 56, "stride": 28},
        "rise": {"num_masks": 100},
    },
}
# Bounded-memory checks: (method, parameter, small value, large value, other parameters).
MEMORY_SWEEPS = {
    "small": [
        ("scorecam", "max_channels", 1, 6, {}),
        ("rise", "num_masks", 64, 1024, {}),
        ("occlusion", "stride", 16, 2, {"window": 8}),
    ],
    "mobilenet": [
        ("scorecam", "max_channels", 16, 256, {}),
        ("rise", "num_masks", 16, 256, {}),
        ("occlusion", "stride", 112, 14, {"window": 28}),
    ],
}


def build(kind: str):
    import keras

    if kind == "small":
        from xai import testing

        return testing.functional_cnn((64, 64, 3), 10), (64, 64, 3)
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None), (224, 224, 3)


def images(shape, batch):
    import numpy as np

    return np.random.default_rng(0).random((batch, *shape), dtype=np.float32)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_mib(field: str) -> float:
    """A memory field of ``/proc/self/status`` (``VmRSS`` now, ``VmHWM`` peak), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> None:
    """Fresh process: build the model, one forward pass (floor), then one explain call (peak)."""
    import numpy as np

    import xai

    model, shape = build(spec["model"])
    x = images(shape, spec["batch"])
    model(x[:1], training=False)
    floor = status_mib("VmRSS")
    e = xai.Explainer(model).explain(
        x, spec["method"], batch_size=spec["batch"], seed=0, **spec["params"]
    )
    assert np.isfinite(e.attributions).all()
    peaks = {"peak_mib": status_mib("VmHWM"), "ru_maxrss_mib": peak_rss_mib()}
    print(json.dumps({"floor_mib": floor, **peaks}))


def rss_in_subprocess(kind: str, method: str, params: dict, batch: int) -> dict:
    spec = json.dumps({"model": kind, "method": method, "params": params, "batch": batch})
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", spec],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_model(kind: str, batch: int, repeats: int, rss: bool, methods: list[str]) -> dict:
    import tensorflow as tf

    import xai

    model, shape = build(kind)
    x = images(shape, batch)
    xt = tf.constant(x)
    forward = tf.function(
        lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, *shape))]
    )
    forward(xt)
    explainer = xai.Explainer(model)
    rows = []
    for name in methods:
        params = PARAMS[kind].get(name, {})
        method = xai.methods.get(name)
        full = {**method.defaults, **params}
        call = functools.partial(explainer.explain, x, name, batch_size=batch, seed=0, **params)
        t_first = timed(call)
        fwd, run = [], []
        for _ in range(repeats):
            fwd.append(timed(lambda: forward(xt).numpy()))
            run.append(timed(call))
        row = {
            "method": name,
            "params": {k: full[k] for k in params},
            "ms_per_image": 1000 * statistics.median(run) / batch,
            "forward_ms_per_image": 1000 * statistics.median(fwd) / batch,
            "ratio": statistics.median([r / f for r, f in zip(run, fwd)]),
            "first_call_s": t_first,
        }
        if rss:
            row.update(rss_in_subprocess(kind, name, params, batch))
        rows.append(row)
        print(json.dumps(row), flush=True)
    sweeps = []
    if rss:
        for name, param, small, large, other in MEMORY_SWEEPS[kind]:
            if name not in methods:
                continue
            for value in (small, large):
                r = rss_in_subprocess(kind, name, {**other, param: value}, batch)
                sweeps.append({"method": name, "param": param, "value": value, "other": other, **r})
                print(json.dumps(sweeps[-1]), flush=True)
    return {"rows": rows, "sweeps": sweeps, "batch": batch, "repeats": repeats}


def markdown(results: dict, machine: str) -> str:
    titles = {
        "small": "small CNN 64x64 (functional_cnn)",
        "mobilenet": "MobileNetV2(weights=None) 224x224",
    }
    md = [
        "# Method benchmark",
        "",
        f"Machine: {machine}. Plain `tf.function` (no XLA on CPU). "
        "Ratio = method time / forward-pass",
        "time of the same batch, measured interleaved (median). "
        "Peak RSS: `VmHWM` of a fresh process",
        "that builds the model, runs one forward pass and one `explain` call (start-up included);",
        "floor = its RSS after the forward pass, before `explain`. Generated by",
        "`bench/bench_methods.py`.",
    ]
    for kind, res in results.items():
        md += [
            "",
            f"## {titles[kind]}, batch {res['batch']}, median of {res['repeats']} runs",
            "",
            "| method | parameters | ms / image | ratio to forward | peak RSS (MiB) "
            "| floor (MiB) |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
            peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else ""
            floor = f"{r['floor_mib']:.0f}" if "floor_mib" in r else ""
            md.append(
                f"| `{r['method']}` | {params} | {r['ms_per_image']:.2f} | {r['ratio']:.2f} | "
                f"{peak} | {floor} |"
            )
        if res["rows"]:
            fwd = statistics.median(r["forward_ms_per_image"] for r in res["rows"])
            md += ["", f"Forward pass: {fwd:.2f} ms / image (median over the interleaved runs)."]
        if res["sweeps"]:
            md += [
                "",
                "Peak RSS against the number of masks / windows "
                "(`chunk_size` fixed at its default):",
                "",
                "| method | setting | peak RSS (MiB) |",
                "|---|---|---|",
            ]
            for s in res["sweeps"]:
                setting = ", ".join(
                    f"{k}={v}" for k, v in {**s["other"], s["param"]: s["value"]}.items()
                )
                md.append(f"| `{s['method']}` | {setting} | {s['peak_mib']:.0f} |")
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small CNN only, 3 repeats")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--repeats", type=int, default=None, help="runs per method (default 5; quick 3)"
    )
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--methods", nargs="*", default=None, help="subset of registered methods")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    import xai

    methods = args.methods or list(xai.methods.available())
    repeats = args.repeats or (3 if args.quick else 5)
    kinds = ["small"] if args.quick else ["small", "mobilenet"]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    results = {k: bench_model(k, args.batch, repeats, not args.no_rss, methods) for k in kinds}
    RESULTS.mkdir(exist_ok=True)
    name = "methods_quick" if args.quick else "methods"
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": machine, **results}, indent=2) + "\n"
    )
    text = markdown(results, machine)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
