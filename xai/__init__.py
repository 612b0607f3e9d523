"""xai: faithful attribution maps (Grad-CAM, SmoothGrad, ...) for TensorFlow/Keras 3 models.

The user's model is never modified: explanations run on *taps*, new functional models that reuse
its layers and weights and return the pre-softmax logits plus chosen intermediate activations.

``import xai`` is light: TensorFlow and Keras are imported on first use of a name that needs them
(``xai.explain``, ``xai.Explainer``, ...), so the command line answers ``--help`` without loading
them and can quiet TensorFlow's C++ start-up log before it starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import export as _export_package  # light: the pipeline loads with xai.export(...)
from ._version import __version__
from .errors import ModelStructureError, XaiError, XaiTypeError, XaiValueError

# `from . import export` bound the package to the name `export`; the public `xai.export` is the
# function (its package stays importable as `xai.export.<module>` through sys.modules).
del export  # noqa: F821

_LAZY = {
    "Engine": "engine",
    "Explainer": "explainer",
    "clear_cache": "explainer",
    "explain": "explainer",
    "Explanation": "explanation",
    "Tap": "taps",
    "auto_layer": "taps",
    "layer_paths": "taps",
    "logits_model": "taps",
    "tap": "taps",
    "TokenGrid": "tokens",
    "TrainingTap": "training_tap",
    "run_audit": "audit",
    "smooth": "methods",
    "TokenExplanation": "tokens_text",
    "split_model": "intervention",
}

if TYPE_CHECKING:
    from . import audit, methods
    from .audit import run_audit
    from .engine import Engine
    from .explainer import Explainer, clear_cache, explain
    from .explanation import Explanation
    from .export.pipeline import export
    from .intervention import split_model
    from .methods import smooth
    from .taps import Tap, auto_layer, layer_paths, logits_model, tap
    from .tokens import TokenGrid
    from .tokens_text import TokenExplanation
    from .training_tap import TrainingTap


def __getattr__(name: str) -> Any:
    """Load the public names (and submodules such as ``xai.viz``) on first use."""
    if name == "export":
        value = _export_package.__getattr__("export")
    elif name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'xai' has no attribute {name!r}") from None
    globals()[name] = value
    return value


__all__ = [
    "Engine",
    "Explainer",
    "Explanation",
    "ModelStructureError",
    "Tap",
    "TokenExplanation",
    "TokenGrid",
    "TrainingTap",
    "XaiError",
    "XaiTypeError",
    "XaiValueError",
    "__version__",
    "audit",
    "auto_layer",
    "clear_cache",
    "explain",
    "export",
    "layer_paths",
    "logits_model",
    "methods",
    "run_audit",
    "smooth",
    "split_model",
    "tap",
]
