"""``xai export``: the argparse adapter over :func:`xai.export.export`."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..export.options import FORMATS
from ..preprocessing import PRESETS
from .common import parse_params, parse_targets

log = logging.getLogger("xai.export")

EXAMPLE = """examples:
  xai export model.keras photos/ heatmaps/
  xai export model.keras photos/ heatmaps/ --method gradcam --preprocess symmetric \\
      --labels classes.txt --formats overlay,heatmap --batch-size 64
  xai export saved_model_dir/ photos/ out/ --method smoothgrad --param num_samples=10
  xai export model.keras photos/ out/ --targets labels.csv   # CSV columns: path,target
  xai export /shared/model.keras /shared/photos/ /shared/out/ --engine ray \\
      --address auto --actors 8 --gpus-per-actor 1   # on a Ray cluster

Rerun the same command to resume an interrupted export (done images are skipped).
Exit status: 0 all images explained, 1 some failed (see manifest.jsonl), 2 usage error,
3 the output folder cannot be written (disk full, read-only, ...): fix it and rerun to resume.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``export`` sub-command on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "export",
        help="explain every image of a folder tree: overlays, heatmaps, raw maps and a manifest",
        description=(
            "Explain every image under INPUT_DIR (nested folders included) and write overlay "
            "PNGs, 16-bit heatmap PNGs and raw .npy maps mirroring its structure, plus "
            "manifest.jsonl (one line per file) and summary.json, to OUTPUT_DIR."
        ),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model", metavar="MODEL", help="a .keras or .h5 file, or a TensorFlow SavedModel folder"
    )
    p.add_argument("input_dir", metavar="INPUT_DIR", help="folder of images (walked recursively)")
    p.add_argument(
        "output_dir",
        metavar="OUTPUT_DIR",
        help="output folder (created; resumed if it holds the same export)",
    )
    p.add_argument(
        "--method", default="gradcam", help="registered method (see `xai methods`); default gradcam"
    )
    p.add_argument(
        "--layer",
        default=None,
        help="CAM layer path ('outer/inner' for nested models); default: auto",
    )
    p.add_argument(
        "--targets",
        default="predicted",
        help="'predicted' (default), a class index or name for all images, "
        "or a CSV with path,target columns",
    )
    p.add_argument(
        "--batch-size", type=int, default=32, help="images per compiled step (default 32)"
    )
    p.add_argument(
        "--image-size",
        default=None,
        metavar="HxW",
        help="resize size for models that accept any size",
    )
    p.add_argument(
        "--preprocess",
        default="none",
        metavar="PRESET|module:function",
        help="one of "
        + ", ".join(PRESETS)
        + " (default none), or module:function / file.py:function",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="classes.txt",
        help="class names, one per line (line i = class i)",
    )
    p.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help="comma list of overlay,heatmap,raw (default all)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an export made with other settings"
    )
    p.add_argument(
        "--unsafe", action="store_true", help="allow models with Lambda layers (trusted files only)"
    )
    p.add_argument(
        "--alpha", type=float, default=0.4, help="overlay opacity of the colour map (default 0.4)"
    )
    p.add_argument("--colormap", default="jet", help="colour map name (default jet)")
    p.add_argument(
        "--png-compression",
        type=int,
        default=None,
        metavar="0-9",
        help="zlib level of the PNGs: 0 = none (fastest, files ~1.5-2x larger) to 9 (smallest); "
        "default OpenCV's (1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of stochastic methods (default 0)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a method parameter, e.g. --param num_samples=10 (repeatable)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image (H*W) read (default 100,000,000)",
    )
    p.add_argument(
        "--keep-orientation",
        action="store_true",
        help="keep the stored pixels instead of turning photos upright by their EXIF orientation",
    )
    p.add_argument(
        "--workers", type=int, default=4, help="threads writing the pictures (default 4)"
    )
    p.add_argument(
        "--multi-gpu",
        action="store_true",
        help="spread batches over all visible GPUs (MirroredStrategy)",
    )
    ray = p.add_argument_group(
        "Ray engine",
        "run the same export on a Ray cluster (pip install 'xai[ray]'): MODEL, INPUT_DIR and "
        "OUTPUT_DIR must then be paths every node can read (and write, for OUTPUT_DIR)",
    )
    ray.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default: this process) or ray (Ray Data with a pool of actors)",
    )
    ray.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join ('auto', 'head-node:6379'); default: a local Ray for the run",
    )
    ray.add_argument(
        "--actors", type=int, default=1, help="actors, each with its own model (default 1)"
    )
    ray.add_argument(
        "--gpus-per-actor",
        type=float,
        default=0,
        metavar="G",
        help="GPUs per actor (default 0; fractions share a GPU)",
    )
    ray.add_argument(
        "--cpus-per-actor",
        type=float,
        default=None,
        metavar="C",
        help="CPUs Ray reserves per actor, the cores its TensorFlow uses (default: a one-node "
        "Ray's CPUs split among the actors; 1 on a cluster)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar; print only failures"
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``xai export`` from parsed arguments; returns the exit code (0, 1 or 2 via errors)."""
    strategy = None
    if args.multi_gpu:
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            strategy = tf.distribute.MirroredStrategy()
        else:
            log.warning(
                "xai export: --multi-gpu needs several GPUs; %d visible, running on one device.",
                len(gpus),
            )
    from ..export import export

    targets = parse_targets(args.targets)
    if isinstance(targets, tuple):  # region:CLASS (the class resolved against the labels)
        from ..targets import region

        targets = region(targets[1])
    summary = export(
        args.model,
        args.input_dir,
        args.output_dir,
        method=args.method,
        layer=args.layer,
        targets="predicted" if targets is None else targets,
        batch_size=args.batch_size,
        image_size=args.image_size,
        preprocess=args.preprocess,
        class_names=args.labels,
        formats=args.formats,
        overwrite=args.overwrite,
        unsafe=args.unsafe,
        alpha=args.alpha,
        colormap=args.colormap,
        png_compression=args.png_compression,
        seed=args.seed,
        params=parse_params(args.param),
        max_pixels=args.max_pixels,
        orientation="stored" if args.keep_orientation else "exif",
        strategy=strategy,
        workers=args.workers,
        progress=not args.quiet,
        engine=args.engine,
        address=args.address,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
    )
    if not args.quiet:
        print(summary)
    if summary.failed:
        print(f"xai export: {summary.failed} image(s) failed:", file=sys.stderr)
        for path, reason in summary.failures[:10]:
            print(f"  {path}: {reason}", file=sys.stderr)
        if summary.failed > 10:
            print(f"  ... and {summary.failed - 10} more", file=sys.stderr)
        print(f"  (status 'error' rows of {summary.manifest_path})", file=sys.stderr)
    return summary.exit_code
