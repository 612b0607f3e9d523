"""The method registry: every attribution method is a small registered function with metadata."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from ..errors import XaiValueError, bad_type, did_you_mean
from ..postprocess import Display


@dataclass(frozen=True)
class MethodResult:
    """What a method computes for one batch of ``B`` samples.

    Attributes:
        maps: raw, signed, float32 attributions: one ``(B, *layer_spatial)`` map per tapped layer
            for layer-space methods, one ``(B, *input_shape)`` array per model input for
            input-space methods.
        logits: float32 ``(B, K)`` logits of the (clean) inputs.
        targets: int32 ``(B,)`` explained class (``-1`` for a callable target).
        scores: float32 ``(B,)`` target score of the clean inputs.
    """

    maps: list[np.ndarray]
    logits: np.ndarray
    targets: np.ndarray
    scores: np.ndarray


# compute(engine, inputs, targets, **params) -> MethodResult
Compute = Callable[..., MethodResult]


@dataclass(frozen=True)
class Method:
    """A registered attribution method.

    Attributes:
        name: registry key, spelled out (``gradcam``, ``smoothgrad``...).
        compute: ``compute(engine, inputs, targets, **params) -> MethodResult`` for one batch.
        space: ``"layer"`` (maps at a layer's resolution, e.g. CAMs) or ``"input"``.
        stochastic: whether the result depends on ``seed``.
        defaults: default values of the method's own parameters (the only ones it accepts).
        display: how raw maps become heatmaps by default.
        reference: the paper.
        summary: one line for tables and ``--help``.
    """

    name: str
    compute: Compute
    space: Literal["layer", "input"]
    stochastic: bool
    defaults: Mapping[str, Any]
    display: Display
    reference: str
    summary: str
    base: str | None = field(default=None)

    @property
    def needs_layer(self) -> bool:
        return self.space == "layer"

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``params``; unknown names are an error listing the valid ones."""
        unknown = [k for k in params if k not in self.defaults]
        if unknown:
            valid = sorted(self.defaults)
            hint = (
                f"Its parameters are {valid}. " + did_you_mean(unknown[0], valid)
                if valid
                else "It takes no extra parameters."
            )
            raise XaiValueError(
                f"Method {self.name!r} does not take parameter(s) {unknown}. {hint}"
            )
        return {**self.defaults, **params}


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (names are unique)."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def get(name: str | Method) -> Method:
    """The registered method called ``name`` (a :class:`Method` passes through)."""
    if isinstance(name, Method):
        return name
    if not isinstance(name, str):
        raise bad_type("method", "a method name (str)", name, "See xai.methods.available().")
    if name not in _REGISTRY:
        raise XaiValueError(
            f"`method` must be one of the registered methods. Received: method={name!r}. "
            + did_you_mean(name, sorted(_REGISTRY))
            + " See xai.methods.available() for the list."
        )
    return _REGISTRY[name]


def available() -> Mapping[str, Method]:
    """A read-only view of the registry: name -> Method, in registration order."""
    return MappingProxyType(_REGISTRY)
