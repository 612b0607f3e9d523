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
    # "deletion is no better than random": a paired comparison over the images. d_i = the
    # method's deletion AUC - the random baseline's, on image i. Raised when the lower one-sided
    # confidence bound of mean(d) is above -margin, i.e. we are confident the method improves on
    # random ranking by less than the margin; never raised below the minimum number of images
    # (an inconclusive result). On the shipped clean model, 32 images: Grad-CAM d = -0.02..-0.03
    # (standard error 0.057), uninformative maps d = 0.00 (standard error 0.008); the false-alarm
    # and hit rates over 20 seeds are in bench/bench_audit_flags.py.
    "deletion_margin": 0.03,
    "deletion_confidence": 0.95,
    "deletion_min_images": 10,
}


def _t_quantile(p: float, dof: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal; < 3e-3 off, dof >= 5)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(p)
    return float(
        z
        + (z**3 + z) / (4 * dof)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)
    )


def paired_difference(method: Any, baseline: Any, confidence: float) -> tuple[float, float, float]:
    """(mean, lower, upper) of ``method - baseline`` over images: the mean difference and its
    one-sided bounds at ``confidence`` each (Student's t; independent of the images' order)."""
    d = np.asarray(method, np.float64) - np.asarray(baseline, np.float64)
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return mean, -np.inf, np.inf
    half = _t_quantile(confidence, n - 1) * float(d.std(ddof=1)) / np.sqrt(n)
    return mean, mean - half, mean + half


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
    """Per method: is its deletion AUC, image by image, no better than random pixel ranking?"""
    margin = THRESHOLDS["deletion_margin"]
    level = THRESHOLDS["deletion_confidence"]
    minimum = int(THRESHOLDS["deletion_min_images"])
    baseline = faith["random"]["deletion"]["auc_per_image"]
    flags = []
    for name in run.method_names:
        mean, lower, upper = paired_difference(
            faith[name]["deletion"]["auc_per_image"], baseline, level
        )
        n = len(baseline)
        raised = bool(n >= minimum and lower > -margin)
        interval = f"mean {mean:+.3f}, one-sided {level:.0%} bounds {lower:+.3f} / {upper:+.3f}"
        if raised:
            message = f"{name}: deletion is no better than random ({interval})"
        elif n < minimum:
            message = (
                f"{name}: deletion vs random not tested: {n} images, at least {minimum} needed"
            )
        elif upper < 0:
            message = f"{name}: deletion beats random ({interval})"
        else:
            message = f"{name}: deletion vs random inconclusive on {n} images ({interval})"
        flags.append(
            Flag(
                key="deletion_vs_random",
                method=name,
                raised=raised,
                value=lower,
                threshold=-margin,
                message=message,
                rule="paired over the images: d = the method's deletion AUC - the random "
                "baseline's on the same image; flagged when the lower one-sided "
                f"{level:.0%} confidence bound of mean(d) (Student's t) is above -{margin:g}, "
                f"i.e. the method improves on random ranking by less than {margin:g} AUC; "
                f"needs at least {minimum} images",
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
