"""``xai.audit()``: is the model right for the right reasons?

One call runs, on the same images: accuracy and a confusion matrix; faithfulness (RISE deletion
and insertion against a random-attribution baseline); localisation against object masks (pointing
game with a one-feature-map-cell tolerance, energy inside the mask, IoU of the thresholded map, per
class); and the sanity checks of Adebayo et al. 2018 (cascading randomisation of a clone's weights
from the logits down, the random-logit test). It returns an :class:`AuditReport` whose flags state
their thresholds; ``report.save(dir)`` writes a self-contained ``report.html`` and ``report.json``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from .. import methods as methods_mod
from .. import targets as targets_mod
from .._progress import progress_bar as tqdm
from ..errors import XaiValueError, bad_type, bad_value
from ..explainer import Explainer
from ..methods.registry import Method
from . import faithfulness, sanity
from .flags import THRESHOLDS, _gallery, deletion_flags, sanity_flags, shortcut_flags
from .localisation import energy_inside, iou, pointing_game
from .report import AuditReport
from .run import AuditRun, LocalisationResult, _explain_all

log = logging.getLogger(__name__)


def _check_inputs(
    images: Any, labels: Any, masks: Any, class_names: Any, names: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str] | None]:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise bad_value("images", "a batch of images (N, H, W, C) with C in 1, 3, 4", x)
    y = np.asarray(labels)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise bad_value("labels", f"one int class index per image, shape ({len(x)},)", y)
    m = None
    if masks is not None:
        m = np.asarray(masks)
        if m.shape != x.shape[:3]:
            raise bad_value("masks", f"one boolean mask per image, shape {x.shape[:3]}", m)
        m = m.astype(bool)
    if names is not None:
        names = [str(s) for s in names]
        if len(names) != len(x):
            raise bad_value("names", f"one name per image ({len(x)})", names)
    if class_names is not None and (
        isinstance(class_names, str) or not isinstance(class_names, Sequence)
    ):
        raise bad_type("class_names", "a sequence of str", class_names)
    return x, y, m, names


def audit(
    model: keras.Model,
    images: Any,
    labels: Any,
    *,
    masks: Any = None,
    methods: Sequence[str | Method] = ("gradcam", "smoothgrad"),
    class_names: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    layer: str | Sequence[str] | None = None,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    num_steps: int = 16,
    deletion_baseline: str = "zero",
    sanity_images: int = 32,
    sanity_stages: int | None = None,
    tolerance: int | None = None,
    gallery_size: int = 8,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool | None = None,
) -> AuditReport:
    """Audit ``model`` on labelled ``images``: accuracy, faithfulness, localisation, sanity.

    Args:
        model: a Functional or Sequential Keras classifier (never modified; randomisation runs on
            a clone).
        images: ``(N, H, W, C)`` images as the model takes them (uint8 or float).
        labels: ``(N,)`` int true classes.
        masks: optional ``(N, H, W)`` boolean object masks (enables localisation and the shortcut
            alarm).
        methods: registered method names or :class:`~xai.methods.registry.Method` objects. The
            first one is the *primary* method (shortcut alarm, gallery).
        class_names: names of the classes (index = label), shown in the report.
        names: one name per image (file names), shown in the gallery.
        layer: CAM layer (None: auto-selected, recorded in the report).
        method_params: extra parameters per method name, e.g. ``{"smoothgrad": {"num_samples":
        10}}``.
        num_steps: deletion/insertion steps K.
        deletion_baseline: ``"zero"`` or ``"mean"`` (the value deleted pixels take).
        sanity_images: images used by the sanity checks (a seeded subset; all when larger than N).
        sanity_stages: randomise at most this many weighted layers from the top (None: all).
        tolerance: pointing-game tolerance in pixels; None = one feature-map cell of the CAM layer
            (input size / map size), since a CAM peaks on a cell, not on a pixel.
        gallery_size: worst cases shown in the gallery.
        batch_size: images per compiled step.
        seed: seed of everything random (stochastic methods, baselines, subsets, re-initialisation).
        progress: show a tqdm bar over the stages (None: tqdm's default, off when not a terminal).

    Returns:
        An :class:`AuditReport`.
    """
    start = time.perf_counter()
    if len(getattr(model, "outputs", [None])[0].shape) > 2:  # a segmentation map, per-anchor logits
        raise XaiValueError(
            "`model` must be a classifier (one vector of class scores per image) for the audit. "
            f"Received: a model with a dense output of shape {tuple(model.outputs[0].shape)}. "
            "For a segmentation model, score its region maps with "
            "xai.audit.region_localisation(model, images, object_masks, object_classes)."
        )
    x, y, masks_arr, names = _check_inputs(images, labels, masks, class_names, names)
    if isinstance(methods, (str, Method)):
        methods = (methods,)
    method_objs = [methods_mod.get(m) for m in methods]
    if not method_objs:
        raise bad_value("methods", "at least one method", methods)
    rng = np.random.default_rng(seed)
    explainer = Explainer(model, layer=layer, class_names=class_names)
    sanity_idx = np.sort(rng.choice(len(x), size=min(len(x), int(sanity_images)), replace=False))
    n_stages_est = len(sanity.weighted_layers(model))
    if sanity_stages is not None:
        n_stages_est = min(n_stages_est, max(1, int(sanity_stages)))
    total = 2 * len(method_objs) + 1 + (1 if masks_arr is not None else 0) + n_stages_est + 2
    bar = tqdm(
        total=total,
        desc="xai audit",
        unit="stage",
        disable=None if progress is None else not progress,
    )
    run = _explain_all(
        explainer,
        x,
        y,
        masks_arr,
        names,
        class_names,
        method_objs,
        {k: dict(v) for k, v in (method_params or {}).items()},
        seed,
        batch_size,
        bar,
    )
    faith = check_faithfulness(run, num_steps, deletion_baseline, bar)
    loc = check_localisation(run, tolerance, bar) if masks_arr is not None else None
    sanity_res = check_sanity(run, model, sanity_idx, sanity_stages, layer, bar)
    flags = [
        *sanity_flags(run, sanity_res),
        *deletion_flags(run, faith),
        *(shortcut_flags(run, loc) if loc is not None else []),
    ]
    bar.set_postfix_str("gallery", refresh=False)
    gallery, gallery_images = _gallery(run, loc, gallery_size)
    bar.update()
    bar.close()
    first = run.first
    return AuditReport(
        num_images=len(x),
        class_names=tuple(run.class_names),
        methods=tuple(run.method_names),
        primary=run.method_names[0],
        layer=list(first.layer or ()),
        accuracy=float(run.correct.mean()),
        confusion=run.confusion.tolist(),
        faithfulness={
            "num_steps": int(num_steps),
            "deletion_baseline": deletion_baseline,
            "methods": faith,
        },
        localisation=loc.report if loc is not None else None,
        sanity=sanity_res,
        flags=tuple(flags),
        thresholds=dict(THRESHOLDS),
        gallery=gallery,
        gallery_images=gallery_images,
        params={
            "seed": int(seed),
            "batch_size": int(batch_size),
            "method_params": {name: dict(run.expl[name].params) for name in run.method_names},
            "sanity_images": int(len(sanity_idx)),
            "sanity_stages": sanity_stages,
        },
        seconds=round(time.perf_counter() - start, 2),
    )


run_audit = audit  # the plain name of this function (``xai.audit(...)`` calls it too)

# ------------------------------------------------------------------------------------ checks


def check_faithfulness(
    run: AuditRun, num_steps: int, deletion_baseline: Any, bar: Any
) -> dict[str, Any]:
    """Deletion and insertion AUCs per method and for a random-attribution baseline."""
    engine = run.explainer.engine(False)
    tap = engine.tap
    _, ready = run.explainer.prepare(run.x)
    model_x = ready[0]

    def probability(batch: np.ndarray) -> np.ndarray:
        out = [engine.forward([batch[s : s + 256]]) for s in range(0, len(batch), 256)]
        return targets_mod.class_probabilities(np.concatenate(out), tap.head, tap.num_logits)

    chunk = max(1, 256 // (num_steps + 1))
    heat = {name: e.heatmap for name, e in run.expl.items()}
    random_heat = (
        np.random.default_rng([run.seed, 1]).random(run.first.heatmap.shape).astype(np.float32)
    )
    faith: dict[str, Any] = {}
    for name, h in [*heat.items(), ("random", random_heat)]:
        run.stage(f"deletion/insertion {name}")
        res = {}
        for mode in ("deletion", "insertion"):
            c = faithfulness.curves(
                probability,
                model_x,
                h,
                run.preds,
                mode=mode,
                num_steps=num_steps,
                baseline=deletion_baseline,
                chunk_size=chunk,
                seed=run.seed,
            )
            a = faithfulness.auc(c)
            res[mode] = {
                "auc": float(a.mean()),
                "auc_std": float(a.std()),
                "curve": c.mean(axis=0).tolist(),
                "auc_per_image": [float(v) for v in a],  # paired with the random row's
            }
        faith[name] = res
        bar.update()
    return faith


def check_localisation(run: AuditRun, tolerance: int | None, bar: Any) -> LocalisationResult:
    """Pointing game, energy inside the mask and IoU per method (and per class)."""
    assert run.masks is not None  # noqa: S101 - only called with masks
    run.stage("localisation")
    if tolerance is None:  # one feature-map cell of the CAM layer
        tolerance = 0
        for e in run.expl.values():
            if e.layer_maps:
                lm = next(iter(e.layer_maps.values()))
                tolerance = int(np.ceil(run.x.shape[1] / lm.shape[1]))
                break
    report: dict[str, Any] = {
        "tolerance_px": int(tolerance),
        "iou_threshold": THRESHOLDS["iou_threshold"],
        "methods": {},
    }
    off_object, energies = {}, {}
    correct = run.correct
    for name, e in run.expl.items():
        h = e.heatmap
        hits = pointing_game(h, run.masks, tolerance=int(tolerance))
        en = energy_inside(h, run.masks)
        overlap = iou(h, run.masks, threshold=THRESHOLDS["iou_threshold"])
        off_object[name], energies[name] = ~hits, en
        per_class = []
        for c in range(run.num_classes):
            sel = run.y == c
            per_class.append(
                {
                    "class": run.class_names[c],
                    "count": int(sel.sum()),
                    "pointing_game": float(hits[sel].mean()) if sel.any() else None,
                    "energy_inside": float(en[sel].mean()) if sel.any() else None,
                    "iou": float(overlap[sel].mean()) if sel.any() else None,
                }
            )
        report["methods"][name] = {
            "pointing_game": float(hits.mean()),
            "energy_inside": float(en.mean()),
            "iou": float(overlap.mean()),
            "off_object_correct": float((~hits)[correct].mean()) if correct.any() else 0.0,
            "num_correct": int(correct.sum()),
            "per_class": per_class,
        }
    bar.update()
    return LocalisationResult(report, off_object, energies)


def check_sanity(
    run: AuditRun,
    model: keras.Model,
    sanity_idx: np.ndarray,
    sanity_stages: int | None,
    layer: Any,
    bar: Any,
) -> dict[str, Any]:
    """Cascading randomisation on a clone, then the random-logit test (Adebayo et al. 2018)."""
    xs = run.x[sanity_idx]
    ts = run.preds[sanity_idx].astype(np.int32)
    originals = {m.name: run.expl[m.name].heatmap[sanity_idx] for m in run.methods}
    cache: dict[Any, Explainer] = {}

    def explain_clone(clone: keras.Model) -> dict[str, np.ndarray]:
        maps = {}
        for m in run.methods:  # each method on the layers it explained (CAM tokens, attention)
            recorded = run.expl[m.name].layer
            key = tuple(recorded) if recorded else None
            if key not in cache:
                cache[key] = Explainer(clone, layer=list(key) if key else layer)
            maps[m.name] = run.heatmaps(cache[key], xs, m, ts)
        return maps

    def on_stage(layer_name: str) -> None:
        run.stage(f"randomised {layer_name}")
        bar.update()

    stage_names, randomised = sanity.cascading_randomisation(
        model, explain_clone, max_stages=sanity_stages, seed=run.seed, on_stage=on_stage
    )
    run.stage("random logit")
    k = run.num_classes
    shift = np.random.default_rng([run.seed, 2]).integers(1, k, size=len(ts))
    other = ((ts + shift) % k).astype(np.int32)
    result: dict[str, Any] = {
        "layers": stage_names,
        "num_images": int(len(sanity_idx)),
        "methods": {},
    }
    for m in run.methods:
        cmp = sanity.compare(originals[m.name], randomised[m.name])
        rl = run.heatmaps(run.explainer, xs, m, other)
        result["methods"][m.name] = {
            "spearman": cmp["spearman"],
            "ssim": cmp["ssim"],
            "mean_spearman": float(np.mean(cmp["spearman"])),
            "final_spearman": cmp["spearman"][-1],
            "final_ssim": cmp["ssim"][-1],
            "random_logit_spearman": float(np.mean(sanity.spearman(originals[m.name], rl))),
            "random_logit_ssim": float(np.mean(sanity.ssim(originals[m.name], rl))),
        }
    bar.update()
    return result


__all__ = [
    "THRESHOLDS",
    "AuditRun",
    "LocalisationResult",
    "audit",
    "check_faithfulness",
    "check_localisation",
    "check_sanity",
    "deletion_flags",
    "run_audit",
    "sanity_flags",
    "shortcut_flags",
]
