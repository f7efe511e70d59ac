"""Point-in-time answers, read from the audit trail and the deployment records: what an alias
pointed to at a moment, what ran where, and the inventory (models, tiers, version states) as it
stood. The trail is append-only and hash-chained, so these answers are as good as the trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from django.db.models import Max, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.models import AuditEvent
from common.errors import ValidationFailed
from governance.models import Deployment
from registry import policies as registry_policies
from registry.models import RegisteredModel

TIER_ACTIONS = ("model.risk_tier_changed",)
STATE_ACTIONS = ("version.created", "version.state_changed")


def alias_at(model: RegisteredModel, alias: str, at: datetime) -> tuple[int | None, AuditEvent | None]:
    """The version number ``model@alias`` pointed to at ``at`` (None if none), and the event
    that set it there."""
    event = (
        AuditEvent.objects.filter(object_type="registry.alias", object_id=f"{model.name}@{alias}", occurred_at__lte=at)
        .order_by("-seq")
        .first()
    )
    if event is None or event.action != "alias.set" or not event.after:
        return None, event
    return event.after["version"], event


def deployments_at(user: Any, at: datetime) -> QuerySet[Deployment]:
    """Deployments that were live at ``at``, of models the user may see."""
    return (
        Deployment.objects.filter(version__model__in=registry_policies.visible_models(user), deployed_at__lte=at)
        .filter(Q(retired_at=None) | Q(retired_at__gt=at))
        .select_related("version__model", "environment", "deployed_by")
        .order_by("environment__name", "version__model__name")
    )


@dataclass
class InventoryRow:
    model: str
    tier: int | None
    versions: dict[int, str]


def inventory_at(user: Any, at: datetime) -> list[InventoryRow]:
    """Every model the user may see that existed at ``at``, with its tier and each version's
    state then: the last event of each kind about each object, up to ``at``."""
    models = list(
        registry_policies.visible_models(user).filter(created_at__lte=at).order_by("name").values_list("pk", "name")
    )
    names = [name for _, name in models]
    tiers = {
        event.model_name: (event.after or {})["risk_tier"]
        for event in _latest(AuditEvent.objects.filter(action__in=TIER_ACTIONS, model_name__in=names), at)
    }
    states: dict[str, dict[int, str]] = {name: {} for name in names}
    for event in _latest(AuditEvent.objects.filter(action__in=STATE_ACTIONS, model_name__in=names), at):
        after = event.after or {}
        states[event.model_name][after["number"]] = after["state"]
    return [
        InventoryRow(model=name, tier=tiers.get(name), versions=dict(sorted(states[name].items()))) for name in names
    ]


def _latest(events: QuerySet[AuditEvent], at: datetime) -> QuerySet[AuditEvent]:
    """The last of ``events`` about each object, up to ``at``."""
    last = events.filter(occurred_at__lte=at).values("object_type", "object_id").annotate(last_seq=Max("seq"))
    return AuditEvent.objects.filter(seq__in=last.values("last_seq")).order_by("seq")


def moment(field: str, value: str) -> datetime:
    """An ISO 8601 time, or a date meaning the end of that day (in the site's time zone)."""
    try:
        parsed = parse_datetime(value) if "T" in value or " " in value else None
        if parsed is None:
            day = parse_date(value) if len(value) == 10 else None
            if day is None:
                raise ValueError
            parsed = datetime.combine(day, time.max)
        aware = timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed
        return aware.astimezone(UTC)  # as the database compares it
    except (ValueError, OverflowError):  # also a well-formed time that is none (25:00, 30 February)
        raise ValidationFailed.on(field, "an ISO 8601 time (2026-11-27T12:00:00Z) or date (2026-11-27)") from None
