"""``xai audit MODEL DATA_DIR --out REPORT_DIR``: the audit from the command line.

``DATA_DIR`` is a class-per-sub-folder image tree (the ``keras.utils.image_dataset_from_directory``
convention: labels are the sorted sub-folder names unless ``--labels`` names them). ``--masks``
points at a tree of the same layout whose PNGs (same relative path, any image extension replaced
by ``.png``) are the object masks (non-zero = object), as ``xai.datasets.save_image_folder`` writes.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import UsageError, load_model

FLAG_KEYS = ("sanity_randomisation", "deletion_vs_random", "shortcut")
EPILOG = """example:
  xai audit model.keras data/images --masks data/masks --out audit/
  xai audit model.keras data/images --masks data/masks --fail-on any   # a gate in CI

exit status: 0 the report was written (and no --fail-on flag was raised), 1 a flag named by
--fail-on was raised (the report is written all the same), 2 usage error (bad arguments,
unreadable model or data)
"""


def parse_fail_on(text: str | None) -> frozenset[str]:
    """``--fail-on``: ``any``, ``none`` or a comma list of flag keys."""
    from ..errors import did_you_mean

    if text is None or text.strip() == "none":
        return frozenset()
    if text.strip() == "any":
        return frozenset(FLAG_KEYS)
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in FLAG_KEYS]
    if unknown or not keys:
        raise UsageError(
            "--fail-on must be 'any', 'none' or a comma list of flags "
            f"({', '.join(FLAG_KEYS)}). Received: {text!r}. "
            + (did_you_mean(unknown[0], FLAG_KEYS) if unknown else "")
        )
    return frozenset(keys)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "audit",
        help="audit a model: accuracy, faithfulness, localisation and sanity checks -> HTML report",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a .keras or .h5 model file")
    p.add_argument("data_dir", help="class-per-sub-folder image folder")
    p.add_argument("--out", default="xai-audit", help="report folder (report.html, report.json)")
    p.add_argument(
        "--masks", default=None, help="mask folder of the same layout (non-zero = object)"
    )
    p.add_argument(
        "--labels", nargs="+", default=None, help="class names (sub-folders) in label order"
    )
    p.add_argument(
        "--methods", nargs="+", default=["gradcam", "smoothgrad"], help="methods (first = primary)"
    )
    p.add_argument(
        "--num-samples", type=int, default=None, help="noise samples of smoothing methods"
    )
    p.add_argument("--sanity-images", type=int, default=32, help="images used by the sanity checks")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.add_argument("--batch-size", type=int, default=64, help="images per compiled step")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random")
    p.add_argument(
        "--unsafe", action="store_true", help="allow models with Lambda layers (trusted files only)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--fail-on",
        default="none",
        metavar="FLAGS",
        help="exit with status 1 when one of these flags is raised: 'any', 'none' (default) or "
        f"a comma list of {', '.join(FLAG_KEYS)}",
    )


def run(args: argparse.Namespace) -> int:
    from .. import methods as methods_mod
    from ..audit.checks import audit
    from ..audit.data import load_folder, split_names
    from ..methods.registry import Method

    method_names = split_names(args.methods) or ["gradcam"]
    fail_on = parse_fail_on(args.fail_on)  # before loading anything
    for m in method_names:
        methods_mod.get(m)  # did-you-mean before loading anything
    model = load_model(args.model, unsafe=args.unsafe)
    size = tuple(model.inputs[0].shape[1:3])
    images, labels, masks, names, classes = load_folder(
        args.data_dir, size, labels=split_names(args.labels), mask_dir=args.masks
    )
    params: dict[str, dict[str, Any]] = {}
    if args.num_samples is not None:
        for m in method_names:
            meth: Method = methods_mod.get(m)
            if "num_samples" in meth.defaults:
                params[m] = {"num_samples": args.num_samples}
    report = audit(
        model,
        images,
        labels,
        masks=masks,
        methods=method_names,
        class_names=classes,
        names=names,
        method_params=params,
        num_steps=args.steps,
        sanity_images=args.sanity_images,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False if args.no_progress else None,
    )
    paths = report.save(args.out)
    print(f"xai audit: {report.num_images} images, accuracy {report.accuracy:.3f}")
    for f in report.flags:
        print(f"  [{'FLAG' if f.raised else 'ok'}] {f.message}")
    for p in paths:
        print(f"  wrote {p}")
    gate = [f for f in report.flags if f.raised and f.key in fail_on]
    if gate:
        print(
            f"xai audit: failing (--fail-on): {', '.join(sorted({f.key for f in gate}))} raised",
            file=sys.stderr,
        )
    sys.stdout.flush()
    return 1 if gate else 0
