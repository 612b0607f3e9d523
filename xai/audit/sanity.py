"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
2018).

* **Cascading model-parameter randomisation**: the layers with weights are re-initialised one at a
  time from the logits down (on a *clone* of the model, never the user's weights), and after each
  stage the map of every image is compared with its original map. A method that explains the model
  must change; one that stays similar (guided backpropagation, an edge detector) does not depend
  on what the model learnt.
* **Random-logit test**: the map of the predicted class against the map of a random other class
  of the same image; a class-sensitive method gives dissimilar maps.

Similarities are the Spearman rank correlation of the heatmaps (the paper's "absolute value" form:
heatmaps are rectified) and the structural similarity SSIM (Wang et al. 2004, Gaussian window
sigma 1.5, data range 1). Both are pure numpy/OpenCV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import keras
import numpy as np

from ..errors import bad_value
from ..methods.gradient import GRADIENT_DISPLAY
from ..methods.registry import Method, MethodResult

# --------------------------------------------------------------------------------- similarities


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks (1-based) of a 1-D array; ties get the mean of their ranks (scipy's "average")."""
    x = np.asarray(values).ravel()
    sorter = np.argsort(x, kind="mergesort")
    inv = np.empty(len(x), np.intp)
    inv[sorter] = np.arange(len(x))
    s = x[sorter]
    obs = np.r_[True, s[1:] != s[:-1]]
    dense = np.cumsum(obs)[inv]
    count = np.r_[np.nonzero(obs)[0], len(obs)]
    return 0.5 * (count[dense] + count[dense - 1] + 1)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample Spearman rank correlation of two batches of maps ``(N, ...)`` -> ``(N,)``.

    A constant map shares no ranking with anything: its correlation is 0 (never NaN).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise bad_value("b", f"maps of the same shape as `a` {a.shape}, with a batch axis", b)
    return np.array([_pearson(rankdata(x), rankdata(y)) for x, y in zip(a, b)], dtype=np.float32)


def ssim(
    a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0, sigma: float = 1.5
) -> np.ndarray:
    """Per-sample mean structural similarity of two batches of 2-D maps ``(N, H, W)`` -> ``(N,)``.

    Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
    similarity", IEEE TIP 2004: local means, variances and covariance under a Gaussian window
    (``sigma`` 1.5, 11x11), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = data_range``.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise bad_value("b", f"maps (N, H, W) of the same shape as `a` {a.shape}", b)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), sigma, borderType=cv2.BORDER_REFLECT)

    out = np.empty(len(a), np.float32)
    for i, (x, y) in enumerate(zip(a, b)):
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        out[i] = s.mean()
    return out


# --------------------------------------------------------------------------------- oracle


def _edge_compute(engine: Any, inputs: list[np.ndarray], targets: Any) -> MethodResult:
    """Sobel gradient magnitude of the input image: ignores the model's weights entirely."""
    logits = engine.forward(inputs)
    z = logits.reshape(len(logits), -1)
    t = np.asarray(targets, np.int32) if not callable(targets) else np.full(len(z), -1, np.int32)
    t = np.where(t < 0, z.argmax(axis=1), t).astype(np.int32)
    maps = []
    for x in inputs:
        x = np.asarray(x, np.float32)
        edges = np.empty_like(x)
        for i, img in enumerate(x):
            gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
            edges[i] = np.sqrt(gx * gx + gy * gy).reshape(img.shape)
        maps.append(edges)
    return MethodResult(
        maps=maps, logits=logits, targets=t, scores=z[np.arange(len(z)), t].astype(np.float32)
    )


#: An "explainer" that ignores the model (Sobel edges of the input): the oracle that must fail
#: the randomisation test. Pass it to ``explain(..., method=EDGE_DETECTOR)`` or ``audit``.
EDGE_DETECTOR = Method(
    name="edge_detector",
    compute=_edge_compute,
    space="input",
    stochastic=False,
    defaults={},
    display=GRADIENT_DISPLAY,
    reference=(
        "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018 (edge-detector baseline)"
    ),
    summary="Sobel gradient magnitude of the input (ignores the model; sanity-check oracle)",
    family="other",
)


# --------------------------------------------------------------------------------- randomisation


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Leaf layers that own weights, in graph order (nested models flattened)."""
    out: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(weighted_layers(layer))
        elif layer.weights:
            out.append(layer)
    return out


def _fresh_value(layer: keras.layers.Layer, variable: Any, rng: np.random.Generator) -> np.ndarray:
    """A re-initialised value for one variable: the layer's own initializer when it has one."""
    shape = tuple(variable.shape)
    name = variable.name.split("/")[-1].split(":")[0]
    init = getattr(layer, f"{name}_initializer", None)
    if init is None and name in ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings"):
        init = getattr(layer, "kernel_initializer", None)
    if init is not None:
        try:
            config = keras.initializers.serialize(init)
            if isinstance(config, dict) and "config" in config and "seed" in config["config"]:
                config["config"]["seed"] = int(rng.integers(2**31 - 1))
            fresh = keras.initializers.deserialize(config)
            value = np.asarray(keras.ops.convert_to_numpy(fresh(shape, dtype="float32")))
            # A zero/one initializer (biases, BN statistics) would leave nothing random: randomise
            # the kernels; keep the others at their initial values, as a freshly built layer.
            return value.astype(variable.dtype)
        except Exception:  # unusual initializer: fall back to Glorot below
            pass
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[:-1]))
        fan_out = int(shape[-1]) * (int(np.prod(shape[:-2])) if len(shape) > 2 else 1)
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(variable.dtype)
    return np.asarray(variable.numpy()).copy()


def clone_with_weights(model: keras.Model) -> keras.Model:
    """A functional copy of ``model`` with copies of its weights (the user's model is untouched)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def cascading_randomisation(
    model: keras.Model,
    explain_fn: Callable[[keras.Model], dict[str, np.ndarray]],
    *,
    max_stages: int | None = None,
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    """Re-initialise the weighted layers of a clone from the top down, one map set per stage.

    Args:
        model: the user's model (only read: weights are copied to a clone).
        explain_fn: ``f(clone) -> {method: heatmaps (N, H, W)}``; called once per stage on the
            same clone object (its variables change between calls, so compiled steps are reused).
        max_stages: randomise at most this many layers (the top ones); None for all.
        seed: seed of the re-initialisation.
        on_stage: called with each stage's layer name (progress).

    Returns:
        ``(stage_names, {method: [heatmaps after stage 1, ...]})``; the last stage is the most
        randomised model.
    """
    rng = np.random.default_rng(seed)
    clone = clone_with_weights(model)
    layers = list(reversed(weighted_layers(clone)))
    if max_stages is not None:
        layers = layers[: max(1, int(max_stages))]
    names: list[str] = []
    maps: dict[str, list[np.ndarray]] = {}
    for layer in layers:
        for variable in layer.weights:
            variable.assign(_fresh_value(layer, variable, rng))
        names.append(layer.name)
        for method, heat in explain_fn(clone).items():
            maps.setdefault(method, []).append(heat)
        if on_stage is not None:
            on_stage(layer.name)
    return names, maps


def compare(original: np.ndarray, others: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """Mean Spearman and SSIM of each map set in ``others`` against ``original``."""
    return {
        "spearman": [float(np.mean(spearman(original, o))) for o in others],
        "ssim": [float(np.mean(ssim(original, o))) for o in others],
    }


__all__ = [
    "EDGE_DETECTOR",
    "cascading_randomisation",
    "clone_with_weights",
    "compare",
    "rankdata",
    "spearman",
    "ssim",
    "weighted_layers",
]
