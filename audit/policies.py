"""Who reads the trail. Oversight roles (governance, auditors, superusers) read all of it;
everyone else reads their own actions. A model's history is also shown to whoever may see
the model, through the registry's API."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from common.roles import has_oversight


def visible_events(user: Any, queryset: QuerySet) -> QuerySet:
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    if has_oversight(user):
        return queryset
    return queryset.filter(actor=user)
