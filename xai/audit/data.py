"""Reading an audit data set from a folder: images, labels and object masks.

``DATA_DIR`` is a class-per-sub-folder image tree (the ``keras.utils.image_dataset_from_directory``
convention: labels are the sorted sub-folder names unless ``--labels`` names them). ``--masks``
points at a tree of the same layout whose PNGs (same relative path, any image extension replaced
by ``.png``) are the object masks (non-zero = object), as ``xai.datasets.save_image_folder`` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import XaiValueError
from ..io import IMAGE_SUFFIXES


def split_names(values: list[str] | None) -> list[str] | None:
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
    """Read a class-per-sub-folder tree: (images, labels, masks or None, file and class names)."""
    from .. import io

    root = Path(data_dir)
    if not root.is_dir():
        raise XaiValueError(
            f"DATA_DIR must be a folder with one sub-folder per class. Received: {str(root)!r}."
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = labels if labels else found
    missing = [c for c in classes if c not in found]
    if missing or not classes:
        raise XaiValueError(
            f"DATA_DIR {str(root)!r} must hold one sub-folder per class; "
            f"missing {missing or 'all'} "
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
                    raise XaiValueError(f"No mask for {path}: expected {mpath}.")
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
        raise XaiValueError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {str(root)!r}.")
    return (
        np.stack(images),
        np.array(ys),
        (np.stack(masks) if masks else None),
        names,
        list(classes),
    )


__all__ = ["load_folder", "split_names"]
