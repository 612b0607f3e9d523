"""Attribution methods behind one registry.

``available()`` lists them; ``get(name)`` returns one (unknown names get close matches);
``smooth(base, ...)`` wraps any method in noise smoothing; ``markdown_table()`` is the README's
method table. Importing this package registers the built-in methods, one module per family:
``cam`` (Grad-CAM and its gradient-weighted variants, Eigen-CAM), ``cam_perturb`` (Score-CAM,
Ablation-CAM), ``gradient`` (saliency, gradient x input), ``integrated`` (integrated gradients),
``guided`` (guided backprop, Guided Grad-CAM), ``smooth`` (SmoothGrad, SmoothGrad², VarGrad) and
``perturbation`` (occlusion, RISE) and ``attention`` (attention rollout, generic attention, for
Vision Transformers).
"""

from . import attention, cam, cam_perturb, gradient, guided, integrated, perturbation  # noqa: F401
from .registry import Method, MethodResult, available, get, markdown_table, register
from .smooth import smooth

__all__ = ["Method", "MethodResult", "available", "get", "markdown_table", "register", "smooth"]
