"""The measures, as plain functions of numbers (tested against hand-computed values).

Plain Python rather than NumPy: a distribution has tens of bins and a series is evaluated one
point at a time, where NumPy's per-call overhead costs more than the arithmetic."""

from __future__ import annotations

import math
from collections.abc import Sequence

# A bin empty on one side would make PSI infinite; it counts as this share instead.
PSI_FLOOR = 1e-4


# A change too large for a float (1e308 against an approved 1e-10) counts as this: critical
# under any threshold, and still a number the audit trail can hold (JSON has no infinity).
BEYOND_ANY_SCALE = 1e300


def relative_change(value: float, baseline: float) -> float | None:
    """|value - baseline| / |baseline|; None when the baseline is zero (no scale to compare)."""
    if baseline == 0:
        return None
    change = abs(value - baseline) / abs(baseline)
    return change if change < BEYOND_ANY_SCALE else BEYOND_ANY_SCALE


def as_percent(share: float) -> str:
    """0.031 as "3.10%"; a share past a million percent in powers of ten ("1e+302%"), not in
    three hundred digits."""
    return f"{share:.2%}" if share < 1e4 else f"{share * 100:.3g}%"


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
