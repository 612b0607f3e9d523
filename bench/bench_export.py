r"""Export benchmark: does ``xai.export`` hide file I/O behind compute, and is its memory flat?

Two questions, on a folder of generated JPEGs (``xai.datasets.make_shapes`` scenes, 256x256, in
four class sub-folders; ``--unique`` distinct pictures, repeated under distinct names):

1. **Throughput.** End-to-end ``xai.export`` (walk, parallel decode + resize + preprocess in
   ``tf.data``, compiled Grad-CAM steps, overlays + 16-bit heatmaps + raw maps written atomically by
   a thread pool, manifest) against the *compute-only* Grad-CAM throughput of the same Explainer,
   model and batch size on batches already in memory (``Explainer.explain`` in a loop). Both use
   the same warmed-up Explainer, so tracing is excluded from both. Runs are interleaved
   (compute, export, compute, export, ...) and the medians compared. For reference, the
   sequential cost of the I/O (decode + write, one thread, no compute) is timed too.
2. **Memory.** Peak RSS (``ru_maxrss``) of a fresh process that exports ``--rss-small`` images and
   of one that exports ``--rss-large`` images (same model, same settings, cold start included).

Model: ``keras.applications.MobileNetV2(weights=None)`` at 224x224 (no download), preprocessing
``symmetric``; ``--model resnet50`` uses ResNet50 (about 4.5x the compute per image);
``--quick`` uses a small CNN on 64x64 and small folders, for a smoke test.

On a CPU-only machine the decoding and PNG encoding compete with the compiled step for the same
cores, so the ratio measures CPU cost as much as overlap. The benchmark therefore also records the
process CPU time per image (all threads) of both runs: their difference is the CPU cost of the
I/O, whatever the machine's load, and the load average is recorded next to the timings.

Run:  python bench/bench_export.py                     (writes bench/results/export.md/.json)
      python bench/bench_export.py --model resnet50 --no-rss   (export_resnet50.md/.json)
      python bench/bench_export.py --quick             (a minute; export_quick.md/.json)
      python bench/bench_export.py --render            (rewrite the .md files from the .json)
      python bench/bench_export.py --no-rss --format-sets 'overlay,heatmap,raw;overlay;raw' \
          --out export_formats                         (the I/O cost of each output format)
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
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).resolve().parent / "results"
HERE = Path(__file__).resolve().parent


MODELS = {
    "small": "small CNN 64x64",
    "mobilenetv2": "MobileNetV2(weights=None) 224x224",
    "resnet50": "ResNet50(weights=None) 224x224",
}


def build_model(name: str):
    import keras

    if name == "small":
        from xai import testing

        return testing.functional_cnn((64, 64, 3), 10)
    keras.utils.set_random_seed(0)
    if name == "resnet50":
        return keras.applications.ResNet50(weights=None)
    return keras.applications.MobileNetV2(weights=None)


def make_folder(root: Path, num_images: int, unique: int, image_size: int = 256) -> Path:
    """``num_images`` JPEGs under ``root/<class>/<i>.jpg`` from ``unique`` distinct scenes."""
    import cv2

    from xai.datasets import CLASS_NAMES, make_shapes

    data = make_shapes(min(unique, num_images), seed=0, image_size=image_size)
    encoded = []
    for image in data.images:
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        assert ok
        encoded.append(buf.tobytes())
    for name in CLASS_NAMES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        k = i % len(encoded)
        (root / CLASS_NAMES[int(data.labels[k])] / f"{i:06d}.jpg").write_bytes(encoded[k])
    return root


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of ``fn()``."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def compute_only(explainer, batches, num_images: int, batch_size: int) -> None:
    """Grad-CAM on ``num_images`` images from in-memory batches."""
    done = 0
    while done < num_images:
        x = batches[(done // batch_size) % len(batches)]
        n = min(batch_size, num_images - done)
        explainer.explain(x[:n], "gradcam", batch_size=batch_size, progress=False)
        done += n


def io_only(folder: Path, out: Path, size: tuple[int, int], limit: int) -> float:
    """Seconds per image of the I/O alone, one thread: what export does besides the compiled step.

    Read + decode + resize + preprocess, then heatmap at the original size, overlay, PNG/npy
    encoding and atomic writes (the export's own writer, on a fixed 7x7 raw map), then a file
    system flush per 32 images.
    """
    import numpy as np

    from xai import io, postprocess
    from xai.export.writer import _filesystem_sync, _Job, _Writer
    from xai.preprocessing import get_preprocess

    pre = get_preprocess("symmetric")
    files = sorted(folder.rglob("*.jpg"))[:limit]
    writer = _Writer(out, postprocess.Display(), None, False, 0.4, "jet")
    sync = _filesystem_sync(out)
    raw = np.random.default_rng(0).random((7, 7), dtype=np.float32)
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        image = io.read_image(f)
        pre(io.resize_image(image, size).astype(np.float32)[None])
        outputs = {
            k: f"{k}/{i}{'.npy' if k == 'raw' else '.png'}" for k in ("overlay", "heatmap", "raw")
        }
        rows = writer(
            [_Job(str(i), outputs, image.shape[:2], image, raw, {"height": 0, "width": 0})]
        )
        assert rows[0].get("status") != "error", rows
        if i % 32 == 31:
            sync()
    return (time.perf_counter() - t0) / len(files)


def rss_child(model_name: str, num_images: int, unique: int, batch_size: int, work: Path) -> dict:
    """Peak RSS (MiB) and wall time of a fresh process exporting ``num_images`` images."""
    code = f"""
import os, sys, time, resource, json
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
sys.path.insert(0, {str(HERE)!r})
from pathlib import Path
from bench_export import build_model, make_folder
import xai
work = Path({str(work)!r})
model_path = work / 'model.keras'
if not model_path.exists():
    build_model({model_name!r}).save(model_path)
folder = make_folder(work / 'in_{num_images}', {num_images}, {unique})
t0 = time.perf_counter()
s = xai.export(str(model_path), folder, work / 'out_{num_images}', batch_size={batch_size},
               preprocess='symmetric', progress=False)
print(json.dumps({{"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t0, "ok": s.ok, "failed": s.failed}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    shutil.rmtree(work / f"in_{num_images}", ignore_errors=True)
    shutil.rmtree(work / f"out_{num_images}", ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small CNN and small folders (smoke test)")
    ap.add_argument("--model", choices=sorted(MODELS), default="mobilenetv2")
    ap.add_argument(
        "--images", type=int, default=None, help="images in the throughput folder (default 2000)"
    )
    ap.add_argument("--unique", type=int, default=500, help="distinct pictures in the folders")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved compute/export pairs")
    ap.add_argument("--rss-small", type=int, default=None, help="default 1000 (quick: 200)")
    ap.add_argument("--rss-large", type=int, default=None, help="default 10000 (quick: 2000)")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument(
        "--format-sets",
        default="overlay,heatmap,raw",
        help="';'-separated output format sets, each exported in every repeat (the first is the "
        "headline), e.g. 'overlay,heatmap,raw;overlay;raw'; a set ending in @N writes its PNGs "
        "with png_compression=N, e.g. 'overlay,heatmap,raw@0'",
    )
    ap.add_argument("--out", default=None, help="results name (bench/results/<out>.md/.json)")
    ap.add_argument(
        "--render", action="store_true", help="only rewrite the .md files from the .json results"
    )
    args = ap.parse_args()
    if args.render:
        for path in sorted(RESULTS.glob("export*.json")):
            path.with_suffix(".md").write_text(render(json.loads(path.read_text())))
        return
    n_images = args.images or (300 if args.quick else 2000)
    rss_small = args.rss_small or (200 if args.quick else 1000)
    rss_large = args.rss_large or (2000 if args.quick else 10000)
    bs = args.batch_size
    model_name = "small" if args.quick else args.model

    import numpy as np

    import xai
    from xai import io
    from xai.preprocessing import get_preprocess

    work = Path(tempfile.mkdtemp(prefix="xai-bench-export-"))
    try:
        t0 = time.perf_counter()
        folder = make_folder(work / "in", n_images, args.unique)
        gen_s = time.perf_counter() - t0
        model = build_model(model_name)
        size = tuple(model.inputs[0].shape[1:3])
        explainer = xai.Explainer(model)
        pre = get_preprocess("symmetric")
        files = sorted(folder.rglob("*.jpg"))
        stack = np.stack(
            [
                pre(io.resize_image(io.read_image(f), size).astype(np.float32)[None])[0]
                for f in files[: 4 * bs]
            ]
        )
        batches = [stack[i : i + bs] for i in range(0, len(stack), bs)]
        explainer.explain(batches[0], "gradcam", batch_size=bs, progress=False)  # trace + warm up
        compute_only(explainer, batches, 2 * bs, bs)

        format_sets = [f.strip() for f in args.format_sets.split(";") if f.strip()]
        load_before = os.getloadavg()
        compute_s, compute_cpu = [], []
        export_s = {f: [] for f in format_sets}
        export_cpu = {f: [] for f in format_sets}
        export_kib = {f: [] for f in format_sets}
        for r in range(args.repeats):
            wall, cpu = timed(lambda: compute_only(explainer, batches, n_images, bs))
            compute_s.append(wall)
            compute_cpu.append(cpu)
            for formats in format_sets:
                out = work / f"out{r}"
                summary = []
                names, _, level = formats.partition("@")
                wall, cpu = timed(
                    lambda out=out, summary=summary, names=names, level=level: summary.append(
                        xai.export(
                            explainer,
                            folder,
                            out,
                            batch_size=bs,
                            preprocess="symmetric",
                            formats=names,
                            png_compression=int(level) if level else None,
                            progress=False,
                        )
                    )
                )
                export_s[formats].append(wall)
                print(
                    f"repeat {r}: {formats}: {n_images / wall:.1f} images/s, "
                    f"{cpu / wall:.2f} cores "
                    f"(compute only: {n_images / compute_s[-1]:.1f})",
                    file=sys.stderr,
                    flush=True,
                )
                export_cpu[formats].append(cpu)
                assert summary[0].ok == n_images and summary[0].failed == 0, summary
                written = sum(
                    f.stat().st_size for d in names.split(",") for f in (out / d).rglob("*")
                )
                export_kib[formats].append(written / 1024 / n_images)
                shutil.rmtree(out)
                os.sync()  # untimed: the next run must not pay for flushing this one's deletion
        load_after = os.getloadavg()
        (work / "io").mkdir()
        io_s = io_only(folder, work / "io", size, limit=200)

        med = statistics.median
        compute_ips = n_images / med(compute_s)
        headline = format_sets[0]
        export_ips = n_images / med(export_s[headline])
        ratios = [c / e for c, e in zip(compute_s, export_s[headline])]
        res = {
            "model": MODELS[model_name],
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "images": n_images,
            "image_size": "256x256 JPEG (quality 90)",
            "batch_size": bs,
            "formats": headline,
            "compute_only_images_per_s": compute_ips,
            "export_images_per_s": export_ips,
            "export_over_compute": med(ratios),
            "export_over_compute_runs": ratios,
            "compute_ms_per_image": 1000 * med(compute_s) / n_images,
            "io_sequential_ms_per_image": 1000 * io_s,
            "compute_cpu_ms_per_image": 1000 * med(compute_cpu) / n_images,
            "export_cpu_ms_per_image": 1000 * med(export_cpu[headline]) / n_images,
            "by_formats": {
                f: {
                    "images_per_s": n_images / med(export_s[f]),
                    "export_over_compute": med([c / e for c, e in zip(compute_s, export_s[f])]),
                    "cpu_ms_per_image": 1000 * med(export_cpu[f]) / n_images,
                    "kib_per_image": med(export_kib[f]),
                    "runs_images_per_s": [n_images / t for t in export_s[f]],
                }
                for f in format_sets
            },
            "load_average_1min_before_after": [load_before[0], load_after[0]],
            "generate_folder_s": gen_s,
        }
        if not args.no_rss:
            small = rss_child(model_name, rss_small, args.unique, bs, work)
            large = rss_child(model_name, rss_large, args.unique, bs, work)
            res.update(
                rss_small_images=rss_small,
                rss_large_images=rss_large,
                rss_small_mib=small["peak_rss_mib"],
                rss_large_mib=large["peak_rss_mib"],
                rss_large_over_small=large["peak_rss_mib"] / small["peak_rss_mib"],
                rss_small_seconds=small["seconds"],
                rss_large_seconds=large["seconds"],
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    res["repeats"] = args.repeats
    RESULTS.mkdir(exist_ok=True)
    name = args.out or {"small": "export_quick", "mobilenetv2": "export"}.get(
        model_name, f"export_{model_name}"
    )
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    text = render(res)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


def render(res: dict) -> str:
    """The Markdown report of one benchmark result (``bench/results/<name>.json``)."""
    compute_ips, export_ips = res["compute_only_images_per_s"], res["export_images_per_s"]
    compute_cpu, export_cpu = res["compute_cpu_ms_per_image"], res["export_cpu_ms_per_image"]
    io_cpu = export_cpu - compute_cpu
    cores = compute_cpu / res["compute_ms_per_image"]
    load = res["load_average_1min_before_after"]
    runs = ", ".join(f"{r:.1%}" for r in res["export_over_compute_runs"])
    md = [
        f"# Export benchmark: {res['model']}, batch {res['batch_size']}, {res['machine']}",
        "",
        f"{res['images']} generated {res['image_size']} images in 4 sub-folders; Grad-CAM; "
        f"formats `{res['formats'].replace(' ', '')}` (overlay PNG, 16-bit heatmap PNG, raw "
        ".npy); preprocessing `symmetric`. "
        f"Median of {res.get('repeats', len(res['export_over_compute_runs']))} interleaved runs.",
        "",
        "| | images/s | wall ms / image | CPU ms / image (all threads) |",
        "|---|---|---|---|",
        f"| compute only (`Explainer.explain` on in-memory batches) | {compute_ips:.1f} | "
        f"{1000 / compute_ips:.2f} | {compute_cpu:.2f} |",
        f"| `xai.export` end to end (decode, compute, write, manifest) | {export_ips:.1f} | "
        f"{1000 / export_ips:.2f} | {export_cpu:.2f} |",
        "| I/O alone, one thread, no compute (read, decode, resize, heatmap, overlay, encode, "
        f"3 writes) | | {res['io_sequential_ms_per_image']:.2f} | |",
        "",
        f"**Export throughput / compute-only throughput: {res['export_over_compute']:.1%}** "
        f"(runs: {runs}; target >= 85%).",
        "",
        f"The I/O costs {io_cpu:.1f} CPU ms per image on top of the compute's {compute_cpu:.1f}. "
        "This machine has no accelerator, so both run on the same CPU cores: had the compute kept "
        "every core busy, the ratio could not exceed compute CPU / (compute + I/O CPU) = "
        f"{compute_cpu / export_cpu:.0%}; the compute-only loop used {cores:.2f} cores on "
        "average, and the I/O runs on what it leaves idle. Load average (1 min) before/after: "
        f"{load[0]:.1f} / {load[1]:.1f} on the machine's {res['machine'].split(', ')[-1]} "
        "(shared with other jobs).",
    ]
    if len(res.get("by_formats", {})) > 1:
        md += [
            "",
            "Same runs, other output formats (each exported in every repeat, interleaved; `@0`: "
            "PNGs written with `png_compression=0`, i.e. stored without compression):",
            "",
            "| formats | images/s | export / compute | CPU ms / image | I/O CPU ms / image "
            "| KiB written / image |",
            "|---|---|---|---|---|---|",
            *(
                f"| `{f}` | {v['images_per_s']:.1f} | {v['export_over_compute']:.1%} | "
                f"{v['cpu_ms_per_image']:.2f} | {v['cpu_ms_per_image'] - compute_cpu:.2f} | "
                + (f"{v['kib_per_image']:.1f} |" if "kib_per_image" in v else "|")
                for f, v in res["by_formats"].items()
            ),
        ]
    if "rss_large_mib" in res:
        md += [
            "",
            f"Peak RSS of a fresh `xai.export` process: {res['rss_small_images']:,} images "
            f"{res['rss_small_mib']:.0f} MiB ({res['rss_small_seconds']:.0f} s), "
            f"{res['rss_large_images']:,} images {res['rss_large_mib']:.0f} MiB "
            f"({res['rss_large_seconds']:.0f} s): **ratio {res['rss_large_over_small']:.3f}** "
            "(target <= 1.10).",
        ]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
