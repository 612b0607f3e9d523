"""Input preprocessing presets: what a model expects between decoded RGB pixels and its input.

Every preset is a function on a float32 batch ``(N, H, W, C)`` of RGB values in ``[0, 255]`` that
returns the model-ready float32 batch of the same shape:

===========  ============================================================================
``none``     the pixels as they are, ``[0, 255]`` (models with their own ``Rescaling`` layer)
``unit``     ``x / 255``, in ``[0, 1]``
``symmetric``  ``x / 127.5 - 1``, in ``[-1, 1]`` (MobileNet, Inception, EfficientNetV2 without
             rescaling)
``caffe``    RGB -> BGR, minus the ImageNet mean ``(103.939, 116.779, 123.68)`` in BGR order, not
             scaled (VGG, ResNet50 of ``keras.applications``)
``torch``    ``x / 255``, minus mean ``(0.485, 0.456, 0.406)``, divided by std
             ``(0.229, 0.224, 0.225)`` (DenseNet, and models trained with torchvision's recipe)
===========  ============================================================================

The presets match ``keras.applications.imagenet_utils.preprocess_input`` with ``mode="caffe"``,
``"tf"`` (``symmetric``) and ``"torch"``. A single-channel batch (grey models) is scaled the same
way;
``caffe`` and ``torch`` then use the mean of the three channel statistics.

:func:`get_preprocess` also accepts a callable, or ``"module:function"`` /
``"path/to/file.py:function"``,
which imports the user's function (running that module's code, like any import).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import XaiValueError, bad_type, bad_value, did_you_mean

__all__ = ["PRESETS", "Preprocess", "get_preprocess"]

_IMAGENET_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _channel_stats(stats: np.ndarray, channels: int) -> np.ndarray:
    return stats if channels == 3 else np.full(channels, stats.mean(), np.float32)


def _none(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32) / np.float32(255.0)


def _symmetric(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32) / np.float32(127.5) - np.float32(1.0)


def _caffe(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.shape[-1] == 3:
        x = x[..., ::-1]
    return x - _channel_stats(_IMAGENET_BGR_MEAN, x.shape[-1])


def _torch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32) / np.float32(255.0)
    c = x.shape[-1]
    return (x - _channel_stats(_TORCH_MEAN, c)) / _channel_stats(_TORCH_STD, c)


PRESETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": _none,
    "unit": _unit,
    "symmetric": _symmetric,
    "caffe": _caffe,
    "torch": _torch,
}
"""Preset name -> function on float32 RGB batches in ``[0, 255]``, channels last."""


@dataclass(frozen=True)
class Preprocess:
    """A preprocessing function with the spec it came from (recorded in export configs).

    Attributes:
        spec: the preset name, ``"module:function"`` / ``"file.py:function"``, or the callable's
            qualified name.
        function: ``f(batch) -> batch`` on float32 ``(N, H, W, C)`` RGB values in ``[0, 255]``.
    """

    spec: str
    function: Callable[[np.ndarray], Any]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.function(batch))


_SPEC = re.compile(r"^(?P<module>[^:]+):(?P<function>[A-Za-z_][A-Za-z0-9_.]*)$")


def _load_attr(obj: Any, dotted: str, spec: str) -> Any:
    for part in dotted.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise bad_value(
                "preprocess",
                "'module:function' naming a function that exists",
                spec,
                f"{getattr(obj, '__name__', obj)!s} has no attribute {part!r}. "
                + did_you_mean(part, names),
            )
        obj = getattr(obj, part)
    return obj


def _import_module(module: str, spec: str) -> Any:
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise bad_value(
                "preprocess",
                "'path/to/file.py:function' with an existing file",
                spec,
                f"No file at {str(path)!r}.",
            )
        name = "xai_user_preprocess_" + re.sub(r"\W", "_", path.stem)
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:  # pragma: no cover - odd files
            raise bad_value("preprocess", "an importable Python file", spec)
        mod = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(mod)
        return mod
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise XaiValueError(
            f"`preprocess` must name an importable module. Received: preprocess={spec!r}; "
            f"importing {module!r} failed: {exc}. Put the module on PYTHONPATH (or run from its "
            "folder), or give a file path: 'path/to/file.py:function'."
        ) from exc


def get_preprocess(spec: str | Callable[[np.ndarray], Any] | Preprocess | None) -> Preprocess:
    """Resolve a preprocessing spec into a :class:`Preprocess`.

    Args:
        spec: ``None`` (same as ``"none"``), a preset name from :data:`PRESETS`, a callable on
            float32 batches, or ``"module:function"`` / ``"path/to/file.py:function"`` (e.g.
            ``"keras.applications.resnet50:preprocess_input"``).

    Returns:
        A :class:`Preprocess`; calling it on a float32 ``(N, H, W, C)`` batch in ``[0, 255]``
        returns
        the model-ready batch.

    Raises:
        XaiValueError: an unknown preset (with close matches), a module that cannot be imported or
            a name it does not define, or something that is not callable.
        XaiTypeError: ``spec`` is neither a string nor a callable.
    """
    if isinstance(spec, Preprocess):
        return spec
    if spec is None:
        return Preprocess("none", _none)
    if callable(spec):
        name = getattr(spec, "__qualname__", None) or type(spec).__name__
        module = getattr(spec, "__module__", None)
        return Preprocess(f"{module}:{name}" if module else str(name), spec)
    if not isinstance(spec, str):
        raise bad_type(
            "preprocess",
            "a preset name, 'module:function' or a callable",
            spec,
            "Presets: " + ", ".join(repr(p) for p in PRESETS) + ".",
        )
    key = spec.strip()
    if key.lower() in PRESETS:
        return Preprocess(key.lower(), PRESETS[key.lower()])
    match = _SPEC.match(key)
    if match is None:
        raise bad_value(
            "preprocess",
            "a preset (" + ", ".join(repr(p) for p in PRESETS) + ") or 'module:function'",
            spec,
            did_you_mean(key.lower(), PRESETS)
            + " A user function is given as 'package.module:function' or 'file.py:function'.",
        )
    module = _import_module(match["module"], spec)
    function = _load_attr(module, match["function"], spec)
    if not callable(function):
        raise bad_type("preprocess", "'module:function' naming a callable", function)
    return Preprocess(key, function)
