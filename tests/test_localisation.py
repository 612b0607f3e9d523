"""Localisation metrics against hand-made heatmaps and masks."""

from __future__ import annotations

import numpy as np
import pytest

from xai.audit import energy_inside, pointing_game
from xai.errors import XaiValueError


def test_pointing_game_by_hand():
    heat = np.zeros((3, 6, 8), np.float32)
    masks = np.zeros((3, 6, 8), bool)
    masks[:, 1:3, 5:7] = True  # the object, top right
    heat[0, 2, 6] = 1.0  # peak inside: hit
    heat[1, 5, 0] = 1.0  # peak far away: miss
    heat[1, 2, 6] = 0.5
    # image 2: all zero -> no evidence -> miss
    np.testing.assert_array_equal(pointing_game(heat, masks), [True, False, False])


def test_tolerance_dilates_the_mask():
    heat = np.zeros((1, 10, 10), np.float32)
    heat[0, 5, 8] = 1.0
    masks = np.zeros((1, 10, 10), bool)
    masks[0, 5, 5] = True
    assert not pointing_game(heat, masks, tolerance=2)[0]
    assert pointing_game(heat, masks, tolerance=3)[0]


def test_ties_count_when_any_peak_is_inside():
    heat = np.ones((1, 4, 4), np.float32)
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, 0] = True
    assert pointing_game(heat, masks)[0]


def test_energy_inside():
    heat = np.zeros((2, 4, 4), np.float32)
    heat[0, 0, 0] = 3.0
    heat[0, 3, 3] = 1.0
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2, :2] = True
    np.testing.assert_allclose(energy_inside(heat, masks), [0.75, 0.0])


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: pointing_game(np.zeros((4, 4)), np.zeros((4, 4), bool)),
            r"`heatmaps` must be an array \(N, H, W\)",
        ),
        (
            lambda: pointing_game(np.zeros((1, 4, 4)), np.zeros((1, 4, 5), bool)),
            r"`masks` must be boolean masks",
        ),
        (
            lambda: pointing_game(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), bool), tolerance=-1),
            r"`tolerance` must be an int >= 0",
        ),
    ],
)
def test_errors(call, match):
    with pytest.raises(XaiValueError, match=match):
        call()
