"""xai: faithful attribution maps (Grad-CAM, SmoothGrad, ...) for TensorFlow/Keras 3 models.

The user's model is never modified: explanations run on *taps*, new functional models that reuse
its layers and weights and return the pre-softmax logits plus chosen intermediate activations.
"""

from . import audit, methods  # audit: a callable package, xai.audit(model, images, labels, ...)
from ._version import __version__
from .audit import run_audit
from .engine import Engine
from .errors import ModelStructureError, XaiError, XaiTypeError, XaiValueError
from .explain import Explainer, clear_cache, explain
from .explanation import Explanation
from .export import export
from .methods import smooth
from .taps import Tap, auto_layer, layer_paths, logits_model, tap
from .training_tap import TrainingTap

__all__ = [
    "Engine",
    "Explainer",
    "Explanation",
    "ModelStructureError",
    "Tap",
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
    "tap",
]
