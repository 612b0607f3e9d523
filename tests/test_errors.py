"""Bad input: every validation path, with the exact message (what was received, what was
expected)."""

from __future__ import annotations

import numpy as np
import pytest

import xai
from xai import testing
from xai.errors import ModelStructureError, XaiTypeError, XaiValueError

IMG = testing.random_images(2)
NAN = IMG.copy()
NAN[0, 0, 0, 0] = np.nan
INF = IMG.copy()
INF[1, 3, 3, 2] = np.inf


@pytest.fixture(scope="module")
def model():
    return testing.functional_cnn()


ROWS = [
    # (kwargs for explain, exception, message regex)
    (
        {"images": IMG[0, 0]},
        XaiValueError,
        r"`images` must be one sample of shape \(16, 16, 3\) or a batch \(N, 16, 16, 3\)\. "
        r"Received: images=array of shape \(16, 3\)",
    ),
    ({"images": IMG[None]}, XaiValueError, r"Received: images=array of shape \(1, 2, 16, 16, 3\)"),
    (
        {"images": IMG[..., :1]},
        XaiValueError,
        r"its channel count is 1, expected 3.*Convert grayscale",
    ),
    (
        {"images": np.zeros((2, 15, 16, 3))},
        XaiValueError,
        r"size of axis 1 is 15, expected 16.*Resize",
    ),
    ({"images": NAN}, XaiValueError, r"`images` must be finite \(no NaN or Inf\).*1 non-finite"),
    ({"images": INF}, XaiValueError, r"finite \(no NaN or Inf\)"),
    ({"images": np.array([["a"]])}, XaiTypeError, r"`images` must be a numeric array"),
    ({"images": IMG[:0]}, XaiValueError, r"at least one sample"),
    (
        {"targets": 4},
        XaiValueError,
        r"`targets` must be class indices in \[0, 3\] \(the model has 4 classes\)\. "
        r"Received: targets=4",
    ),
    ({"targets": -2}, XaiValueError, r"class indices in \[0, 3\]"),
    (
        {"targets": [0, 1, 2]},
        XaiValueError,
        r"one class index per image \(2 images\).*Pass 2 indices",
    ),
    ({"targets": [[0], [1]]}, XaiTypeError, r"1-D sequence of ints"),
    ({"targets": True}, XaiTypeError, r"not a bool"),
    ({"targets": "top"}, XaiValueError, r"'predicted'"),
    (
        {"targets": lambda z: z},
        XaiValueError,
        r"callable must return one score per sample, shape \(batch,\)",
    ),
    (
        {"method": "gradcm"},
        XaiValueError,
        r"registered methods\. Received: method='gradcm'\. Did you mean 'gradcam'",
    ),
    ({"method": 3}, XaiTypeError, r"`method` must be a method name"),
    (
        {"layer": "last_cnv"},
        ModelStructureError,
        r"Received: layer='last_cnv'\. Did you mean 'last_conv'",
    ),
    ({"layer": 3}, XaiTypeError, r"`layer` must be a layer name"),
    ({"batch_size": 0}, XaiValueError, r"`batch_size` must be a positive int"),
    ({"seed": 1.5, "method": "smoothgrad"}, XaiTypeError, r"`seed` must be an int or None"),
    (
        {"method": "smoothgrad", "num_samples": 0},
        XaiValueError,
        r"`num_samples` must be a positive int",
    ),
    (
        {"method": "smoothgrad", "noise_level": -0.1},
        XaiValueError,
        r"`noise_level` must be a finite float >= 0",
    ),
    (
        {"method": "smoothgrad", "aggregate": "median"},
        XaiValueError,
        r"`aggregate` must be one of 'mean', 'mean_squared', 'variance'",
    ),
    (
        {"method": "gradcam", "num_samples": 3},
        XaiValueError,
        r"Method 'gradcam' does not take parameter\(s\) \['num_samples'\]\. "
        r"It takes no extra parameters",
    ),
    ({"method": "smoothgrad", "num_sample": 3}, XaiValueError, r"Did you mean 'num_samples'"),
    ({"jit_compile": "yes"}, XaiValueError, r"`jit_compile` must be 'auto', True or False"),
    ({"preprocess": lambda b: b[:, :8]}, XaiValueError, r"size of axis 1 is 8, expected 16"),
]


@pytest.mark.parametrize("kwargs, exc, match", ROWS, ids=[str(i) for i in range(len(ROWS))])
def test_bad_input(model, kwargs, exc, match):
    kwargs = dict(kwargs)
    images = kwargs.pop("images", IMG)
    with pytest.raises(exc, match=match):
        xai.explain(model, images, **kwargs)


def test_errors_are_value_and_type_errors():
    assert issubclass(XaiValueError, ValueError) and issubclass(XaiTypeError, TypeError)
    assert issubclass(ModelStructureError, ValueError)


def test_cam_without_spatial_layer_but_saliency_works():
    model = testing.mlp()
    x = testing.random_images(3, (8,))
    with pytest.raises(
        ModelStructureError,
        match=r"CAM methods need a layer with spatial output.*method='saliency'",
    ):
        xai.explain(model, x, "gradcam")
    e = xai.explain(model, x, "saliency")
    assert e.attributions.shape == (3, 8) and e.heatmap.shape == (3, 8)


def test_subclassed_model():
    with pytest.raises(
        ModelStructureError,
        match=(
            r"subclassed keras.Model \(SubclassedNet\) with a custom call\(\): "
            r"it has no layer graph"
        ),
    ):
        xai.explain(testing.subclassed_model(), IMG)


def test_multi_input_needs_a_list():
    model = testing.two_input_model()
    with pytest.raises(
        XaiValueError, match=r"a list with one array per model input \(2 inputs: left, right\)"
    ):
        xai.explain(model, IMG)
    with pytest.raises(ModelStructureError, match=r"combine several model inputs"):
        xai.explain(model, [IMG, testing.random_images(2, (12, 12, 1))], "gradcam", layer="concat")
