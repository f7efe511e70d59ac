"""Checks other apps add to registry writes. The registry does not depend on governance;
governance plugs its deployment gate in here (``GovernanceConfig.ready``), so a protected alias
moves only to a version the gate lets through, whichever interface asks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Each is called as check(actor=…, version=…, alias=…) before an alias moves, and raises to refuse.
ALIAS_CHECKS: list[Callable[..., None]] = []

# Each is called as check(model=…, team=…) before a model (locked) moves to another team, and
# raises to refuse (governance: not while requests put to people chosen against its team are open).
TEAM_CHECKS: list[Callable[..., None]] = []

# Admin actions other apps add to the model versions' list (governance's suspension), each a
# Django admin action: fn(modeladmin, request, queryset), with a ``short_description``.
VERSION_ADMIN_ACTIONS: list[Callable[..., Any]] = []
