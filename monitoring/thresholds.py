"""Which thresholds apply to a model: a risk officer's override for the model, else its tier's
published policy (``monitoring.thresholds``: ``{"relative_change": {"warn", "critical"},
"psi": {…}}``), else none (the measure is recorded, not judged). And how stale monitoring may
get: the policy's ``monitoring.stale_after_days``, else ``STALE_AFTER_DAYS`` by tier."""

from __future__ import annotations

from collections.abc import Iterable
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
    return for_models([model], measure)[model.pk]


def for_models(models: Iterable[RegisteredModel], measure: str) -> dict[int, Thresholds | None]:
    """``for_model`` of each of ``models``, by id: one query for their overrides (each model's
    newest) and one for each tier's published policy, however many models a batch spans."""
    by_id = {model.pk: model for model in models}
    overrides: dict[int, ThresholdOverride] = {}
    for row in ThresholdOverride.objects.filter(model__in=by_id, measure=measure):  # newest first
        overrides.setdefault(row.model_id, row)
    policies: dict[int, Thresholds | None] = {}
    found: dict[int, Thresholds | None] = {}
    for pk, model in by_id.items():
        newest = overrides.get(pk)
        if newest is not None:
            found[pk] = Thresholds(newest.warn, newest.critical, f"override #{newest.pk}")
        elif model.risk_tier is None:
            found[pk] = None
        else:
            if model.risk_tier not in policies:
                policies[model.risk_tier] = _of_policy(model.risk_tier, measure)
            found[pk] = policies[model.risk_tier]
    return found


def _of_policy(tier: int, measure: str) -> Thresholds | None:
    policy = selectors.published_policy(tier)
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
