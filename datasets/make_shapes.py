"""Regenerate the shapes datasets (``xai.datasets.make_shapes``) as image folders.

Two commands, run from the repository root::

    python datasets/make_shapes.py sample              # the committed samples + datasets/SHA256SUMS
    python datasets/make_shapes.py full --output DIR   # the full sets (about 95 MB of PNG)

``full`` writes ``DIR/clean/{train,val,test}`` and ``DIR/shortcut/{train,val,test,swapped}``, each
in the layout of ``xai.datasets.save_image_folder`` (``images/<class>/``, ``masks/<class>/``,
``labels.csv``; ``marker_masks/<class>/`` for the shortcut variant), plus a ``SHA256SUMS``.
Everything is made from a seed; nothing is downloaded. The same arguments give the same pixels.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from xai.datasets import CLASS_NAMES, make_shapes, save_image_folder  # noqa: E402

SAMPLE_FOLDERS = ("shapes_sample", "shortcut_sample")


def write_checksums(root: Path, files: list[Path]) -> Path:
    """``root/SHA256SUMS`` in ``sha256sum`` format, paths relative to ``root``, sorted."""
    lines = []
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(root).as_posix()}\n")
    target = root / "SHA256SUMS"
    target.write_text("".join(lines), encoding="utf-8")
    return target


def make_sample(args: argparse.Namespace) -> None:
    root = args.output
    for name in SAMPLE_FOLDERS:  # start clean: no stale files from another run
        if (root / name).exists():
            shutil.rmtree(root / name)
    n = args.per_class * len(CLASS_NAMES)  # labels come in balanced blocks: exactly per_class each
    written = save_image_folder(
        make_shapes(n, seed=args.seed, image_size=args.image_size, split="test"),
        root / "shapes_sample",
    )
    for split in ("test", "swapped"):  # the same scenes, with the right / a wrong marker
        data = make_shapes(
            args.shortcut_count,
            seed=args.seed,
            image_size=args.image_size,
            variant="shortcut",
            split=split,
        )
        written += save_image_folder(data, root / "shortcut_sample" / split)
    target = write_checksums(root, written)
    size = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files ({size / 1024:.0f} KiB) and {target}")


def make_full(args: argparse.Namespace) -> None:
    root = args.output
    counts = {
        "train": args.num_train,
        "val": args.num_val,
        "test": args.num_test,
        "swapped": args.num_test,
    }
    written: list[Path] = []
    for variant, splits in (
        ("clean", ("train", "val", "test")),
        ("shortcut", ("train", "val", "test", "swapped")),
    ):
        for split in splits:
            data = make_shapes(
                counts[split],
                seed=args.seed,
                image_size=args.image_size,
                variant=variant,
                split=split,
            )
            written += save_image_folder(data, root / variant / split)
            print(f"{variant}/{split}: {len(data)} images", flush=True)
    target = write_checksums(root, written)
    print(f"wrote {len(written)} files and {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="write the small committed samples")
    sample.add_argument("--output", type=Path, default=HERE, help="default: datasets/")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--image-size", type=int, default=64)
    sample.add_argument("--per-class", type=int, default=8, help="clean test images per class")
    sample.add_argument(
        "--shortcut-count",
        type=int,
        default=8,
        help="shortcut test images, written with right and with swapped markers",
    )
    sample.set_defaults(run=make_sample)

    full = commands.add_parser("full", help="write the full train/val/test sets")
    full.add_argument("--output", type=Path, required=True)
    full.add_argument("--seed", type=int, default=0)
    full.add_argument("--image-size", type=int, default=64)
    full.add_argument("--num-train", type=int, default=4000)
    full.add_argument("--num-val", type=int, default=500)
    full.add_argument("--num-test", type=int, default=500)
    full.set_defaults(run=make_full)

    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
