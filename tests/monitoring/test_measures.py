"""The measures against values computed by hand."""

from __future__ import annotations

import math

import pytest

from monitoring import measures


def test_relative_change_is_the_share_of_the_baseline():
    assert measures.relative_change(0.62 * 1.03, 0.62) == pytest.approx(0.03)
    assert measures.relative_change(90, 100) == pytest.approx(0.10)
    assert measures.relative_change(-5, -4) == pytest.approx(0.25)
    assert measures.relative_change(1, 0) is None
    # A change too large for a float is still a change, past any threshold.
    assert measures.relative_change(1e308, 1e-10) == measures.BEYOND_ANY_SCALE
    assert measures.relative_change(1e308, -1e308) == measures.BEYOND_ANY_SCALE
    assert measures.level(measures.relative_change(1e308, 1e-10), 10.0, 1e200) == "critical"
    assert measures.as_percent(0.031) == "3.10%"
    assert measures.as_percent(measures.BEYOND_ANY_SCALE) == "1e+302%"


def test_psi_by_hand():
    # shares: reference 0.25 / 0.25 / 0.5; observed 0.2 / 0.3 / 0.5
    # PSI = (0.2-0.25) ln(0.2/0.25) + (0.3-0.25) ln(0.3/0.25) + 0
    #     = (-0.05)(-0.223144) + (0.05)(0.182322) = 0.0111572 + 0.0091161 = 0.0202733
    assert measures.psi([25, 25, 50], [40, 60, 100]) == pytest.approx(0.0202733, abs=1e-6)
    assert measures.psi([1, 1], [1, 1]) == 0


def test_an_empty_bin_counts_as_the_floor_not_infinity():
    # reference 0.5 / 0.5, observed 1.0 / 0 (floored to 1e-4)
    expected = (1.0 - 0.5) * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert measures.psi([5, 5], [10, 0]) == pytest.approx(expected)


@pytest.mark.parametrize("reference, observed", [([1, 2], [1, 2, 3]), ([], []), ([0, 0], [1, 1]), ([1, 1], [0, 0])])
def test_psi_refuses_mismatched_or_empty_distributions(reference, observed):
    with pytest.raises(ValueError):
        measures.psi(reference, observed)


def test_levels_reach_a_threshold_despite_floating_point():
    change = measures.relative_change(0.58 * 0.97, 0.58)
    assert change is not None and change < 0.03  # 0.0299999… in binary
    assert measures.level(change, 0.03, 0.05) == "warn"
    assert measures.level(0.049, 0.03, 0.05) == "warn"
    assert measures.level(0.05, 0.03, 0.05) == "critical"
    assert measures.level(0.01, 0.03, 0.05) == "ok"
    assert measures.level(None, 0.03, 0.05) == "ok"
