"""Localisation of segmentation explanations: the pointing game per region.

For a segmentation model and images with several labelled objects, each object ``m`` (of class
``c_m``) is explained with ``xai.targets.region(c_m)`` (the pixels the model assigns to the class,
or the object's own mask with ``region_mask="true"``) and the map is scored against the object's
mask and against the other objects' masks: the pointing game (a maximal heatmap pixel inside the
mask, :func:`xai.audit.localisation.pointing_game`), the same on any *other* object (the map
points at the wrong object), and the energy inside the object's mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import bad_value
from .localisation import energy_inside, pointing_game


def region_localisation(
    model: Any,
    images: Any,
    object_masks: Any,
    object_classes: Any,
    *,
    method: str = "gradcam",
    region_mask: str = "predicted",
    tolerance: int = 0,
    **params: Any,
) -> dict[str, Any]:
    """Pointing game per region of a segmentation model.

    Args:
        model: a model with a per-pixel output ``(N, H', W', K)``.
        images: ``(N, H, W, C)`` images as the model takes them.
        object_masks: bool ``(N, M, H, W)``, the pixels of each of the ``M`` objects per image.
        object_classes: int ``(N, M)``, each object's class (an index of the model's output).
        method: the registered method (``layer=``, ``seed=`` and the method's own parameters go
            in ``params``).
        region_mask: ``"predicted"`` (the region is the pixels the model assigns to the class)
            or ``"true"`` (the object's own mask).
        tolerance: pointing-game tolerance in pixels.

    Returns:
        ``{"maps", "pointing_game", "on_other_object", "on_object_not_other",
        "energy_inside", "energy_inside_others", "per_object": {...arrays (N, M)...}}``.
    """
    import xai

    masks = np.asarray(object_masks).astype(bool)
    classes = np.asarray(object_classes)
    x = np.asarray(images)
    if masks.ndim != 4 or masks.shape[0] != len(x) or masks.shape[2:] != x.shape[1:3]:
        raise bad_value(
            "object_masks", f"bool (N, M, H, W) with N={len(x)} and (H, W)={x.shape[1:3]}", masks
        )
    if classes.shape != masks.shape[:2] or not np.issubdtype(classes.dtype, np.integer):
        raise bad_value("object_classes", f"ints shaped {masks.shape[:2]} (N, M)", classes)
    if region_mask not in ("predicted", "true"):
        raise bad_value("region_mask", "'predicted' or 'true'", region_mask)
    n, m = classes.shape
    on, other, energy, energy_other = (np.zeros((n, m), dt) for dt in (bool, bool, float, float))
    for k in range(m):
        mask = masks[:, k] if region_mask == "true" else None
        target = xai.targets.region(classes[:, k].tolist(), mask)
        heat = np.asarray(xai.explain(model, x, method, targets=target, **params).heatmap)
        others = np.asarray(masks[:, [j for j in range(m) if j != k]].any(axis=1))
        on[:, k] = pointing_game(heat, masks[:, k], tolerance=tolerance)
        other[:, k] = pointing_game(heat, others, tolerance=tolerance)
        energy[:, k] = energy_inside(heat, masks[:, k])
        energy_other[:, k] = energy_inside(heat, others)
    return {
        "method": method,
        "region_mask": region_mask,
        "tolerance_px": int(tolerance),
        "maps": int(n * m),
        "pointing_game": float(on.mean()),
        "on_other_object": float(other.mean()),
        "on_object_not_other": float((on & ~other).mean()),
        "energy_inside": float(energy.mean()),
        "energy_inside_others": float(energy_other.mean()),
        "per_object": {
            "pointing_game": on,
            "on_other_object": other,
            "energy_inside": energy,
            "energy_inside_others": energy_other,
        },
    }
