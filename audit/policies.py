"""Who reads the trail. Oversight roles (governance, auditors, superusers) read all of it;
everyone else reads their own actions. A model's history is also shown to whoever may see
the model, through the registry's API."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from common.policy import ALLOW, Decision, deny
from common.roles import Role, has_oversight, has_role


def visible_events(user: Any, queryset: QuerySet) -> QuerySet:
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    if has_oversight(user):
        return queryset
    return queryset.filter(actor=user)


def can_export(user: Any) -> Decision:
    """Exports carry the whole trail out of Warden: auditors and administrators only."""
    if getattr(user, "is_active", False) and (getattr(user, "is_superuser", False) or has_role(user, Role.AUDITOR)):
        return ALLOW
    return deny("Only auditors and administrators can export the audit trail.")
