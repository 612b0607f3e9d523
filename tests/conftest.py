"""Shared fixtures: tiny seeded models, built once per session (TensorFlow tracing is slow)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from xai import testing  # noqa: E402


@pytest.fixture(scope="session")
def cnn():
    return testing.functional_cnn()


@pytest.fixture(scope="session")
def seq_cnn():
    return testing.sequential_cnn()


@pytest.fixture(scope="session")
def nested():
    return testing.nested_backbone(kind="functional")


@pytest.fixture(scope="session")
def cnn1d():
    return testing.conv1d_model()


@pytest.fixture(scope="session")
def images():
    return testing.random_images(8, seed=1)


@pytest.fixture(scope="session")
def images_uint8():
    return testing.random_images(8, seed=2, dtype="uint8")


def pytest_collection_modifyitems(config, items):
    """Run the slow tests last so a failing fast test shows up early."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
