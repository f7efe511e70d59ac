from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from audit import policies
from audit.models import AuditEvent
from common.errors import ValidationFailed


def events_for(user: Any) -> QuerySet[AuditEvent]:
    return policies.visible_events(user, AuditEvent.objects.select_related(None))


def model_history(model_name: str) -> QuerySet[AuditEvent]:
    """Every event about one model, under each name it has had. The caller has checked the user
    may see the model."""
    return AuditEvent.objects.filter(model_scope(model_name))


def actor_scope(username: str) -> Q:
    """The events of the user called ``username`` now, by their id (a rename keeps their events,
    and whoever takes a freed name gets none of the old holder's); ``system`` without such a
    user: the events of no user (Warden's own work, commands run without a user)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is not None:
        return Q(actor_id=user.pk)
    if username == "system":
        return Q(actor_id__isnull=True)
    raise ValidationFailed.on("actor", f"there is no user {username!r}")


def model_scope(model_name: str) -> Q:
    """The events about the model called ``model_name`` now, under each name it has had: a name
    counts from the rename that freed it for this model (another model may have had it before)
    up to the rename that gave it up."""
    renames = AuditEvent.objects.filter(action="model.renamed")
    scope, name, upto = Q(), model_name, None
    while True:
        within = Q(seq__lt=upto) if upto else Q()
        freed = renames.filter(within, before__name=name).order_by("-seq").values_list("seq", flat=True).first()
        scope |= Q(within, model_name=name, seq__gt=freed or 0)
        into = renames.filter(within, model_name=name, seq__gt=freed or 0).order_by("-seq").first()
        if into is None:
            return scope
        name, upto = (into.before or {})["name"], into.seq
