"""``xai explain MODEL FILES``: explain a few image files and write overlays, raw maps, a manifest.

Outputs are named ``<stem>_<method>.png`` / ``.npy``. Inputs whose names would give the same
output (``cat.jpg`` and ``cat.png``; ``a/cat.png`` and ``b/cat.png``) are told apart by their
suffix (``cat_jpg_gradcam.png``) and, if that is not enough, by 8 hex digits of a hash of their
path (``cat_png~1a2b3c4d_gradcam.png``), so no output overwrites another. ``manifest.json`` lists
every input with its outputs, prediction, target and score, and records the method, its
parameters (the seed included, also when it was drawn) and the layer.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import (
    EXIT_CODES,
    UsageError,
    add_param_option,
    add_unsafe_option,
    load_model,
    parse_params,
    parse_targets,
)

EPILOG = f"""example:
  xai explain model.keras cat.jpg --method gradcam --out explanations/
  xai explain model.keras scans/*.png --method smoothgrad --param num_samples=30 --seed 0

{EXIT_CODES}
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "explain",
        help="explain images with a saved model and write overlay PNGs",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a .keras or .h5 model file")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, ...)")
    p.add_argument("--method", default="gradcam", help="registered method (see `xai methods`)")
    p.add_argument("--layer", default=None, help="CAM layer path, 'outer/inner' for nested models")
    p.add_argument(
        "--targets",
        default=None,
        help="'predicted' (default), a class index, a class name (with --labels), or "
        "region:CLASS for a segmentation model",
    )
    p.add_argument(
        "--labels", default=None, metavar="FILE", help="class names, one per line (index = class)"
    )
    p.add_argument("--out", default="xai-output", help="output folder (created)")
    p.add_argument("--alpha", type=float, default=0.4, help="overlay opacity of the heatmap")
    p.add_argument("--colormap", default="jet", help="OpenCV colour map name")
    p.add_argument(
        "--num-samples", type=int, default=None, help="noise samples (smoothing methods)"
    )
    p.add_argument(
        "--noise-level", type=float, default=None, help="noise sigma as a fraction of the range"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of stochastic methods")
    add_param_option(p)
    add_unsafe_option(p)


def output_stems(paths: Sequence[str | Path]) -> list[str]:
    """One distinct, readable output stem per input path (see the module documentation)."""
    plain = [Path(p).stem for p in paths]
    counts = Counter(plain)
    stems = [
        s if counts[s] == 1 else f"{s}_{Path(p).suffix.lstrip('.').lower()}"
        for s, p in zip(plain, paths)
    ]
    counts = Counter(stems)
    return [
        s
        if counts[s] == 1
        else f"{s}~{hashlib.sha256(str(Path(p).resolve()).encode()).hexdigest()[:8]}"
        for s, p in zip(stems, paths)
    ]


def _class_target(targets: Any, names: tuple[str, ...] | None) -> Any:
    if isinstance(targets, tuple):  # ("region", class): a segmentation region
        from ..targets import region

        return region(_class_target(targets[1], names))
    if targets is None or isinstance(targets, int):
        return targets
    if names is not None and targets in names:
        return names.index(targets)
    raise UsageError(
        "--targets must be 'predicted' or a class index (or, with --labels, a class name), or "
        "region:CLASS for a segmentation model. "
        f"Received: {targets!r}."
        + (f" The classes are {list(names)}." if names is not None else "")
    )


def run(args: argparse.Namespace) -> int:
    from .. import io, methods
    from ..errors import XaiError
    from ..explainer import Explainer
    from ..export.options import _load_class_names

    methods.get(args.method)  # did-you-mean before loading anything
    names = _load_class_names(args.labels)
    targets = _class_target(parse_targets(args.targets), names)
    params = parse_params(args.param)
    if args.num_samples is not None:
        params["num_samples"] = args.num_samples
    if args.noise_level is not None:
        params["noise_level"] = args.noise_level
    model = load_model(args.model, unsafe=args.unsafe)
    explainer = Explainer(model, layer=args.layer, class_names=names)
    size = tuple(model.inputs[0].shape[1:3])
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    run_info: dict[str, Any] = {}
    for path, stem in zip(args.images, output_stems(args.images)):
        try:
            image = io.read_image(path)
            resized = io.resize_image(image, size) if None not in size else image
            e = explainer.explain(
                resized[None], args.method, targets=targets, seed=args.seed, **params
            )
            overlay = e.overlay(alpha=args.alpha, colormap=args.colormap)[0]
            png = io.write_png(out / f"{stem}_{e.method}.png", overlay)
            npy = io.write_npy(out / f"{stem}_{e.method}.npy", e.attributions[0])
            run_info = {"method": e.method, "params": e.params, "layer": e.layer}
            rows.append(
                {
                    "path": str(path),
                    "status": "ok",
                    "overlay": png.name,
                    "raw": npy.name,
                    "predicted": int(e.predictions[0]) if e.logits.ndim == 2 else None,
                    "label": e.label(0),
                    "target": int(e.targets[0]),
                    "score": float(e.scores[0]),
                }
                | ({"target_spec": dict(e.target)} if e.target is not None else {})
            )
            print(f"{path}: {e.label(0)} -> {png}")
        except XaiError as exc:
            rows.append({"path": str(path), "status": "error", "error": str(exc)})
            print(f"{path}: FAILED: {exc}", file=sys.stderr)
    manifest = {
        **run_info,
        "seed": args.seed if not run_info else run_info["params"].get("seed", args.seed),
        "class_names": list(names) if names else None,
        "alpha": args.alpha,
        "colormap": args.colormap,
        "files": rows,
    }
    io.write_json(out / "manifest.json", manifest)
    return 1 if any(r["status"] != "ok" for r in rows) else 0
