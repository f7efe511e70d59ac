"""Point-in-time answers, read from the audit trail and the deployment records: what an alias
pointed to at a moment, what ran where, and the inventory (models, tiers, version states) as it
stood. The trail is append-only and hash-chained, so these answers are as good as the trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from django.db.models import CharField, F, Max, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.models import AuditEvent
from audit.selectors import model_scope
from common.errors import ValidationFailed
from governance.models import Deployment
from registry import policies as registry_policies
from registry.models import ModelVersion, RegisteredModel

TIER_ACTIONS = ("model.risk_tier_changed",)
STATE_ACTIONS = ("version.created", "version.state_changed")


def alias_at(model: RegisteredModel, alias: str, at: datetime) -> tuple[int | None, AuditEvent | None]:
    """The version number ``model@alias`` pointed to at ``at`` (None if none), and the event
    that set it there. An alias event names the model as it was called then: the events are this
    model's under each name it has had (``model_scope``), not another's that had its name."""
    event = (
        AuditEvent.objects.filter(model_scope(model.name), object_type="registry.alias", occurred_at__lte=at)
        .filter(object_id=Concat(F("model_name"), Value(f"@{alias}")))
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
    state then: the last event of each kind about each object, up to ``at``. Events are matched
    to models by the objects they are about (the model's id, its versions' ids), not by name: a
    model renamed keeps its past, and one given a freed name does not take another's."""
    visible = registry_policies.visible_models(user).filter(created_at__lte=at)
    models = list(visible.order_by("name").values_list("pk", "name"))
    as_text = Cast("pk", CharField())
    tier_events = AuditEvent.objects.filter(
        action__in=TIER_ACTIONS,
        object_type="registry.registeredmodel",
        object_id__in=visible.annotate(key=as_text).values("key"),
    )
    tiers = {int(event.object_id): (event.after or {})["risk_tier"] for event in _latest(tier_events, at)}
    versions = ModelVersion.objects.filter(model__in=visible.values("pk"))
    model_of = dict(versions.values_list("pk", "model_id"))
    state_events = AuditEvent.objects.filter(
        action__in=STATE_ACTIONS,
        object_type="registry.modelversion",
        object_id__in=versions.annotate(key=as_text).values("key"),
    )
    states: dict[int, dict[int, str]] = {pk: {} for pk, _ in models}
    for event in _latest(state_events, at):
        model_id = model_of.get(int(event.object_id))
        if model_id in states:  # else its version or model was committed while this was read
            after = event.after or {}
            states[model_id][after["number"]] = after["state"]
    return [
        InventoryRow(model=name, tier=tiers.get(pk), versions=dict(sorted(states[pk].items()))) for pk, name in models
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
