"""The measures, as plain functions of numbers (tested against hand-computed values).

Plain Python rather than NumPy: a distribution has tens of bins and a series is evaluated one
point at a time, where NumPy's per-call overhead costs more than the arithmetic."""

from __future__ import annotations

import math
from collections.abc import Sequence

# A bin empty on one side would make PSI infinite; it counts as this share instead.
PSI_FLOOR = 1e-4


def relative_change(value: float, baseline: float) -> float | None:
    """|value - baseline| / |baseline|; None when the baseline is zero or the change beyond any
    number (no scale to compare)."""
    if baseline == 0:
        return None
    change = abs(value - baseline) / abs(baseline)
    return change if math.isfinite(change) else None


def psi(reference: Sequence[float], observed: Sequence[float]) -> float:
    """Population stability index: Σ (o - r) · ln(o / r) over the bins' shares."""
    if len(reference) != len(observed) or not reference:
        raise ValueError("the reference and the observation need the same bins")
    ref_total, obs_total = float(sum(reference)), float(sum(observed))
    if ref_total <= 0 or obs_total <= 0:
        raise ValueError("a distribution needs a positive count")
    total = 0.0
    for r_count, o_count in zip(reference, observed, strict=True):
        r = max(r_count / ref_total, PSI_FLOOR)
        o = max(o_count / obs_total, PSI_FLOOR)
        total += (o - r) * math.log(o / r)
    return total


# A measure within this of a threshold has reached it: 0.97 of a baseline is a 3% change, even
# where binary floating point makes it 0.0299999….
TOLERANCE = 1e-9


def level(value: float | None, warn: float, critical: float) -> str:
    """ "critical", "warn" or "ok" for a measured value against its thresholds."""
    if value is None:
        return "ok"
    if value + TOLERANCE >= critical:
        return "critical"
    if value + TOLERANCE >= warn:
        return "warn"
    return "ok"
