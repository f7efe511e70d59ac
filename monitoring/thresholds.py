"""Which thresholds apply to a model: a risk officer's override for the model, else its tier's
published policy (``monitoring.thresholds``: ``{"relative_change": {"warn", "critical"},
"psi": {…}}``), else none (the measure is recorded, not judged). And how stale monitoring may
get: the policy's ``monitoring.stale_after_days``, else ``STALE_AFTER_DAYS`` by tier."""

from __future__ import annotations

from dataclasses import dataclass

from governance import selectors
from monitoring.models import ThresholdOverride
from registry.models import RegisteredModel

STALE_AFTER_DAYS = {1: 2, 2: 7, 3: 30, 4: None}


@dataclass(frozen=True)
class Thresholds:
    warn: float
    critical: float
    source: str  # "override #id" or "T1 policy v3"


def for_model(model: RegisteredModel, measure: str) -> Thresholds | None:
    override = ThresholdOverride.objects.filter(model=model, measure=measure).first()
    if override is not None:
        return Thresholds(override.warn, override.critical, f"override #{override.pk}")
    if model.risk_tier is None:
        return None
    policy = selectors.published_policy(model.risk_tier)
    limits = (policy.monitoring if policy else {}).get("thresholds", {}).get(measure)
    if not limits:
        return None
    assert policy is not None
    return Thresholds(float(limits["warn"]), float(limits["critical"]), f"T{policy.tier} policy v{policy.version}")


def stale_after_days(model: RegisteredModel) -> int | None:
    if model.risk_tier is None:
        return None
    policy = selectors.published_policy(model.risk_tier)
    days = (policy.monitoring if policy else {}).get("stale_after_days")
    return int(days) if days else STALE_AFTER_DAYS.get(model.risk_tier)
