"""The audit's flags, one function per family, and the gallery of worst cases."""

from __future__ import annotations

from typing import Any

import numpy as np

from .report import Flag
from .run import AuditRun, LocalisationResult

#: Flag thresholds (stated in every report).
THRESHOLDS: dict[str, float] = {
    # a method fails the cascading-randomisation check when the Spearman rank correlation between
    # its original maps and its maps on the randomised model, averaged over the cascade's stages
    # (top layer randomised, top two, ..., all), exceeds this. The average over the cascade, not
    # the last stage alone: guided backpropagation decorrelates only once the first convolution
    # is randomised too (measured 0.26 there), but stays similar through most of the cascade
    # (0.93, 0.89, 0.78, ...), which is the failure Adebayo et al. 2018 describe
    "sanity_spearman": 0.5,
    # shortcut alarm: the map's maximum misses the object (pointing game with a one-cell
    # tolerance) on more than this fraction of the correctly classified images
    "off_object": 0.4,
    # IoU: a heatmap pixel is "on" at or above this value (heatmaps are in [0, 1])
    "iou_threshold": 0.5,
}


def sanity_flags(run: AuditRun, sanity_res: dict[str, Any]) -> list[Flag]:
    limit = THRESHOLDS["sanity_spearman"]
    flags = []
    for name in run.method_names:
        s = sanity_res["methods"][name]["mean_spearman"]
        flags.append(
            Flag(
                key="sanity_randomisation",
                method=name,
                raised=bool(s > limit),
                value=s,
                threshold=limit,
                message=f"{name} explanations fail the randomisation sanity check"
                if s > limit
                else f"{name} explanations pass the randomisation sanity check",
                rule="Spearman rank correlation between the original maps and the maps of the "
                "cascade-randomised model (top layer, top two, ..., all layers re-initialised), "
                f"averaged over the {len(sanity_res['layers'])} stages, > {limit:g} fails",
            )
        )
    return flags


def deletion_flags(run: AuditRun, faith: dict[str, Any]) -> list[Flag]:
    flags = []
    for name in run.method_names:
        d, r = faith[name]["deletion"]["auc"], faith["random"]["deletion"]["auc"]
        flags.append(
            Flag(
                key="deletion_vs_random",
                method=name,
                raised=bool(d >= r),
                value=d,
                threshold=r,
                message=f"{name}: deletion is no better than random"
                if d >= r
                else f"{name}: deletion beats random",
                rule="deletion AUC >= the random-attribution baseline's deletion AUC is flagged",
            )
        )
    return flags


def shortcut_flags(run: AuditRun, loc: LocalisationResult) -> list[Flag]:
    limit = THRESHOLDS["off_object"]
    flags = []
    for name in run.method_names:
        frac = loc.report["methods"][name]["off_object_correct"]
        raised = bool(frac > limit and run.correct.any())
        flags.append(
            Flag(
                key="shortcut",
                method=name,
                raised=raised,
                value=frac,
                threshold=limit,
                message=f"{name}: attention falls outside the object on {frac:.0%} of correctly "
                "classified images" + (" (possible shortcut)" if raised else ""),
                rule=f"the map's maximum misses the object mask (pointing game, tolerance "
                f"{loc.report['tolerance_px']} px = one feature-map cell) on > "
                f"{limit:.0%} of the correctly classified images",
            )
        )
    return flags


def _gallery(
    run: AuditRun, loc: LocalisationResult | None, gallery_size: int
) -> tuple[list[dict[str, Any]], list[tuple[np.ndarray, np.ndarray]]]:
    """The worst cases of the primary method: off-object correct predictions (with masks, least
    energy inside first) or misclassifications (most confident first)."""
    primary = run.method_names[0]
    x, correct, probs = run.x, run.correct, run.probs
    if loc is not None:
        cand = np.flatnonzero(correct & loc.off_object[primary])
        cand = cand[np.argsort(loc.energy[primary][cand], kind="stable")]
        reason = "correct prediction, attention off the object"
    else:
        cand = np.flatnonzero(~correct)
        cand = cand[np.argsort(-probs[cand].max(axis=1), kind="stable")]
        reason = "misclassified (most confident first)"
    cand = cand[: int(gallery_size)]
    gallery: list[dict[str, Any]] = []
    gallery_images: list[tuple[np.ndarray, np.ndarray]] = []
    if not len(cand):
        return gallery, gallery_images
    from ..viz import to_display

    shown = to_display(x[cand][..., :3] if x.shape[-1] >= 3 else np.repeat(x[cand], 3, -1))
    overlays = run.expl[primary][cand].overlay() if x.shape[-1] in (3, 4) else shown
    for j, i in enumerate(cand):
        gallery.append(
            {
                "index": int(i),
                "name": run.names[i] if run.names is not None else f"image {int(i)}",
                "true": run.class_names[int(run.y[i])],
                "predicted": run.class_names[int(run.preds[i])],
                "probability": float(probs[i, run.preds[i]]),
                "energy_inside": float(loc.energy[primary][i]) if loc is not None else None,
                "reason": reason,
                "method": primary,
            }
        )
        gallery_images.append((np.asarray(shown[j])[..., :3], np.asarray(overlays[j])[..., :3]))
    return gallery, gallery_images
