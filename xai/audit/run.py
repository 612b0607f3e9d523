"""What every audit check reads: the inputs, the explainer, the explanations, the predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import targets as targets_mod
from ..errors import bad_value
from ..explainer import Explainer
from ..methods.registry import Method


@dataclass
class AuditRun:
    """What every check reads: the inputs, the explainer, the explanations and the predictions."""

    x: np.ndarray
    y: np.ndarray
    masks: np.ndarray | None
    names: list[str] | None
    class_names: list[str]
    explainer: Explainer
    methods: list[Method]
    method_params: dict[str, dict[str, Any]]
    expl: dict[str, Any]
    preds: np.ndarray
    probs: np.ndarray
    confusion: np.ndarray
    seed: int
    batch_size: int
    bar: Any

    @property
    def method_names(self) -> list[str]:
        return [m.name for m in self.methods]

    @property
    def first(self) -> Any:
        return self.expl[self.method_names[0]]

    @property
    def correct(self) -> np.ndarray:
        return np.asarray(self.preds == self.y)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def stage(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=False)

    def heatmaps(self, explainer: Explainer, x: np.ndarray, m: Method, targets: Any) -> np.ndarray:
        """Heatmaps of ``m`` on ``x`` with the audit's batch size, seed and method parameters."""
        return explainer.explain(
            x,
            m,
            targets=targets,
            batch_size=self.batch_size,
            seed=self.seed,
            progress=False,
            **self.method_params.get(m.name, {}),
        ).heatmap_for(0)


def _explain_all(
    explainer: Explainer,
    x: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray | None,
    names: list[str] | None,
    class_names: Sequence[str] | None,
    methods: list[Method],
    method_params: dict[str, dict[str, Any]],
    seed: int,
    batch_size: int,
    bar: Any,
) -> AuditRun:
    """Every method's explanations of ``x``, the predictions and the confusion matrix."""
    expl = {}
    for m in methods:
        bar.set_postfix_str(f"explain {m.name}", refresh=False)
        expl[m.name] = explainer.explain(
            x, m, batch_size=batch_size, seed=seed, progress=False, **method_params.get(m.name, {})
        )
        bar.update()
    first = expl[methods[0].name]
    tap = explainer.engine(False).tap
    k = targets_mod.num_classes(tap.head, tap.num_logits)
    if y.min() < 0 or y.max() >= k:
        raise bad_value("labels", f"class indices in [0, {k - 1}] (the model has {k} classes)", y)
    names_k = (
        [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    )
    if len(names_k) != k:
        raise bad_value("class_names", f"{k} names (one per class)", class_names)
    preds = first.predictions.astype(np.int64)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y, preds), 1)
    return AuditRun(
        x=x,
        y=y,
        masks=masks,
        names=names,
        class_names=names_k,
        explainer=explainer,
        methods=methods,
        method_params=method_params,
        expl=expl,
        preds=preds,
        probs=targets_mod.class_probabilities(first.logits, tap.head, tap.num_logits),
        confusion=confusion,
        seed=seed,
        batch_size=batch_size,
        bar=bar,
    )


@dataclass(frozen=True)
class LocalisationResult:
    """The report's localisation section, and per method and image what the gallery needs."""

    report: dict[str, Any]
    off_object: dict[str, np.ndarray]
    energy: dict[str, np.ndarray]
