"""Checks other apps add to registry writes. The registry does not depend on governance;
governance plugs its deployment gate in here (``GovernanceConfig.ready``), so a protected alias
moves only to a version the gate lets through, whichever interface asks."""

from __future__ import annotations

from collections.abc import Callable

# Each is called as check(actor=…, version=…, alias=…) before an alias moves, and raises to refuse.
ALIAS_CHECKS: list[Callable[..., None]] = []
