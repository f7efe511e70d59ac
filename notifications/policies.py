"""Who manages webhooks and replays deliveries, and who is told of what."""

from __future__ import annotations

from typing import Any

from common.policy import ALLOW, Decision, deny
from common.roles import Role, has_role
from registry import policies as registry_policies
from registry.models import RegisteredModel


def can_manage(user: Any) -> Decision:
    if getattr(user, "is_superuser", False) or has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny("Only risk officers and administrators manage webhooks and replay deliveries.")


def may_email(user: Any, model: Any | None) -> bool:
    """An email goes to an active user with an address who may see the model it is about."""
    return (
        user is not None
        and user.is_active
        and bool(user.email.strip())
        and (model is None or bool(registry_policies.can_view_model(user, model)))
    )


def may_post(webhook: Any, event: str, model: Any | None) -> bool:
    """A webhook gets the events it lists (all, if none), while active; events about a
    restricted model only if it is marked to include them, since whoever reads the receiver
    (a chat channel, a ticket queue) is not known to Warden."""
    return (
        webhook.active
        and (not webhook.events or event in webhook.events)
        and (model is None or not model.restricted or webhook.include_restricted)
    )


def may_resend(webhook: Any, message: Any) -> bool:
    """A retry or a replay to a webhook goes only while ``may_post`` would still send it the
    message's model as it is now (restricted since, or the webhook no longer including them)."""
    model = RegisteredModel.objects.filter(name=message.model_name).first() if message.model_name else None
    return may_post(webhook, message.event, model)
