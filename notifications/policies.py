"""Who manages webhooks and replays deliveries: superusers and risk officers."""

from __future__ import annotations

from typing import Any

from common.policy import ALLOW, Decision, deny
from common.roles import Role, has_role


def can_manage(user: Any) -> Decision:
    if getattr(user, "is_superuser", False) or has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny("Only risk officers and administrators manage webhooks and replay deliveries.")
