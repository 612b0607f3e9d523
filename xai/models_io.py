"""Loading saved models safely: ``.keras``/``.h5`` files and TensorFlow SavedModel folders.

``.keras`` and ``.h5`` files are loaded with Keras's ``safe_mode`` on: a file that carries Python
code (a ``Lambda`` layer's bytecode) is refused unless the caller says it trusts it
(``unsafe=True``, ``--unsafe`` on the command line).

A SavedModel folder (``tf.saved_model.save`` or ``model.export``) is wrapped as
``keras.Model(x, TFSMLayer(folder)(x))``. Such a model is a single opaque layer: the
input-gradient methods (``saliency``, ``smoothgrad``, ``integrated_gradients``, ...) work on it, but
there is no convolutional layer inside to tap, so CAM methods cannot (:func:`opaque_layers` tells).
Its output is differentiated as it is: if the SavedModel ends in a softmax, the gradient is of the
probability, not of the logit (the softmax cannot be removed from a compiled graph).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import XaiValueError, bad_type

__all__ = ["fingerprint", "is_saved_model_dir", "load_model", "opaque_layers"]


def is_saved_model_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TensorFlow SavedModel folder (it holds ``saved_model.pb``)."""
    p = Path(path)
    return p.is_dir() and (p / "saved_model.pb").is_file()


def _load_saved_model(path: Path) -> Any:
    import keras

    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    _, kwargs = layer.call_endpoint_fn.structured_input_signature
    specs = list(kwargs.values())
    if len(specs) != 1:
        raise XaiValueError(
            f"The SavedModel {str(path)!r} takes {len(specs)} inputs "
            f"({', '.join(kwargs)}); xai explains models with one image input. Save a model "
            "with a single input, or load the original .keras model."
        )
    spec = specs[0]
    inputs = keras.Input(tuple(spec.shape[1:]), dtype=spec.dtype.name, name=next(iter(kwargs)))
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise XaiValueError(
                f"The SavedModel {str(path)!r} has {len(outputs)} outputs ({', '.join(outputs)}); "
                "xai explains one output. Export a model with a single output."
            )
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=path.name or "saved_model")


def load_model(path: str | os.PathLike, *, unsafe: bool = False) -> Any:
    """Load a model for explaining.

    Args:
        path: a ``.keras`` or ``.h5`` file, or a TensorFlow SavedModel folder.
        unsafe: allow files that carry Python code (``Lambda`` layers). Only for trusted files:
            loading them runs that code.

    Returns:
        A ``keras.Model`` (a functional wrapper around a ``TFSMLayer`` for SavedModels).

    Raises:
        XaiValueError: the path does not exist or is neither kind of model, the file holds a
            ``Lambda`` layer and ``unsafe`` is False (the message names ``--unsafe``), or Keras
            cannot read it (its message is included).
        XaiTypeError: ``path`` is not a path.
    """
    import keras

    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise bad_type("model", "a path to a .keras/.h5 file or a SavedModel folder", path)
    p = Path(path)
    if not p.exists():
        raise XaiValueError(
            "MODEL must be an existing .keras or .h5 file or a TensorFlow SavedModel folder. "
            f"Received: {str(p)!r} (not found). Check the path and the working directory."
        )
    if p.is_dir():
        if not is_saved_model_dir(p):
            raise XaiValueError(
                "MODEL must be an existing .keras or .h5 file or a TensorFlow SavedModel folder. "
                f"Received: {str(p)!r}, a folder without saved_model.pb."
            )
        try:
            return _load_saved_model(p)
        except XaiValueError:
            raise
        except Exception as exc:
            raise XaiValueError(f"Could not load the SavedModel {str(p)!r}: {exc}") from exc
    if p.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise XaiValueError(
            "MODEL must be a .keras or .h5 file or a TensorFlow SavedModel folder. "
            f"Received: {str(p)!r} (suffix {p.suffix or 'none'!r}). Save the model with "
            "model.save('model.keras')."
        )
    from . import vit  # noqa: F401 - registers xai's ViT layers (the shipped ViT uses them)

    try:
        return keras.saving.load_model(p, safe_mode=not unsafe, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise XaiValueError(
                f"The model {str(p)!r} contains a Lambda layer or other Python code, which Keras "
                "refuses to load in safe mode because loading it runs that code. If you trust the "
                "file, pass --unsafe (unsafe=True in Python)."
            ) from exc
        raise XaiValueError(f"Could not load model {str(p)!r}: {exc}") from exc
    except Exception as exc:  # h5py/zip errors on a corrupt or foreign file
        raise XaiValueError(
            f"Could not load model {str(p)!r}: {type(exc).__name__}: {exc}. "
            "Is it a Keras model file?"
        ) from exc


def opaque_layers(model: Any) -> list[str]:
    """Names of the layers of ``model`` that hide their inner layers (``TFSMLayer``)."""
    import keras

    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.TFSMLayer)]


def fingerprint(model: Any) -> str:
    """A SHA-256 of a model's architecture (layer classes and names) and weight values.

    The same weights loaded from a ``.keras`` file or held in memory give the same fingerprint.
    """
    digest = hashlib.sha256()
    layers = [(type(layer).__name__, layer.name) for layer in model.layers]
    digest.update(json.dumps(layers).encode("utf-8"))
    for weight in model.weights:
        value = weight.numpy()
        digest.update(f"{weight.path}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()
