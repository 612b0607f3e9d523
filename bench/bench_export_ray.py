r"""Ray-engine benchmark: what does ``xai export --engine ray`` cost over the local engine?

The folder, model and settings of ``bench/bench_export.py`` (``--images`` generated 256x256 JPEGs
in four class sub-folders, MobileNetV2(weights=None) at 224x224, Grad-CAM, batch 32, preprocessing
``symmetric``, overlay + heatmap + raw), exported from the model FILE by fresh processes:

- ``local``: ``xai.export(..., engine="local")``;
- ``ray xN``: ``xai.export(..., engine="ray", actors=N)`` in a process that joined a local Ray
  (``ray.init(num_cpus=<cores>)``, workers at nice 0 as in the local Ray that xai starts) before
  the clock starts, as a driver joins a running cluster;
  the time ``ray.init`` took (what the command line pays once more when it starts its own Ray) is
  recorded separately.

Runs are interleaved (local, ray x1, ray x2, local, ...) and medians taken. Per run:

- **end to end**: wall time of the ``xai.export`` call, model loading, tracing and (Ray) actor
  start-up included;
- **steady state**: images per second between the first and the last manifest commit (the
  driver's ``_Manifest.append`` is timed), i.e. once the model is loaded and traced everywhere;
- **peak memory** of the whole process tree (the driver, and with Ray its GCS, raylet, workers and
  actors), sampled every 0.25 s: the sum of PSS (shared pages split between the processes that map
  them; Ray's object store is shared memory) and, for reference, the sum of RSS.

Run:  python bench/bench_export_ray.py                  (bench/results/export_ray.md/.json)
      python bench/bench_export_ray.py --quick          (small CNN, 300 images: a smoke test)
      python bench/bench_export_ray.py --render         (rewrite the .md from the .json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

_CHILD = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
repo, model, src, out, engine, actors, batch_size = sys.argv[1:8]
sys.path.insert(0, repo)
import xai
from xai.export import journal

stamps = []
_append = journal._Manifest.append

def append(self, rows):
    _append(self, rows)
    n = sum(1 for r in rows if r.get("status") == "ok")
    if n:
        stamps.append((time.perf_counter(), n))

journal._Manifest.append = append
init_s = 0.0
kwargs = {}
if engine == "ray":
    import logging
    import ray
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, runtime_env={"env_vars": {"PYTHONPATH": repo}},
             _system_config={"worker_niceness": 0})  # as xai's own local Ray
    init_s = time.perf_counter() - t
    kwargs = {"engine": "ray", "actors": int(actors)}
t0 = time.perf_counter()
s = xai.export(model, src, out, batch_size=int(batch_size), preprocess="symmetric",
               progress=False, **kwargs)
wall = time.perf_counter() - t0
steady = None
if len(stamps) > 1:
    steady = sum(n for _, n in stamps[1:]) / (stamps[-1][0] - stamps[0][0])
print("RESULT " + json.dumps({"wall_s": wall, "ok": s.ok, "failed": s.failed,
    "init_s": init_s, "steady_images_per_s": steady,
    "first_commit_s": stamps[0][0] - t0 if stamps else None}))
"""


def _tree_memory(pid: int) -> tuple[float, float]:
    """(sum of PSS, sum of RSS) in MiB of ``pid`` and all its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0
    pss = rss = 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        pss += getattr(info, "pss", info.rss)
        rss += info.rss
    return pss / 2**20, rss / 2**20


def run_child(model: Path, src: Path, out: Path, engine: str, actors: int, bs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    argv = [str(REPO), str(model), str(src), str(out), engine, str(actors), str(bs)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak = [0.0, 0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pss, rss = _tree_memory(proc.pid)
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} x{actors} failed:\n{stderr[-3000:]}")
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result.update(peak_pss_mib=peak[0], peak_rss_mib=peak[1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small CNN, 300 images (smoke test)")
    ap.add_argument("--images", type=int, default=None, help="default 2000 (quick: 300)")
    ap.add_argument("--unique", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--actors", default="1,2", help="actor counts to run (default 1,2)")
    ap.add_argument("--out", default=None, help="results name (bench/results/<out>.md/.json)")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    name = args.out or ("export_ray_quick" if args.quick else "export_ray")
    if args.render:
        res = json.loads((RESULTS / f"{name}.json").read_text())
        (RESULTS / f"{name}.md").write_text(render(res))
        return
    sys.path.insert(0, str(HERE))
    from bench_export import MODELS, build_model, make_folder

    model_name = "small" if args.quick else "mobilenetv2"
    n_images = args.images or (300 if args.quick else 2000)
    actor_counts = [int(a) for a in args.actors.split(",")]
    configs = [("local", 1)] + [("ray", a) for a in actor_counts]
    work = Path(tempfile.mkdtemp(prefix="xai-bench-export-ray-"))
    runs: dict[str, list[dict]] = {_key(e, a): [] for e, a in configs}
    try:
        src = make_folder(work / "in", n_images, args.unique)
        model = work / "model.keras"
        build_model(model_name).save(model)
        load_before = os.getloadavg()
        for r in range(args.repeats):
            for engine, actors in configs:
                out = work / "out"
                result = run_child(model, src, out, engine, actors, args.batch_size)
                assert result["ok"] == n_images and result["failed"] == 0, result
                runs[_key(engine, actors)].append(result)
                print(
                    f"repeat {r}: {_key(engine, actors)}: {n_images / result['wall_s']:.1f} "
                    f"images/s end to end, {result['steady_images_per_s'] or 0:.1f} steady, "
                    f"peak PSS {result['peak_pss_mib']:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
                shutil.rmtree(out)
                os.sync()
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    summary = {}
    for key, rs in runs.items():
        summary[key] = {
            "images_per_s": n_images / med(r["wall_s"] for r in rs),
            "steady_images_per_s": med(r["steady_images_per_s"] for r in rs),
            "first_commit_s": med(r["first_commit_s"] for r in rs),
            "ray_init_s": med(r["init_s"] for r in rs),
            "peak_pss_mib": max(r["peak_pss_mib"] for r in rs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
        }
    local = runs["local"]
    ratios = {}
    for key, rs in runs.items():  # per repeat: the run against the local run next to it
        if key == "local":
            continue
        ratios[key] = {
            "end_to_end": med(lr["wall_s"] / r["wall_s"] for lr, r in zip(local, rs)),
            "steady": med(
                r["steady_images_per_s"] / lr["steady_images_per_s"] for lr, r in zip(local, rs)
            ),
            "end_to_end_runs": [lr["wall_s"] / r["wall_s"] for lr, r in zip(local, rs)],
        }
    res = {
        "model": MODELS[model_name],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "images": n_images,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
        "load_average_1min_before_after": [load_before[0], load_after[0]],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    text = render(res)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


def _key(engine: str, actors: int) -> str:
    return "local" if engine == "local" else f"ray x{actors}"


def render(res: dict) -> str:
    s, ratios = res["summary"], res["ratios"]
    load = res["load_average_1min_before_after"]
    md = [
        f"# Ray-engine export benchmark: {res['model']}, batch {res['batch_size']}, "
        f"{res['machine']}",
        "",
        f"{res['images']} generated 256x256 JPEGs (bench_export.py's folder), Grad-CAM, overlay + "
        "heatmap + raw, preprocessing `symmetric`, exported from the model file by fresh "
        f"processes; median of {res['repeats']} interleaved runs. Ray: a local Ray joined before "
        "the clock starts (as on a running cluster); `ray.init` time listed apart.",
        "",
        "| engine | images/s end to end | steady images/s | first commit s | peak PSS MiB "
        "(tree) | peak RSS MiB (sum) | ray.init s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, v in s.items():
        md.append(
            f"| {key} | {v['images_per_s']:.1f} | {v['steady_images_per_s']:.1f} | "
            f"{v['first_commit_s']:.1f} | {v['peak_pss_mib']:.0f} | {v['peak_rss_mib']:.0f} | "
            + (f"{v['ray_init_s']:.1f} |" if key != "local" else "|")
        )
    md += ["", "| Ray / local (per repeat, median) | end to end | steady state | runs |"]
    md += ["|---|---|---|---|"]
    for key, v in ratios.items():
        runs = ", ".join(f"{x:.2f}" for x in v["end_to_end_runs"])
        md.append(f"| {key} | **{v['end_to_end']:.2f}** | **{v['steady']:.2f}** | {runs} |")
    keys = [k for k in s if k.startswith("ray x")]
    if len(keys) > 1:
        a, b = keys[0], keys[-1]
        md += [
            "",
            f"Scaling {a} -> {b}: end to end x{s[b]['images_per_s'] / s[a]['images_per_s']:.2f}, "
            f"steady state x{s[b]['steady_images_per_s'] / s[a]['steady_images_per_s']:.2f}.",
        ]
    md += [
        "",
        f"Load average (1 min) before/after: {load[0]:.1f} / {load[1]:.1f} on "
        f"{res['machine'].split(', ')[-1]} (shared with other jobs).",
    ]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
