"""The export's options: formats, image size, class names and targets, parsed and checked once."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XaiValueError, bad_type, bad_value, did_you_mean

FORMATS: tuple[str, ...] = ("overlay", "heatmap", "raw")
"""Output kinds: overlay PNG (RGB), heatmap PNG (16-bit grey), raw attributions (``.npy``)."""

# ------------------------------------------------------------------------------------ settings


def _parse_image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×,]\s*(\d+))?\s*", value)
        if not m:
            raise bad_value("image_size", "'HxW' (e.g. '224x224') or one int for a square", value)
        h = int(m[1])
        w = int(m[2]) if m[2] else h
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        h = w = int(value)
    elif isinstance(value, Sequence) and len(value) == 2:
        h, w = value
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (h, w)):
            raise bad_type("image_size", "(height, width) ints", value)
        h, w = int(h), int(w)
    else:
        raise bad_type("image_size", "None, an int, (height, width) or 'HxW'", value)
    if h < 1 or w < 1:
        raise bad_value("image_size", "positive sizes", value)
    return h, w


def _parse_formats(formats: Any) -> tuple[str, ...]:
    if isinstance(formats, str):
        items = [f.strip().lower() for f in formats.split(",") if f.strip()]
    elif isinstance(formats, Sequence):
        items = [str(f).strip().lower() for f in formats]
    else:
        raise bad_type(
            "formats", "a sequence of 'overlay', 'heatmap', 'raw' or a comma list", formats
        )
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise bad_value(
            "formats",
            "one or more of 'overlay', 'heatmap', 'raw' (comma-separated on the command line)",
            formats,
            did_you_mean(bad[0], FORMATS) if bad else "Example: --formats overlay,raw.",
        )
    return tuple(f for f in FORMATS if f in items)  # canonical order, no duplicates


def _load_class_names(class_names: Any) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (str, os.PathLike)):
        p = Path(class_names)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise bad_value(
                "labels", "a readable text file with one class name per line", str(p), str(exc)
            ) from exc
        names = text.splitlines()
        while names and not names[-1].strip():
            names.pop()
        names = [n.strip() for n in names]
        if not names or any(not n for n in names):
            raise bad_value(
                "labels",
                "a text file with one non-empty class name per line (line i = class i)",
                str(p),
                "Remove blank lines: they would shift the class numbers.",
            )
        return tuple(names)
    if isinstance(class_names, Sequence):
        return tuple(str(n) for n in class_names)
    raise bad_type("class_names", "None, a sequence of names or a path to classes.txt", class_names)


def _class_index(value: str, class_names: tuple[str, ...] | None, where: str) -> int:
    text = value.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if class_names and text in class_names:
        return class_names.index(text)
    hint = (
        did_you_mean(text, class_names)
        if class_names
        else "Class names need --labels classes.txt (class_names= in Python)."
    )
    raise XaiValueError(
        f"{where} must be a class index or a class name. Received: {value!r}. {hint}"
    )


_CSV_PATH_COLUMNS = ("path", "file", "filename", "image", "relpath")
_CSV_TARGET_COLUMNS = ("target", "label", "class", "class_name")


def _read_targets_csv(
    path: Path, input_dir: Path, class_names: tuple[str, ...] | None
) -> dict[str, int]:
    """``{relative path: class}`` from a CSV with a path and a target column (see ``export``)."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        raise bad_value("targets", "a readable CSV file", str(path), str(exc)) from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        path_col = next((c for c in _CSV_PATH_COLUMNS if c in header), None)
        target_col = next((c for c in _CSV_TARGET_COLUMNS if c in header), None)
        if path_col is None or target_col is None:
            raise bad_value(
                "targets",
                "a CSV with a header naming a path column ("
                + "/".join(_CSV_PATH_COLUMNS)
                + ") and a target column ("
                + "/".join(_CSV_TARGET_COLUMNS)
                + ")",
                str(path),
                f"Its header is {reader.fieldnames}. Example:\n  path,target\n  cats/tom.jpg,3",
            )
        names = {h.strip().lower(): h for h in reader.fieldnames or []}
        mapping: dict[str, int] = {}
        base = path.resolve().parent
        root = input_dir.resolve()
        for line_no, row in enumerate(reader, start=2):
            raw_path = (row.get(names[path_col]) or "").strip().replace("\\", "/")
            raw_target = row.get(names[target_col]) or ""
            if not raw_path:
                continue
            where = f"{path.name} line {line_no}: the target"
            cls = _class_index(raw_target, class_names, where)
            keys = []
            p = Path(raw_path)
            for candidate in [p] if p.is_absolute() else [base / p, root / p]:
                with contextlib.suppress(ValueError):
                    keys.append(Path(os.path.normpath(candidate)).relative_to(root).as_posix())
            for key in keys:
                mapping.setdefault(key, cls)
    return mapping


def _resolve_targets(
    targets: Any, input_dir: Path, class_names: tuple[str, ...] | None
) -> tuple[Any, dict[str, int] | None, Any]:
    """(one class (or region) for all, per-file mapping, JSON description for the config)."""
    if targets is None or (isinstance(targets, str) and targets.strip().lower() == "predicted"):
        return None, None, "predicted"
    from ..dense_targets import RegionSpec

    if isinstance(targets, RegionSpec):  # one class's region, mask=None (the model's own pixels)
        if targets.mask is not None:
            raise bad_value(
                "targets",
                "a region without a mask for an export (each image gets the pixels the model "
                "assigns to the class)",
                targets.mask,
                "Explain images with their own masks through xai.explain instead.",
            )
        cls = targets.class_index
        if not isinstance(cls, (int, np.integer)) or isinstance(cls, bool):
            cls = _class_index(str(cls), class_names, "the region's class")
        return RegionSpec(int(cls)), None, {"region": int(cls)}
    if isinstance(targets, bool):
        raise bad_type("targets", "'predicted', a class index, a class name or a CSV path", targets)
    if isinstance(targets, (int, np.integer)):
        return int(targets), None, int(targets)
    if isinstance(targets, Mapping):
        mapping = {}
        for k, v in targets.items():
            cls = v if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None
            if cls is None:
                cls = _class_index(str(v), class_names, f"targets[{k!r}]")
            mapping[Path(str(k)).as_posix()] = int(cls)
        digest = hashlib.sha256(json.dumps(sorted(mapping.items())).encode()).hexdigest()
        return None, mapping, {"mapping_sha256": digest}
    if isinstance(targets, (str, os.PathLike)):
        text = os.fspath(targets)
        p = Path(text)
        if p.suffix.lower() == ".csv" or p.is_file():
            if not p.is_file():
                raise bad_value("targets", "an existing CSV file", text, "Check the path.")
            mapping = _read_targets_csv(p, input_dir, class_names)
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            return None, mapping, {"csv": str(p.resolve()), "sha256": digest}
        cls = _class_index(text, class_names, "`targets`")
        return cls, None, cls
    raise bad_type(
        "targets", "'predicted', a class index, a class name, a CSV path or a mapping", targets
    )
