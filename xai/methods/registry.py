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


Targets = np.ndarray | Callable[[Any], Any]
"""Resolved targets of a batch: int32 ``(B,)`` classes (``-1`` = predicted) or a callable."""


Compute = Callable[..., MethodResult]
"""The method contract: ``compute(engine, inputs, targets, **params) -> MethodResult`` for one
batch. ``engine`` is the :class:`~xai.engine.Engine` of the tap (layer-space methods: the CAM
layers; input-space methods: logits only), ``inputs`` one float array ``(B, ...)`` per model
input, ``targets`` as :data:`Targets`, and ``params`` the method's own keyword-only parameters (its
``defaults`` overlaid with the user's, plus ``seed`` for a stochastic method). A ``Callable[...,]``
rather than a Protocol: each method spells out its own keyword-only parameters."""


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
        base: for a wrapper (``smooth``), the name of the wrapped method.
        family: ``"cam"``, ``"attention"``, ``"gradient"``, ``"perturbation"`` or ``"smooth"``
            (for tables). Attention methods read every attention layer's probabilities
            (``layer=`` then selects attention layers).
        needs_layer: whether the method reads a layer's activations (``layer=`` applies). None
            (the default) means ``space == "layer"``; Guided Grad-CAM is an input-space method that
            needs a layer.
        knobs: parameters that trade speed for memory and never change the result (e.g.
            ``chunk_size``); the contract tests check that they do not.
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
    family: str = "other"
    needs_layer: bool = None  # type: ignore[assignment]  # None -> space == "layer"
    knobs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.needs_layer is None:
            object.__setattr__(self, "needs_layer", self.space == "layer")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "knobs", frozenset(self.knobs))
        unknown = self.knobs - set(self.defaults)
        if unknown:
            raise ValueError(f"knobs {sorted(unknown)} of method {self.name!r} are not parameters")

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
FAMILIES = ("cam", "attention", "gradient", "smooth", "perturbation")


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


def _format_default(value: Any) -> str:
    return repr(value)


def _format_display(display: Display) -> str:
    parts = [] if display.reduce == "none" else [f"{display.reduce} over channels"]
    parts.append(display.rectify)
    if display.clip_percentile is not None:
        parts.append(f"clip at p{display.clip_percentile:g}")
    return ", ".join(parts)


def markdown_table() -> str:
    """The README's method table, generated from the registry (one row per registered method).

    Rows are grouped by family (CAM, attention, gradient, noise wrapper, perturbation), in
    registration order within a family. Columns: name, family, output space, whether
    ``layer=`` applies, whether ``seed`` matters, the parameters with their defaults (memory
    knobs marked with a dagger), the default heatmap recipe (channel reduction, rectification,
    clipping) and the paper.
    """
    rows = [
        "| Method | Family | Output | Layer | Stochastic | Parameters (defaults) | Heatmap "
        "| Reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    families = {f: i for i, f in enumerate(FAMILIES)}
    ordered = sorted(_REGISTRY.values(), key=lambda m: families.get(m.family, len(families)))
    for m in ordered:
        params = ", ".join(
            f"`{k}={_format_default(v)}`" + ("†" if k in m.knobs else "")
            for k, v in m.defaults.items()
        )
        rows.append(
            f"| `{m.name}` | {m.family} | {m.space} | {'yes' if m.needs_layer else 'no'} | "
            f"{'yes' if m.stochastic else 'no'} | {params or '-'} | {_format_display(m.display)} | "
            f"{m.reference} |"
        )
    rows.append("")
    rows.append("† memory/speed knob: never changes the result.")
    return "\n".join(rows) + "\n"
