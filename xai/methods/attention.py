"""Attention methods for Vision Transformers: attention rollout and generic attention.

Both read the attention probabilities ``A_l`` of every ``MultiHeadAttention`` in the model
(``(B, heads, T, T)``, captured by the tap's ``":attention"`` ports without changing any layer)
and propagate token-to-token mixing through the blocks:

* **attention rollout** (Abnar & Zuidema, ACL 2020): ``M_l = rownorm(mean_h A_l + I)`` (the
  identity accounts for the residual connection), class-agnostic;
* **generic attention** (Chefer, Gur & Wolf, ICCV 2021, "Generic Attention-model
  Explainability"): ``M_l = I + mean_h relu(dS/dA_l * A_l)``, class-specific (``S`` the class
  logit), i.e. the relevance update ``R <- R + Abar_l R`` from ``R = I``.

With ``R = M_L ... M_1`` (first block applied first), the map is the class token's row of ``R``
over the patch tokens, ``R[0, prefix:]``; a model without a class token (its head reads every
patch) gets the mean of the patch tokens' rows. Only that row is needed, so it is propagated as
a row vector from the last block down (``O(L T^2)`` per image instead of ``O(L T^3)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import ModelStructureError, XaiValueError
from ..postprocess import Display
from ..tokens import TokenGrid
from .registry import Method, MethodResult, register

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attention: np.ndarray, head_fusion: str = "mean") -> np.ndarray:
    """``(B, heads, T, T)`` -> ``(B, T, T)`` by the mean (or max/min) over heads."""
    if head_fusion == "mean":
        return attention.mean(axis=1)
    if head_fusion == "max":
        return attention.max(axis=1)
    if head_fusion == "min":
        return attention.min(axis=1)
    raise XaiValueError(
        f"`head_fusion` must be one of {HEAD_FUSIONS}. Received: head_fusion={head_fusion!r}."
    )


def rollout_mixing(attention: np.ndarray, head_fusion: str = "mean") -> np.ndarray:
    """Abnar & Zuidema's per-block mixing ``rownorm(fused A + I)``, ``(B, T, T)``."""
    a = fuse_heads(attention.astype(np.float64), head_fusion)
    a = a + np.eye(a.shape[-1])[None]
    sums = a.sum(axis=-1, keepdims=True)
    return np.divide(a, sums, out=np.zeros_like(a), where=sums > 0)


def relevance_mixing(attention: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Chefer et al.'s per-block update ``I + mean_h relu(grad * A)``, ``(B, T, T)``."""
    abar = np.maximum(gradient.astype(np.float64) * attention, 0.0).mean(axis=1)
    return abar + np.eye(abar.shape[-1])[None]


def propagate(mixing: Sequence[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """``rows @ M_L @ ... @ M_1``: rows of ``R = M_L ... M_1`` (``mixing`` in block order).

    Args:
        mixing: one ``(B, T, T)`` matrix per block, first block first.
        rows: ``(B, r, T)`` starting rows (the identity gives the whole of ``R``).

    Returns:
        ``(B, r, T)``.
    """
    out = rows.astype(np.float64)
    for m in reversed(mixing):
        out = out @ m
    return out


def class_rows(grid: TokenGrid, batch: int) -> np.ndarray:
    """The starting row: the class token (``prefix >= 1``) or the mean of the patch tokens."""
    t = grid.num_tokens
    row = np.zeros((batch, 1, t))
    if grid.prefix:
        row[:, 0, 0] = 1.0
    else:
        row[:, 0, :] = 1.0 / t
    return row


def token_map(relevance_row: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """``(B, 1, T)`` -> ``(B, h, w)`` float32: the patch columns on their grid."""
    patches = relevance_row[:, 0, grid.prefix :]
    return patches.reshape(-1, *grid.grid).astype(np.float32)


def _grid(engine: Engine) -> TokenGrid:
    grids = engine.tap.token_grids
    if not grids or any(g is None for g in grids):
        raise ModelStructureError(
            "Attention methods need the attention layers' tokens on the image's patch grid, but "
            f"the tokens of {list(engine.tap.layers)} could not be laid out on it. Pass "
            "token_grid=(rows, columns) (see xai.tokens)."
        )
    first = grids[0]
    assert first is not None  # noqa: S101 - checked above
    if any(g != first for g in grids):
        raise ModelStructureError(
            "Attention rollout needs every attention layer over the same tokens; the tapped "
            f"layers have token grids {[g.to_dict() for g in grids if g]}. Pass layer= with the "
            "attention layers of one stage."
        )
    return first


def _rollout(
    engine: Engine, inputs: list[np.ndarray], targets: Any, *, head_fusion: str
) -> MethodResult:
    if head_fusion not in HEAD_FUSIONS:
        fuse_heads(np.zeros((1, 1, 1, 1)), head_fusion)  # raises the clear error
    step = engine.values(inputs, targets)
    grid = _grid(engine)
    mixing = [rollout_mixing(a, head_fusion) for a in step.values]
    row = propagate(mixing, class_rows(grid, len(inputs[0])))
    return MethodResult(
        maps=[token_map(row, grid)], logits=step.logits, targets=step.targets, scores=step.scores
    )


def _generic_attention(engine: Engine, inputs: list[np.ndarray], targets: Any) -> MethodResult:
    step = engine.gradients(inputs, targets, wrt="layers")
    grid = _grid(engine)
    mixing = [relevance_mixing(a, g) for a, g in zip(step.values, step.gradients)]
    row = propagate(mixing, class_rows(grid, len(inputs[0])))
    return MethodResult(
        maps=[token_map(row, grid)], logits=step.logits, targets=step.targets, scores=step.scores
    )


ATTENTION_DISPLAY = Display(reduce="none", rectify="relu")

register(
    Method(
        name="attention_rollout",
        compute=_rollout,
        space="layer",
        stochastic=False,
        defaults={"head_fusion": "mean"},
        display=ATTENTION_DISPLAY,
        reference="Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020",
        summary="attention of every block, heads fused, residual added, multiplied through "
        "(class-agnostic)",
        family="attention",
    )
)
register(
    Method(
        name="generic_attention",
        compute=_generic_attention,
        space="layer",
        stochastic=False,
        defaults={},
        display=ATTENTION_DISPLAY,
        reference="Chefer, Gur & Wolf, Generic Attention-model Explainability for Interpreting "
        "Bi-Modal and Encoder-Decoder Transformers, ICCV 2021",
        summary="gradient-weighted attention (mean over heads of relu(grad x attention)) "
        "propagated through the blocks",
        family="attention",
    )
)
