"""Token activations <-> patch grids: how a transformer's ``(B, T, C)`` tokens become a map.

A Vision Transformer cuts an ``(H, W)`` image into an ``h x w`` grid of patches and prepends
``prefix`` learned tokens (a class token, DeiT's distillation token, DINOv2's register tokens;
none in keras.io-style ViTs), so a token activation has ``T = prefix + h * w`` rows. A
:class:`TokenGrid` drops the prefix and reshapes the patch rows (row-major, as every ViT flattens
its patch grid) to ``(B, h, w, C)``; from there every CAM rule works as on a CNN feature map.

The grid is found, in this order:

1. given by the user (``token_grid=(h, w)`` or a :class:`TokenGrid`);
2. from the **patch size** of the model's patch embedding (a ``Conv2D`` whose kernel equals its
   strides, or a layer with a ``patch_size`` attribute): ``h = H / p_h``, ``w = W / p_w`` and
   ``prefix = T - h * w``;
3. from the token count alone: the smallest ``prefix`` (at most :data:`MAX_GUESSED_PREFIX`) for
   which ``T - prefix`` patches tile the input with one integer stride (``H = s * h``,
   ``W = s * w``); this covers hybrid and convolutional stems and Swin's merged stages.

A model whose tokens fit none of these gets a :class:`~xai.errors.ModelStructureError` that says
how to give the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras

from .errors import ModelStructureError, bad_type, bad_value
from .graph import get_node, node_paths

MAX_PREFIX = 8
"""The most prefix tokens inferred without help (DINOv2 and DINOv3 use 1 + 4 registers);
more need ``token_grid=``. Kept small so that a token count is not explained away by a prefix."""

MAX_GUESSED_PREFIX = 2
"""The most prefix tokens inferred when the patch size is unknown (a class and a distillation
token): with more freedom almost any token count would fit some grid."""


@dataclass(frozen=True)
class TokenGrid:
    """Where the patch tokens of a ``(B, T, C)`` activation sit.

    Attributes:
        grid: ``(h, w)`` patch rows and columns.
        prefix: tokens before the patches (class, distillation, register tokens), left out of maps.
    """

    grid: tuple[int, int]
    prefix: int = 0

    @property
    def num_tokens(self) -> int:
        return self.prefix + self.grid[0] * self.grid[1]

    def to_map(self, tokens: Any) -> Any:
        """``(B, T, C)`` -> ``(B, h, w, C)`` (numpy or tensor; the prefix rows are dropped)."""
        patches = tokens[:, self.prefix :, :]
        h, w = self.grid
        if hasattr(patches, "reshape"):
            return patches.reshape((-1, h, w, patches.shape[-1]))
        return keras.ops.reshape(patches, (-1, h, w, patches.shape[-1]))

    def to_dict(self) -> dict[str, Any]:
        return {"grid": list(self.grid), "prefix": self.prefix}


def check_token_grid(value: Any) -> TokenGrid | tuple[int, int] | None:
    """Validate a user's ``token_grid``: None, ``(h, w)`` or a :class:`TokenGrid`."""
    if value is None:
        return None
    if isinstance(value, TokenGrid):
        _check_grid(value.grid)
        if not isinstance(value.prefix, int) or value.prefix < 0:
            raise bad_value("token_grid.prefix", "an int >= 0", value.prefix)
        return value
    if isinstance(value, (list, tuple)):
        return _check_grid(value)
    raise bad_type(
        "token_grid",
        "None, (rows, columns) of the patch grid, or xai.TokenGrid(grid=(h, w), prefix=p)",
        value,
    )


def _check_grid(grid: Any) -> tuple[int, int]:
    if (
        not isinstance(grid, (list, tuple))
        or len(grid) != 2
        or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid)
    ):
        raise bad_value("token_grid", "(rows, columns): two positive ints", grid)
    return int(grid[0]), int(grid[1])


def _as_pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if all(isinstance(v, int) and v > 0 for v in value):
            return int(value[0]), int(value[1])
    return None


def patch_size(model: keras.Model) -> tuple[int, int] | None:
    """The patch size of the model's patch embedding, or None when there is none to read.

    The first layer in graph order (nested models and sub-layers included) that is a ``Conv2D``
    with ``kernel_size == strides > 1`` (the ViT patch embedding), or that has a ``patch_size``
    attribute (keras-hub's ``ViTPatchingAndEmbedding``, keras.io's ``Patches``).
    """
    for path in node_paths(model):
        layer = get_node(model, path)
        if isinstance(layer, keras.layers.Conv2D):
            k, s = tuple(layer.kernel_size), tuple(layer.strides)
            if k == s and max(s) > 1:
                return int(s[0]), int(s[1])
        found = _as_pair(getattr(layer, "patch_size", None))
        if found is not None:
            return found
    return None


def infer_grid(
    num_tokens: int,
    input_size: Sequence[int],
    *,
    patch: tuple[int, int] | None = None,
    max_prefix: int = MAX_PREFIX,
    max_guessed_prefix: int = MAX_GUESSED_PREFIX,
) -> TokenGrid | None:
    """The patch grid of ``num_tokens`` tokens of an ``input_size = (H, W)`` image, or None.

    Args:
        num_tokens: ``T``, the token axis length.
        input_size: ``(H, W)`` of the model input.
        patch: the patch size when known (tried first).
        max_prefix: the most prefix tokens accepted with a known patch size.
        max_guessed_prefix: the most prefix tokens accepted from the token count alone.
    """
    height, width = int(input_size[0]), int(input_size[1])
    if patch is not None and height % patch[0] == 0 and width % patch[1] == 0:
        h, w = height // patch[0], width // patch[1]
        if 0 <= num_tokens - h * w <= max_prefix:
            return TokenGrid((h, w), num_tokens - h * w)
    for prefix in range(0, min(max_guessed_prefix, num_tokens - 1) + 1):
        n = num_tokens - prefix
        for stride in range(1, max(height, width) + 1):
            if height % stride or width % stride:
                continue
            h, w = height // stride, width // stride
            if h * w == n:
                return TokenGrid((h, w), prefix)
            if h * w < n:
                break
    return None


def grid_for(
    path: str,
    shape: Sequence[Any],
    input_size: Sequence[int],
    *,
    patch: tuple[int, int] | None,
    override: TokenGrid | tuple[int, int] | None = None,
) -> TokenGrid:
    """The :class:`TokenGrid` of the token tensor at ``path`` (shape ``(B, T, C)``), or an error.

    Args:
        path: the tapped node (for messages).
        shape: its symbolic shape.
        input_size: ``(H, W)`` of the model input it belongs to.
        patch: the model's patch size (:func:`patch_size`), if any.
        override: the user's ``token_grid``: a :class:`TokenGrid` (used as is) or ``(h, w)``
            (the prefix is what is left of ``T``).
    """
    num_tokens = shape[1]
    how = (
        "Pass token_grid=(rows, columns) of the patch grid (or xai.TokenGrid(grid=(h, w), "
        "prefix=p) when the prefix tokens are not all before the patches' count), or choose "
        "another layer."
    )
    if num_tokens is None:
        raise ModelStructureError(
            f"Layer {path!r} has tokens of unknown count (shape {tuple(shape)}), so they cannot "
            f"be laid out on the image's patch grid. {how}"
        )
    num_tokens = int(num_tokens)
    if isinstance(override, TokenGrid):
        if override.num_tokens != num_tokens:
            raise bad_value(
                "token_grid",
                f"a grid of {num_tokens} tokens for layer {path!r} (shape {tuple(shape)})",
                override,
                f"prefix + rows * columns is {override.num_tokens}.",
            )
        return override
    if override is not None:
        h, w = override
        if not 0 <= num_tokens - h * w:
            raise bad_value(
                "token_grid",
                f"(rows, columns) with rows * columns <= {num_tokens}, the tokens of layer "
                f"{path!r} (shape {tuple(shape)})",
                override,
            )
        return TokenGrid((h, w), num_tokens - h * w)
    found = infer_grid(num_tokens, input_size, patch=patch)
    if found is None:
        raise ModelStructureError(
            f"Layer {path!r} has {num_tokens} tokens (shape {tuple(shape)}), which do not lay out "
            f"as prefix tokens (up to {MAX_PREFIX} with a known patch size, "
            f"{MAX_GUESSED_PREFIX} without) plus a patch grid of the {tuple(input_size)} input "
            f"(patch size {patch if patch is not None else 'not found'}). {how}"
        )
    return found


__all__ = [
    "MAX_GUESSED_PREFIX",
    "MAX_PREFIX",
    "TokenGrid",
    "check_token_grid",
    "grid_for",
    "infer_grid",
    "patch_size",
]
