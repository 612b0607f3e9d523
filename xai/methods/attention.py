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
a row vector from the last block down (``O(L T^2)`` per image instead of ``O(L T^3)``), inside
the compiled step: only that row is copied back, not the ``L`` attention tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

from ..engine import Engine, Reducer
from ..errors import ModelStructureError, XaiValueError
from ..postprocess import Display
from ..tokens import TokenGrid
from .registry import Method, MethodResult, register

HEAD_FUSIONS = ("mean", "max", "min")

# The rules below are written with keras.ops: they run inside the compiled step (as reducers,
# so only one row per image is copied back, not L attention tensors) and on NumPy arrays alike.


def fuse_heads(attention: Any, head_fusion: str = "mean") -> Any:
    """``(B, heads, T, T)`` -> ``(B, T, T)`` by the mean (or max/min) over heads."""
    if head_fusion == "mean":
        return ops.mean(attention, axis=1)
    if head_fusion == "max":
        return ops.max(attention, axis=1)
    if head_fusion == "min":
        return ops.min(attention, axis=1)
    raise XaiValueError(
        f"`head_fusion` must be one of {HEAD_FUSIONS}. Received: head_fusion={head_fusion!r}."
    )


def rollout_mixing(attention: Any, head_fusion: str = "mean") -> Any:
    """Abnar & Zuidema's per-block mixing ``rownorm(fused A + I)``, ``(B, T, T)``.

    The rows are never empty (the identity adds 1 to each), so the normalisation cannot divide
    by zero.
    """
    a = fuse_heads(attention, head_fusion)
    a = a + ops.eye(a.shape[-1], dtype=a.dtype)[None]
    return a / ops.sum(a, axis=-1, keepdims=True)


def relevance_mixing(attention: Any, gradient: Any) -> Any:
    """Chefer et al.'s per-block update ``I + mean_h relu(grad * A)``, ``(B, T, T)``."""
    abar = ops.mean(ops.relu(gradient * attention), axis=1)
    return abar + ops.eye(abar.shape[-1], dtype=abar.dtype)[None]


def propagate(mixing: Sequence[Any], rows: Any) -> Any:
    """``rows @ M_L @ ... @ M_1``: rows of ``R = M_L ... M_1`` (``mixing`` in block order).

    Args:
        mixing: one ``(B, T, T)`` matrix per block, first block first.
        rows: ``(B or 1, r, T)`` starting rows (the identity gives the whole of ``R``).

    Returns:
        ``(B, r, T)``.
    """
    out = rows
    for m in reversed(mixing):
        out = ops.matmul(out, m)
    return out


def class_rows(grid: TokenGrid) -> np.ndarray:
    """The starting row ``(1, 1, T)``: the class token (``prefix >= 1``) or the mean of the
    patch tokens."""
    row = np.zeros((1, 1, grid.num_tokens), np.float32)
    if grid.prefix:
        row[0, 0, 0] = 1.0
    else:
        row[0, 0, :] = 1.0 / grid.num_tokens
    return row


def token_map(relevance_row: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """``(B, 1, T)`` -> ``(B, h, w)`` float32: the patch columns on their grid."""
    patches = np.asarray(relevance_row)[:, 0, grid.prefix :]
    return patches.reshape(-1, *grid.grid).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _reducer(kind: str, grid: TokenGrid, head_fusion: str = "mean") -> Reducer:
    """The in-step reduction of one method and grid (one function object per parameter set,
    so the compiled step is reused across batches)."""
    rows = class_rows(grid)

    def reduce(values: list[Any], gradients: list[Any]) -> list[Any]:
        if kind == "rollout":
            mixing = [rollout_mixing(a, head_fusion) for a in values]
        else:
            mixing = [relevance_mixing(a, g) for a, g in zip(values, gradients)]
        return [propagate(mixing, ops.convert_to_tensor(rows))]

    return reduce


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
    grid = _grid(engine)
    step = engine.values(inputs, targets, reduce=_reducer("rollout", grid, head_fusion))
    return MethodResult(
        maps=[token_map(step.values[0], grid)],
        logits=step.logits,
        targets=step.targets,
        scores=step.scores,
    )


def _generic_attention(engine: Engine, inputs: list[np.ndarray], targets: Any) -> MethodResult:
    grid = _grid(engine)
    step = engine.gradients(inputs, targets, wrt="layers", reduce=_reducer("relevance", grid))
    return MethodResult(
        maps=[token_map(step.values[0], grid)],
        logits=step.logits,
        targets=step.targets,
        scores=step.scores,
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
