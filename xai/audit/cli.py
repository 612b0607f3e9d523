"""``xai audit MODEL DATA_DIR --out REPORT_DIR``: the audit from the command line.

``DATA_DIR`` is a class-per-sub-folder image tree (the ``keras.utils.image_dataset_from_directory``
convention: labels are the sorted sub-folder names unless ``--labels`` names them). ``--masks``
points at a tree of the same layout whose PNGs (same relative path, any image extension replaced
by ``.png``) are the object masks (non-zero = object), as ``xai.datasets.save_image_folder`` writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [v for item in values for v in item.split(",") if v]


def load_folder(
    data_dir: str | Path,
    size: tuple[int, int] | None,
    *,
    labels: list[str] | None = None,
    mask_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str], list[str]]:
    """Read a class-per-sub-folder tree: (images, labels, masks or None, file names, class names)."""
    from .. import io
    from ..cli import UsageError

    root = Path(data_dir)
    if not root.is_dir():
        raise UsageError(
            f"DATA_DIR must be a folder with one sub-folder per class. Received: {str(root)!r}."
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = labels if labels else found
    missing = [c for c in classes if c not in found]
    if missing or not classes:
        raise UsageError(
            f"DATA_DIR {str(root)!r} must hold one sub-folder per class; missing {missing or 'all'} "
            f"(found {found})."
        )
    images, ys, masks, names = [], [], [], []
    for label, cls in enumerate(classes):
        for path in sorted((root / cls).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            image = io.read_image(path)
            if size is not None and None not in size:
                image = io.resize_image(image, size)
            images.append(image)
            ys.append(label)
            names.append(f"{cls}/{path.name}")
            if mask_dir is not None:
                mpath = Path(mask_dir) / cls / (path.stem + ".png")
                if not mpath.exists():
                    raise UsageError(f"No mask for {path}: expected {mpath}.")
                mask = io.read_image(mpath)[..., 0] > 0
                if mask.shape != image.shape[:2]:
                    import cv2

                    mask = (
                        cv2.resize(
                            mask.astype(np.uint8),
                            image.shape[1::-1],
                            interpolation=cv2.INTER_NEAREST,
                        )
                        > 0
                    )
                masks.append(mask)
    if not images:
        raise UsageError(f"No images ({', '.join(IMAGE_SUFFIXES)}) under {str(root)!r}.")
    return (
        np.stack(images),
        np.array(ys),
        (np.stack(masks) if masks else None),
        names,
        list(classes),
    )


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "audit",
        help="audit a model: accuracy, faithfulness, localisation and sanity checks -> HTML report",
        epilog="example:\n  xai audit model.keras data/images --masks data/masks --out audit/",
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


def run(args: argparse.Namespace) -> int:
    from .. import methods as methods_mod
    from ..cli import load_model
    from ..methods.registry import Method
    from .checks import audit

    method_names = _split(args.methods) or ["gradcam"]
    for m in method_names:
        methods_mod.get(m)  # did-you-mean before loading anything
    model = load_model(args.model, unsafe=args.unsafe)
    size = tuple(model.inputs[0].shape[1:3])
    images, labels, masks, names, classes = load_folder(
        args.data_dir, size, labels=_split(args.labels), mask_dir=args.masks
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
    sys.stdout.flush()
    return 0


__all__ = ["add_parser", "load_folder", "run"]
