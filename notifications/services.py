"""Changes people make to notifications: webhooks, and replaying a delivery. Both audited."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from common.errors import ValidationFailed
from notifications import outbox, policies
from notifications.models import Delivery, Event, Webhook


@transaction.atomic
def webhook_save(*, actor: Any, webhook: Webhook) -> Webhook:
    policies.can_manage(actor).ensure()
    if not isinstance(webhook.events, list) or not all(isinstance(name, str) for name in webhook.events):
        raise ValidationFailed.on("events", "a list of event names")
    unknown = sorted(set(webhook.events) - set(Event.values))
    if unknown:
        raise ValidationFailed.on("events", f"unknown {', '.join(unknown)} (known: {', '.join(Event.values)})")
    if not webhook.url.startswith(("http://", "https://")):
        raise ValidationFailed.on("url", "http:// or https://")
    if "@" in urlsplit(webhook.url).netloc:
        raise ValidationFailed.on("url", "no user name or password in it: the HMAC secret authenticates Warden")
    created = webhook.pk is None
    webhook.save()
    audit_record(
        actor=actor,
        action="webhook.created" if created else "webhook.changed",
        obj=webhook,
        after={"name": webhook.name, "url": webhook.url, "events": webhook.events, "active": webhook.active},
    )
    return webhook


@transaction.atomic
def delivery_replay(*, actor: Any, delivery: Delivery, reason: str) -> Delivery:
    """Send a delivery again, as a new delivery (a new id, naming the one it repeats), so a
    receiver that deduplicates on the id still takes it."""
    policies.can_manage(actor).ensure()
    original = Delivery.objects.select_related("message").get(pk=delivery.pk)
    replay = Delivery.objects.create(
        message=original.message,
        channel=original.channel,
        address=original.address,
        webhook=original.webhook,
        replay_of=original,
        next_attempt_at=timezone.now(),
    )
    audit_record(
        actor=actor,
        action="notification.replayed",
        obj=replay,
        model_name=original.message.model_name,
        after={"replay_of": str(original.pk), "event": original.message.event, "channel": original.channel},
        reason=reason,
    )
    ids = [str(replay.pk)]
    transaction.on_commit(lambda: outbox.kick(ids), robust=True)
    return replay
