"""xai against the plain forward pass and against tf-keras-vis and xplique, side by side.

Run (one command; sets up the peers' venv on first use, ~3 min, then runs the grid):

    .venv/bin/python bench/bench_peers.py

    --models mobilenetv2,resnet50,demo   --methods gradcam,smoothgrad,...
    --libs xai,tf-keras-vis,xplique   --repeats 5   --setup-only   --timeout 1500

Writes ``bench/results/peers.md`` and ``peers.json`` after every cell (partial results survive).

* Models: ``MobileNetV2(weights=None)`` and ``ResNet50(weights=None)`` at 224x224, built after
  ``keras.utils.set_random_seed(0)`` (identical weights in both venvs; checksum in the JSON), batch
  32 of seeded uniform [0, 1) images; the demo CNN (``xai/assets/shapes_cnn.keras``, trained) on
  the 32 committed shapes sample images (uint8 values as float32, 0-255).
* Every cell (library x model x method) runs in a fresh subprocess (``bench/peer_runner.py``):
  xai in the project venv, the peers in ``bench/.venvs/peers``. Per cell: ms/image (median of
  ``--repeats`` runs after warm-up), ratio to a plain ``tf.function`` forward pass of the same batch
  measured interleaved in the same process, first-call latency (construct + explain one image),
  whole-process peak RSS (VmHWM), and the maps, from which the parent computes the agreement.
* Agreement: Pearson r between each peer's map and xai's, per image, after the same
  post-processing (channels: abs then max; spatial: bilinear resize to the input size with
  ``tf.image.resize``); mean (min) over the batch.
* Peers' venv: ``python -m venv bench/.venvs/peers``; ``pip install tensorflow==<ours>
  tf-keras-vis``; xplique 2.0.2 pins ``tensorflow[and-cuda]<=2.20`` so it is installed with
  ``--no-deps`` plus its runtime dependencies (``PEER_DEPS``) and ``tf-keras`` (imported by
  tensorflow-probability).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PEERS_VENV = HERE / ".venvs" / "peers"
PEER_PY = PEERS_VENV / "bin" / "python"
# "xplique@resolved": the xplique that `pip install tensorflow==<ours> xplique` picks, in its own
# venv (2.0.2 pins TF <= 2.20, so pip's resolver falls back to an older release; 1.3.3 today)
RESOLVED_VENV = HERE / ".venvs" / "xplique-resolved"
RESOLVED_PY = RESOLVED_VENV / "bin" / "python"
DEMO_MODEL = ROOT / "xai" / "assets" / "shapes_cnn.keras"

XPLIQUE = "xplique==2.0.2"
PEER_PKGS = ["tf-keras-vis==0.8.7"]
# xplique 2.0.2's runtime requirements without its tensorflow pin (and without ruff, a dev tool)
PEER_DEPS = [
    "tqdm>=4.60",  # only for --head-to-head, which imports xai from the source tree
    "deprecated>=1.1.0",
    "einops>=0.1.0",
    "matplotlib>=3.5",
    "opencv-python>=3.4.11.39",
    "scikit-image>=0.14.1,<=0.25.2",
    "scikit-learn>=0.14.1,<=1.7.2",
    "scipy>=1.0.0,<=1.15.3",
    "tensorflow-probability>=0.20.1,<=0.25.0",
]

MODELS = ("mobilenetv2", "resnet50", "demo")
METHODS = ("gradcam", "gradcam_plus_plus", "scorecam", "smoothgrad", "integrated_gradients")
# ":logits": the peer gets the same model built without its softmax (classifier_activation=None);
# "xai:seed1": xai again with another noise seed (how much two SmoothGrad draws agree at all)
LIBS = (
    "xai",
    "tf-keras-vis",
    "xplique",
    "xplique@resolved",
    "tf-keras-vis:logits",
    "xplique:logits",
    "xplique@resolved:logits",
    "xai:seed1",
)
XPLIQUE_METHODS = {"gradcam", "gradcam_plus_plus", "smoothgrad", "integrated_gradients"}
SUPPORTED = {
    "xai": set(METHODS),
    "tf-keras-vis": {"gradcam", "gradcam_plus_plus", "scorecam", "smoothgrad"},
    "xplique": XPLIQUE_METHODS,
    "xplique:logits": XPLIQUE_METHODS,
    "xplique@resolved": XPLIQUE_METHODS,
    "xplique@resolved:logits": XPLIQUE_METHODS,
    "tf-keras-vis:logits": {"gradcam", "gradcam_plus_plus", "scorecam", "smoothgrad"},
    "xai:seed1": {"smoothgrad"},
}
NOISE_LEVEL = 0.15
PARAMS = {
    "gradcam": {},
    "gradcam_plus_plus": {},
    "scorecam": {"max_channels": 64},
    "smoothgrad": {"num_samples": 20, "noise_level": NOISE_LEVEL},
    "integrated_gradients": {"num_steps": 32},
}
# theoretical floor of each method, in forward passes of the batch
FLOORS = {
    "gradcam": "1 fwd + backward to the target layer only (~1x)",
    "gradcam_plus_plus": "same as Grad-CAM (~1x)",
    "scorecam": (
        "1 + K forward passes, K = min(max_channels=64, channels): "
        "65 (MobileNetV2, ResNet50), 17 (demo, 16 channels)"
    ),
    "smoothgrad": "20 input-gradient steps; 1 step = fwd + full backward = ~2.2x fwd: ~44x",
    "integrated_gradients": "32 input-gradient steps: ~70x",
}


def sh(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def setup_peers() -> list[str]:
    """Create bench/.venvs/peers if missing; return the commands that were (or would be) run."""
    import tensorflow as tf

    pip = [str(PEER_PY), "-m", "pip", "install", "-q"]
    cmds = [
        [sys.executable, "-m", "venv", str(PEERS_VENV)],
        pip + [f"tensorflow=={tf.__version__}", *PEER_PKGS],
        pip + ["--no-deps", XPLIQUE],
        pip + PEER_DEPS + [f"tf-keras~={'.'.join(tf.__version__.split('.')[:2])}.0"],
    ]
    resolved = [
        [sys.executable, "-m", "venv", str(RESOLVED_VENV)],
        [
            str(RESOLVED_PY),
            "-m",
            "pip",
            "install",
            "-q",
            f"tensorflow=={tf.__version__}",
            "xplique",
            "tqdm",
        ],
    ]
    for venv, steps in ((PEERS_VENV, cmds), (RESOLVED_VENV, resolved)):
        stamp = venv / ".installed"
        if not stamp.exists():
            for c in steps:
                sh(c)
            stamp.write_text("\n".join(" ".join(c) for c in steps) + "\n")
    return [" ".join(c) for c in cmds + resolved]


def python_for(lib: str) -> str:
    """The interpreter that runs ``lib``: the project's for xai, else the peer's own venv."""
    if lib.startswith("xai"):
        return sys.executable
    return str(RESOLVED_PY if lib.startswith("xplique@resolved") else PEER_PY)


def make_inputs(model: str, tmp: Path) -> Path:
    import numpy as np

    path = tmp / f"{model}.npy"
    if not path.exists():
        if model == "demo":
            from xai.demo import load_sample

            x = load_sample().images.astype(np.float32)
        else:
            x = np.random.default_rng(0).random((32, 224, 224, 3), dtype=np.float32)
        np.save(path, x)
    return path


def cell_params(method: str, lib: str, x) -> dict:

    p = dict(PARAMS[method])
    if method == "smoothgrad":
        span = x.reshape(len(x), -1).max(1) - x.reshape(len(x), -1).min(1)
        sig = NOISE_LEVEL * span
        p["sigma"] = float(sig.mean())  # xplique: one absolute sigma for the batch
        p["sigma_range"] = [float(sig.min()), float(sig.max())]
    if lib.startswith("xai") and method == "smoothgrad":
        seed = 1 if lib == "xai:seed1" else 0
        return {"num_samples": p["num_samples"], "noise_level": NOISE_LEVEL, "seed": seed}
    if lib.startswith("xai"):
        return {k: v for k, v in p.items() if not k.startswith("sigma")}
    return p


def run_cell(
    model: str, method: str, lib: str, inputs: Path, tmp: Path, repeats: int, timeout: int
) -> dict:
    import numpy as np

    x = np.load(inputs)
    maps_out = tmp / f"{model}-{method}-{lib.replace(':', '_')}.npy"
    spec = {
        "lib": lib,
        "model": model,
        "method": method,
        "params": cell_params(method, lib, x),
        "inputs": str(inputs),
        "maps_out": str(maps_out),
        "repeats": repeats,
        # tf-keras-vis runs eagerly: nothing to trace, the 1-image first call has built the clone
        "warmup": 0 if lib == "tf-keras-vis" else 1,
        "logits": lib.endswith(":logits"),
    }
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec))
    py = python_for(lib)
    env = {**os.environ, "XAI_DEMO_MODEL": str(DEMO_MODEL), "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [py, str(HERE / "peer_runner.py"), str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(ROOT),
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-3:], "wall_s": time.perf_counter() - t0}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(
        params={k: v for k, v in spec["params"].items()},
        wall_s=time.perf_counter() - t0,
        maps=str(maps_out),
    )
    return res


def run_head_to_head(
    model: str, method: str, libs: list[str], inputs: Path, tmp: Path, repeats: int, timeout: int
) -> list[dict]:
    """xai and the peers in one process per peer venv (xai imported from the source tree).

    The peers sharing a venv run in the same process as each other and as xai; a peer with its own
    venv (``xplique@resolved``) gets its own process, again with xai and the forward pass.
    """
    import numpy as np

    x = np.load(inputs)
    peers = [lb for lb in libs if not lb.startswith("xai") and ":" not in lb]
    groups: dict[str, list[str]] = {}
    for lb in dict.fromkeys(peers):
        if method in SUPPORTED[lb]:
            groups.setdefault(python_for(lb), []).append(lb)
    out = []
    for py, group in groups.items():
        venv = Path(py).parent.parent.name
        spec = {
            "lib": "h2h",
            "libs": ["xai", *group],
            "model": model,
            "method": method,
            "params": {lb: cell_params(method, lb, x) for lb in ["xai", *group]},
            "inputs": str(inputs),
            "repeats": repeats,
        }
        spec_path = tmp / "spec_h2h.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "XAI_DEMO_MODEL": str(DEMO_MODEL), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [py, str(HERE / "peer_runner.py"), str(spec_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=str(ROOT),
        )
        head = {"model": model, "method": method, "venv": venv}
        if proc.returncode != 0:
            out.append({**head, "error": proc.stderr.strip().splitlines()[-3:]})
        else:
            out.append({**head, **json.loads(proc.stdout.strip().splitlines()[-1])})
    return out


def to_display(maps, size):
    """Common post-processing for the agreement: |.| max over channels, bilinear resize to size."""
    import numpy as np
    import tensorflow as tf

    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 4:  # input-space attributions (N, H, W, C)
        m = np.abs(m).max(-1)
    if m.shape[1:] != tuple(size):
        m = tf.image.resize(m[..., None], size, method="bilinear").numpy()[..., 0]
    return m


def agreement(ours: str, theirs: str, size, rectify_relu: bool) -> dict:
    import numpy as np

    a, b = to_display(np.load(ours), size), to_display(np.load(theirs), size)
    if rectify_relu:  # CAMs: xai's raw map is before its ReLU; the peers return rectified maps
        a = np.maximum(a, 0)
    rs = []
    for u, v in zip(a.reshape(len(a), -1), b.reshape(len(b), -1)):
        if u.std() == 0 or v.std() == 0:
            rs.append(float("nan"))
        else:
            rs.append(float(np.corrcoef(u, v)[0, 1]))
    rs = np.array(rs)
    if np.isnan(rs).all():
        const = "peer" if np.ptp(b.reshape(len(b), -1), axis=1).max() == 0 else "xai"
        return {
            "mean": float("nan"),
            "min": float("nan"),
            "n_nan": len(rs),
            "why": f"{const} maps constant (peer max |map| = {float(np.abs(b).max()):.1e})",
        }
    return {
        "mean": float(np.nanmean(rs)),
        "min": float(np.nanmin(rs)),
        "n_nan": int(np.isnan(rs).sum()),
    }


def runs_note(c: dict, nrep: int) -> str:
    n = len(c.get("runs_s", []))
    return f" ({n} runs)" if n and n != nrep else ""


def fmt(v, spec=".1f"):
    return "" if v is None else format(v, spec)


def markdown(res: dict) -> str:
    counts = [len(c["runs_s"]) for c in res["cells"] if "runs_s" in c]
    nrep = max(set(counts), key=counts.count) if counts else res["repeats"]
    md = [
        "# xai vs tf-keras-vis vs xplique",
        "",
        f"{res['machine']}; TF {res['tensorflow']}, Keras {res['keras']}; tf-keras-vis "
        f"{res.get('peer_versions', {}).get('tf-keras-vis', '?')}, xplique "
        f"{res.get('peer_versions', {}).get('xplique', '?')}"
        + (
            f" (and `xplique@resolved` = xplique {res['peer_versions']['xplique@resolved']}, the "
            "release pip picks next to this TensorFlow, in its own venv)"
            if "xplique@resolved" in res.get("peer_versions", {})
            else ""
        )
        + ". "
        f"Batch 32, median of {nrep} runs (unless marked); ratio = method / plain "
        "`tf.function` forward pass of the "
        "same batch, interleaved in the same fresh process; "
        "peak RSS = VmHWM of that process (model, "
        "forward pass and all runs included); "
        "first call = construct the explainer + explain one image; "
        "agreement = Pearson r with xai's map on the same images (mean (min) over 32 images). "
        "Load average (1 min) during the cell in the last column: this 2-core machine is shared.",
        "",
        "Commands (in this order; `--append` adds cells to the same table):",
        "",
        *[f"    {c}" for c in res.get("commands", [res["command"]])],
        "",
        "| model | method | library | ms / image | forward ms / image | x forward "
        "| theoretical floor | first call (s) | peak RSS (MiB) | agreement r | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def order(c):
        return (MODELS.index(c["model"]), METHODS.index(c["method"]), LIBS.index(c["lib"]))

    for c in sorted(res["cells"], key=order):
        if "error" in c:
            md.append(
                f"| {c['model']} | {c['method']} | {c['lib']} | "
                f"failed: {' '.join(c['error'])[-160:]} |||||||| |"
            )
            continue
        ag = c.get("agreement")
        if c["lib"] == "xai":
            agree = "(reference)"
        elif not ag:
            agree = ""
        elif ag["n_nan"] == len(c.get("preds", [])) or ag["mean"] != ag["mean"]:
            agree = f"n/a: {ag.get('why', 'a constant map')}"
        else:
            agree = f"{ag['mean']:.3f} ({ag['min']:.3f})" + (
                f", {ag['n_nan']} constant" if ag["n_nan"] else ""
            )
        md.append(
            f"| {c['model']} | {c['method']} | {c['lib']} | "
            f"{c['ms_per_image']:.1f}{runs_note(c, nrep)} | {c['forward_ms_per_image']:.1f} "
            f"| {c['ratio']:.2f} | {FLOORS[c['method']] if c['lib'] == 'xai' else ''} "
            f"| {c['first_call_s']:.2f} "
            f"| {c['peak_mib']:.0f} | {agree} | {c['loadavg'][0]:.1f} |"
        )
    md += ["", "Settings per cell are in `peers.json` (`params`, `call`, `layer`)."]
    if res.get("head_to_head"):
        md += [
            "",
            "## Head to head: all libraries in one process, runs interleaved",
            "",
            "One process per peer venv (xai imported from the source tree), one model; each "
            "repeat runs the forward pass, then every library, in turn. "
            "Speed-up = median peer ms / "
            "median xai ms in the same process; paired = median over repeats of peer run / xai run "
            "of the same repeat (robust to a peer whose run times jump between two levels).",
            "",
            "| model | method | process (venv) | library | ms / image | x forward "
            "| xai speed-up | load |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for h in res["head_to_head"]:
            if "error" in h:
                md.append(
                    f"| {h['model']} | {h['method']} | {h.get('venv', 'peers')} | "
                    f"failed: {' '.join(h['error'])[-160:]} ||||| |"
                )
                continue
            t = h["head_to_head"]
            for lib, v in t.items():
                runs = h.get("runs_s", {})
                paired = (
                    " (paired "
                    f"{statistics.median(a / b for a, b in zip(runs[lib], runs['xai'])):.2f}x)"
                    if lib in runs and "xai" in runs
                    else ""
                )
                sp = (
                    ""
                    if lib in ("forward", "xai")
                    else f"{v['ms_per_image'] / t['xai']['ms_per_image']:.2f}x{paired}"
                )
                name = f"{lib} {h['versions'][lib]}" if lib in h.get("versions", {}) else lib
                md.append(
                    f"| {h['model']} | {h['method']} | {h.get('venv', 'peers')} | {name} | "
                    f"{v['ms_per_image']:.1f} | {v['ratio']:.2f} | {sp} | {h['loadavg'][0]:.1f} |"
                )
    if res.get("notes"):
        md += ["", *res["notes"]]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="mobilenetv2,resnet50,demo")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--libs", default="xai,tf-keras-vis,xplique")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=int, default=1500, help="seconds per cell")
    ap.add_argument("--setup-only", action="store_true")
    ap.add_argument("--render", action="store_true", help="only rewrite <out>.md from <out>.json")
    ap.add_argument(
        "--head-to-head",
        action="store_true",
        help="instead of the per-cell grid: xai and the peers interleaved in one process",
    )
    ap.add_argument("--out", default="peers", help="results name (bench/results/<out>.md/.json)")
    ap.add_argument("--append", action="store_true", help="keep the cells already in <out>.json")
    args = ap.parse_args()

    if args.render:
        res = json.loads((RESULTS / f"{args.out}.json").read_text())
        (RESULTS / f"{args.out}.md").write_text(markdown(res))
        return
    import keras
    import tensorflow as tf

    setup_cmds = setup_peers()
    if args.setup_only:
        return
    libs = args.libs.split(",")
    RESULTS.mkdir(exist_ok=True)
    json_path, md_path = RESULTS / f"{args.out}.json", RESULTS / f"{args.out}.md"
    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only (no GPU)",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "repeats": args.repeats,
        "command": " ".join(["python", "bench/bench_peers.py", *sys.argv[1:]]),
        "peer_setup": setup_cmds,
        "cells": [],
    }
    if args.append and json_path.exists():
        old = json.loads(json_path.read_text())
        res["cells"] = old["cells"]
        res["peer_versions"] = old.get("peer_versions", {})
        res["commands"] = old.get("commands", [old.get("command")] if old.get("command") else [])
        res["head_to_head"] = old.get("head_to_head", [])
    res["commands"] = res.get("commands", []) + [res["command"]]
    tmp = Path(tempfile.mkdtemp(prefix="xai-peers-"))
    if args.head_to_head:
        for model in args.models.split(","):
            inputs = make_inputs(model, tmp)
            for method in args.methods.split(","):
                print(f"== head to head: {model} {method}", flush=True)
                for h in run_head_to_head(
                    model, method, libs, inputs, tmp, args.repeats, args.timeout
                ):
                    print(json.dumps(h.get("head_to_head", h), default=str), flush=True)
                    res.setdefault("peer_versions", {}).update(
                        {k: v for k, v in h.get("versions", {}).items() if k != "xai"}
                    )
                    key = (model, method, h["venv"])
                    res["head_to_head"] = [
                        o
                        for o in res.get("head_to_head", [])
                        if (o["model"], o["method"], o.get("venv", "peers")) != key
                    ] + [h]
                json_path.write_text(json.dumps(res, indent=1, default=str) + "\n")
                md_path.write_text(markdown(res))
        print(md_path.read_text())
        return
    for model in args.models.split(","):
        inputs = make_inputs(model, tmp)
        size = (224, 224) if model != "demo" else tuple(__import__("numpy").load(inputs).shape[1:3])
        for method in args.methods.split(","):
            ref = None
            for lib in ["xai"] + [lb for lb in libs if lb != "xai"]:
                if method not in SUPPORTED[lib]:
                    continue
                print(f"== {model} {method} {lib}", flush=True)
                try:
                    c = run_cell(model, method, lib, inputs, tmp, args.repeats, args.timeout)
                except subprocess.TimeoutExpired:
                    c = {"error": [f"timeout after {args.timeout} s"]}
                c = {"model": model, "method": method, "lib": lib, **c}
                if lib == "xai" and "error" not in c:
                    ref = c["maps"]
                elif ref and "error" not in c:
                    c["agreement"] = agreement(ref, c["maps"], size, rectify_relu="cam" in method)
                    res.setdefault("peer_versions", {}).update(
                        {k: v for k, v in c["versions"].items() if k not in ("tensorflow", "keras")}
                    )
                if lib == "xai" and "xai" not in libs:  # reference only: keep it out of the table
                    continue
                res["cells"] = [
                    o
                    for o in res["cells"]
                    if (o["model"], o["method"], o["lib"]) != (model, method, lib)
                ] + [c]
                print(
                    json.dumps(
                        {
                            k: v
                            for k, v in c.items()
                            if k not in ("runs_s", "forward_runs_s", "preds")
                        }
                    ),
                    flush=True,
                )
                json_path.write_text(json.dumps(res, indent=1, default=str) + "\n")
                md_path.write_text(markdown(res))
    print(md_path.read_text())


if __name__ == "__main__":
    main()
