"""Notebook benchmark: repeated one-shot ``xai.explain(model, x)`` calls against a forward pass.

The pattern of a notebook loop: the same model, a fresh ``xai.explain`` call each time (no
``Explainer`` kept by the user). Model: ``keras.applications.MobileNetV2(weights=None)`` at
224x224, batch 32. In one process, interleaved, after one warm-up call:

* a plain forward pass (compiled ``tf.function``),
* one-shot ``xai.explain(model, x)`` (Grad-CAM, default layer) - served by the weak per-model cache,
* ``Explainer.explain`` (the reference: compiled steps kept by the user),
* one-shot ``explain`` with the cache dropped before each call (``xai.clear_cache``), which is
  what every call cost before the cache (a full tap rebuild and retrace).

Then 100 more one-shot calls (batch 1) count the inbound nodes of the user's layers, which must
stay constant, and the traces of the cached engine.

Run:  python bench/bench_notebook.py           (writes bench/results/notebook.md and .json)
      python bench/bench_notebook.py --quick   (small CNN, for a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import RESULTS, build, timed  # noqa: E402


def inbound_nodes(model) -> int:
    return sum(len(layer._inbound_nodes) for layer in model._flatten_layers())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small CNN instead of MobileNetV2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=20, help="one-shot calls timed")
    ap.add_argument("--uncached", type=int, default=3, help="uncached calls timed")
    ap.add_argument("--node-calls", type=int, default=100)
    args = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    import xai
    from xai.explainer import _ENGINES

    model, shape = build(args.quick)
    x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
    forward = tf.function(
        lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, *shape))]
    )
    xt = tf.constant(x)
    explainer = xai.Explainer(model)

    forward(xt)
    first = timed(lambda: xai.explain(model, x))  # builds the cached tap and traces once
    explainer.explain(x)
    fwd, oneshot, kept = [], [], []
    for _ in range(args.repeats):  # interleaved
        fwd.append(timed(lambda: forward(xt).numpy()))
        oneshot.append(timed(lambda: xai.explain(model, x)))
        kept.append(timed(lambda: explainer.explain(x)))
    uncached, fwd_u = [], []
    for _ in range(args.uncached):
        fwd_u.append(timed(lambda: forward(xt).numpy()))
        xai.clear_cache(model)
        uncached.append(timed(lambda: xai.explain(model, x)))

    engine = _ENGINES[model][(None, None, False)][True]
    traces_before, nodes_before = engine.trace_count, inbound_nodes(model)
    for _ in range(args.node_calls):
        xai.explain(model, x[:1])
    traces_after, nodes_after = engine.trace_count, inbound_nodes(model)

    med = statistics.median
    res = {
        "model": "small CNN 64x64" if args.quick else "MobileNetV2(weights=None) 224x224",
        "batch": args.batch,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "repeats": args.repeats,
        "forward_ms": 1000 * med(fwd),
        "oneshot_over_forward": med([o / f for o, f in zip(oneshot, fwd)]),
        "oneshot_over_forward_runs": [round(o / f, 3) for o, f in zip(oneshot, fwd)],
        "explainer_over_forward": med([k / f for k, f in zip(kept, fwd)]),
        "uncached_over_forward": med([u / f for u, f in zip(uncached, fwd_u)]),
        "first_call_s": first,
        "node_calls": args.node_calls,
        "inbound_nodes_before": nodes_before,
        "inbound_nodes_after": nodes_after,
        "traces_during_node_calls": traces_after - traces_before,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "notebook_quick" if args.quick else "notebook"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [
        f"# Notebook loop: {res['model']}, batch {args.batch}, {res['machine']}",
        "",
        f"Median of {args.repeats} interleaved runs (uncached: {args.uncached}).",
        "",
        "| call | time / forward pass |",
        "|---|---|",
        f"| plain forward pass ({res['forward_ms']:.0f} ms) | 1.00 |",
        f"| one-shot `xai.explain(model, x)` (cached) | {res['oneshot_over_forward']:.2f} |",
        f"| `Explainer.explain(x)` | {res['explainer_over_forward']:.2f} |",
        f"| one-shot `explain` after `xai.clear_cache(model)` (no cache) | "
        f"{res['uncached_over_forward']:.2f} |",
        "",
        f"First one-shot call (tap + trace): {first:.2f} s. Over {args.node_calls} more one-shot "
        f"calls the user's layers kept {nodes_before} -> {nodes_after} inbound nodes and the "
        f"cached engine traced {res['traces_during_node_calls']} times.",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
