"""The Vision Transformer part of ``xai demo``: the shipped ViT beside the CNN, same images.

Explains the sample with the three ViT methods (Grad-CAM on tokens, attention rollout, generic
attention), writes their overlays and a grid figure under ``out_dir/vit/`` and returns the
manifest section (pointing game with the audit's one-cell tolerance, energy inside the object).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import io, viz
from .audit.localisation import energy_inside, pointing_game

VIT_MODEL = "shapes_vit.keras"
VIT_METHODS = {
    "gradcam": "Grad-CAM (tokens)",
    "attention_rollout": "Attention rollout",
    "generic_attention": "Generic attention",
}


def vit_section(out: Path, sample: Any, model_path: Path, grid_rows: int) -> dict[str, Any]:
    """Explain ``sample`` with the shipped ViT; returns the manifest section (with its files)."""
    from .explainer import Explainer
    from .models_io import load_model

    model = load_model(model_path)
    explainer = Explainer(model, class_names=sample.class_names)
    results = {m: explainer.explain(sample.images, m) for m in VIT_METHODS}
    first = results["gradcam"]
    cell = int(np.ceil(sample.images.shape[1] / first.raw[0].shape[1]))
    written: list[Path] = []
    overlays = {m: e.overlay() for m, e in results.items()}
    for i, name in enumerate(sample.names):
        stem = Path(name).with_suffix("")
        if stem.parts[0] == "images":
            stem = Path(*stem.parts[1:])
        for m, over in overlays.items():
            written.append(io.write_png(out / "vit" / "overlays" / f"{stem}_{m}.png", over[i]))
    n = min(grid_rows, len(sample.names))
    figure = viz.figure_grid(
        sample.images[:n],
        {title: overlays[m][:n] for m, title in VIT_METHODS.items()},
        row_labels=[first.label(i) for i in range(n)],
        cell_size=2.0,
    )
    from .demo import _figure_png

    written.append(io.atomic_write_bytes(out / "vit" / "grid.png", _figure_png(figure)))
    return {
        "model": str(model_path),
        "accuracy": float((first.predictions == sample.labels).mean()),
        "layers": {m: list(e.layer or ()) for m, e in results.items()},
        "pointing_game": {
            m: float(pointing_game(e.heatmap_for(0), sample.masks, tolerance=cell).mean())
            for m, e in results.items()
        },
        "pointing_game_tolerance_px": cell,
        "energy_inside_object": {
            m: float(energy_inside(e.heatmap_for(0), sample.masks).mean())
            for m, e in results.items()
        },
        "files": [str(p.relative_to(out)) for p in written],
    }
