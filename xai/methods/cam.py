"""The CAM family over one shared pipeline: a method is its channel-weighting rule.

Pipeline (per tapped layer, per batch): the engine returns activations ``A`` and gradients
``G = d score / d A`` (float32, channel axis ``c``); a *weight rule* ``(A, G, c) -> w`` gives
weights
broadcastable to ``A`` (one per channel, or one per element for the element-wise variants); the raw
CAM is ``sum_c(w * A)`` (signed, at the layer's resolution). The display heatmap applies ReLU,
resizes to the input and min-max normalises (``postprocess``).

Rules that need more than ``A`` and ``G`` (Score-CAM and Ablation-CAM run masked forward passes)
take
a keyword-only ``context`` (:class:`CamContext`) and their own parameters; they live in
``cam_perturb.py`` and go through the same pipeline.

Every rule is NaN-free by construction: divisions by a zero (or empty) denominator give 0, so
constant maps, all-negative maps and zero gradients give zero maps, never NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dense_targets import StructuredTarget
from ..engine import Engine
from ..postprocess import Display
from .registry import Method, MethodResult, register

log = logging.getLogger(__name__)

WeightRule = Callable[..., np.ndarray]


def spatial_axes(ndim: int, channel_axis: int) -> tuple[int, ...]:
    """Axes of an ``ndim`` activation that are neither batch (0) nor channels."""
    return tuple(i for i in range(1, ndim) if i != channel_axis)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (or not finite): never NaN or Inf."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    ok = np.isfinite(den) & (den != 0)
    out = np.zeros(num.shape, np.float64)
    np.divide(num, den, out=out, where=ok)
    return out


def gradcam_weights(
    activations: np.ndarray, gradients: np.ndarray, channel_axis: int
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., ICCV 2017): ``w_c = mean over space of dS/dA_c``.

    Args:
        activations: ``A``, float32 ``(B, *spatial, C)`` (channel axis anywhere).
        gradients: ``G = dS/dA``, same shape.
        channel_axis: the channel axis of both.

    Returns:
        float ``(B, 1, ..., C)`` channel weights.
    """
    return gradients.mean(axis=spatial_axes(gradients.ndim, channel_axis), keepdims=True)


def gradcam_plus_plus_weights(
    activations: np.ndarray, gradients: np.ndarray, channel_axis: int
) -> np.ndarray:
    """Grad-CAM++ (Chattopadhyay et al., WACV 2018), closed form with an exponential score.

    With ``Y = exp(S)`` the higher derivatives are powers of the first one, giving (eq. 19)::

        alpha_c(i) = G_c(i)^2 / (2 G_c(i)^2 + sum_j A_c(j) * G_c(i)^3)
        w_c        = sum_i alpha_c(i) * ReLU(G_c(i))

    (the common factor ``exp(S)`` of ``dY/dA`` is dropped: it scales the map, not its shape).
    ``alpha`` is 0 where its denominator is 0.
    """
    sp = spatial_axes(gradients.ndim, channel_axis)
    a = activations.astype(np.float64)
    g = gradients.astype(np.float64)
    g2 = g * g
    denominator = 2.0 * g2 + a.sum(axis=sp, keepdims=True) * g2 * g
    alpha = _safe_divide(g2, denominator)
    return (alpha * np.maximum(g, 0.0)).sum(axis=sp, keepdims=True)


def hirescam_weights(
    activations: np.ndarray, gradients: np.ndarray, channel_axis: int
) -> np.ndarray:
    """HiResCAM (Draelos & Carin, 2020): element-wise weights ``w = G``.

    The CAM is ``sum_c(G * A)``: the gradient multiplies each activation element instead of being
    averaged over space first, so the map is faithful to the model's computation.
    """
    return gradients


def xgradcam_weights(
    activations: np.ndarray, gradients: np.ndarray, channel_axis: int
) -> np.ndarray:
    """XGrad-CAM (Fu et al., BMVC 2020): ``w_c = sum_i A_c(i) G_c(i) / sum_i A_c(i)``.

    The gradients are averaged with the normalised activations as weights (0 where a channel's
    activations sum to 0).
    """
    sp = spatial_axes(gradients.ndim, channel_axis)
    a = activations.astype(np.float64)
    return _safe_divide((a * gradients).sum(axis=sp, keepdims=True), a.sum(axis=sp, keepdims=True))


def layercam_weights(
    activations: np.ndarray, gradients: np.ndarray, channel_axis: int
) -> np.ndarray:
    """LayerCAM (Jiang et al., IEEE TIP 2021): element-wise weights ``w = ReLU(G)``.

    The CAM is ``sum_c(ReLU(G) * A)``: only locations with a positive gradient count, which keeps
    fine detail in shallow layers.
    """
    return np.maximum(gradients, 0.0)


def eigencam_weights(
    activations: np.ndarray, gradients: np.ndarray, channel_axis: int
) -> np.ndarray:
    """Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): projection on the first principal component.

    With ``O`` the activations of one sample as a ``(positions, C)`` matrix and ``O = U S V^T`` its
    singular value decomposition, the map is ``O v_1`` (``v_1`` the first right singular vector),
    i.e. the weights are ``w = v_1``. The gradients are not used: the map is class-agnostic. The
    sign of a singular vector is arbitrary; it is chosen so that the map sums to a value >= 0
    (for non-negative activations ``v_1`` then has non-negative entries).
    """
    a = np.moveaxis(activations.astype(np.float64), channel_axis, -1)
    b, c = a.shape[0], a.shape[-1]
    o = a.reshape(b, -1, c)
    weights = np.zeros((b, c), np.float64)
    ok = np.isfinite(o).all(axis=(1, 2)) & (np.abs(o).sum(axis=(1, 2)) > 0)
    if ok.any():
        v = _first_right_singular_vectors(o[ok])
        sign = np.where(np.einsum("npc,nc->n", o[ok], v) < 0, -1.0, 1.0)
        weights[ok] = v * sign[:, None]
    shape = [1] * activations.ndim
    shape[0], shape[channel_axis] = b, c
    return weights.reshape(shape)


def _first_right_singular_vectors(o: np.ndarray) -> np.ndarray:
    """``v_1`` of each ``(P, C)`` matrix of ``o`` ``(B, P, C)``, from the smaller Gram matrix.

    ``v_1`` is the top eigenvector of ``O^T O`` (``C x C``), or ``O^T u_1`` normalised with ``u_1``
    the top eigenvector of ``O O^T`` (``P x P``) when there are fewer positions than channels
    (e.g. 7x7 x 1280 in MobileNetV2): the same vector, at a fraction of a full SVD's cost.
    """
    p, c = o.shape[1:]
    if p >= c:
        _, vecs = np.linalg.eigh(np.einsum("npc,npd->ncd", o, o))
        return vecs[:, :, -1]
    _, vecs = np.linalg.eigh(np.einsum("npc,nqc->npq", o, o))
    v = np.einsum("npc,np->nc", o, vecs[:, :, -1])
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def reused_targets(targets: Any, step: Any) -> Any:
    """The targets to reuse after a gradient step on the clean inputs: a callable as is, a
    structured target frozen on the step's logits, else the step's resolved classes."""
    if isinstance(targets, StructuredTarget):
        return targets.freeze(step.logits)
    return targets if callable(targets) else step.targets


def weighted_sum(activations: np.ndarray, weights: np.ndarray, channel_axis: int) -> np.ndarray:
    """``sum_c(w * A)``: the raw, signed CAM ``(B, *spatial)``, float32 and finite."""
    cam = (weights * activations).sum(axis=channel_axis, dtype=np.float64)
    return np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


@dataclass(frozen=True)
class CamContext:
    """What a perturbation weight rule needs besides ``A`` and ``G``.

    Attributes:
        engine: the engine (for batched forward passes of masked inputs).
        inputs: the batch, one float array per model input.
        targets: the resolved per-sample classes (int32 ``(B,)``), or the user's callable.
        layer_index: index of the tapped layer in ``engine.tap.layers``.
        scores: the target score of the clean inputs, float32 ``(B,)``.
    """

    engine: Engine
    inputs: list[np.ndarray]
    targets: Any
    layer_index: int
    scores: np.ndarray


def cam_compute(rule: WeightRule, *, needs_context: bool = False) -> Callable[..., MethodResult]:
    """The shared CAM ``compute`` for a weight rule.

    Args:
        rule: ``rule(A, G, channel_axis) -> weights``; with ``needs_context``,
            ``rule(A, G, channel_axis, *, context, **params)``.
        needs_context: pass a :class:`CamContext` and the method's parameters to the rule.
    """

    def compute(
        engine: Engine, inputs: list[np.ndarray], targets: Any, **params: Any
    ) -> MethodResult:
        step = engine.gradients(inputs, targets, wrt="layers")
        _warn_dead_tokens(engine, step.gradients)
        maps = []
        for i, (a, g, axis) in enumerate(zip(step.values, step.gradients, engine.tap.channel_axes)):
            if needs_context:
                context = CamContext(
                    engine=engine,
                    inputs=inputs,
                    targets=reused_targets(targets, step),
                    layer_index=i,
                    scores=step.scores,
                )
                weights = rule(a, g, axis, context=context, **params)
            else:
                weights = rule(a, g, axis)
            maps.append(weighted_sum(a, weights, axis))
        return MethodResult(maps=maps, logits=step.logits, targets=step.targets, scores=step.scores)

    return compute


def _warn_dead_tokens(engine: Engine, gradients: list[np.ndarray]) -> None:
    """Warn when every patch token of a token layer has an exactly zero gradient.

    That is what a class-token ViT gives at its last block's output (or final norm): the head
    reads only the class token from there, so the patch tokens provably do not reach the score.
    """
    for path, grid, g in zip(engine.tap.layers, engine.tap.token_grids, gradients):
        if grid is not None and not np.any(g):
            log.warning(
                "xai: the class score's gradient is exactly zero at every patch token of layer "
                "%r: after this layer the head reads only the prefix (class) token, so the map is "
                "empty. Use layer=None, which picks the tokens the last attention layer attends "
                "over, or an earlier block.",
                path,
            )


CAM_DISPLAY = Display(reduce="none", rectify="relu")


def register_cam(
    name: str,
    rule: WeightRule,
    *,
    reference: str,
    summary: str,
    defaults: Mapping[str, Any] | None = None,
    needs_context: bool = False,
    knobs: frozenset[str] = frozenset(),
) -> Method:
    """Register a CAM variant: its weight rule over the shared pipeline."""
    return register(
        Method(
            name=name,
            compute=cam_compute(rule, needs_context=needs_context),
            space="layer",
            stochastic=False,
            defaults=dict(defaults or {}),
            display=CAM_DISPLAY,
            reference=reference,
            summary=summary,
            family="cam",
            knobs=knobs,
        )
    )


register_cam(
    "gradcam",
    gradcam_weights,
    reference="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via "
    "Gradient-based Localization, ICCV 2017",
    summary="channel weights = spatial mean of the class-logit gradient",
)
register_cam(
    "gradcam_plus_plus",
    gradcam_plus_plus_weights,
    reference="Chattopadhyay et al., Grad-CAM++: Generalized Gradient-Based Visual Explanations "
    "for Deep Convolutional Networks, WACV 2018",
    summary="channel weights = alpha-weighted sum of positive gradients (closed form)",
)
register_cam(
    "hirescam",
    hirescam_weights,
    reference="Draelos & Carin, Use HiResCAM instead of Grad-CAM for faithful explanations of "
    "convolutional neural networks, arXiv:2011.08891, 2020",
    summary="element-wise gradient x activation, summed over channels",
)
register_cam(
    "xgradcam",
    xgradcam_weights,
    reference="Fu et al., Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation "
    "of CNNs, BMVC 2020",
    summary="channel weights = gradients averaged with activation-normalised weights",
)
register_cam(
    "layercam",
    layercam_weights,
    reference="Jiang et al., LayerCAM: Exploring Hierarchical Class Activation Maps for "
    "Localization, IEEE TIP 2021",
    summary="element-wise ReLU(gradient) x activation, summed over channels",
)
register_cam(
    "eigencam",
    eigencam_weights,
    reference="Muhammad & Yeasin, Eigen-CAM: Class Activation Map using Principal Components, "
    "IJCNN 2020",
    summary="projection of the activations on their first principal component (class-agnostic)",
)
