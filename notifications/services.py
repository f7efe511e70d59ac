"""Changes people make to notifications: webhooks, and replaying a delivery. Both audited."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from common.errors import Conflict, ValidationFailed
from notifications import outbox, policies
from notifications.delivery import reachable
from notifications.models import Delivery, DeliveryState, Event, Webhook

# What a webhook's audit events record; the secret stays out of the trail.
SHOWN = ("name", "url", "events", "active", "include_restricted")


def _shown(webhook: Webhook) -> dict[str, Any]:
    return {name: getattr(webhook, name) for name in SHOWN}


def _recorded(shown: dict[str, Any] | None) -> dict[str, Any] | None:
    """A webhook as its audit events hold it. The trail is immutable and goes to auditors, and
    many receivers put their credential in the address (``hooks.slack.com/services/…``), so the
    address is kept as its scheme, host and port, with the SHA-256 of the whole of it but a user
    name or password (which a hash would let one guess): enough to tell that it changed, and to
    confirm it against an address one already holds."""
    if shown is None:
        return None
    url = urlsplit(shown["url"])
    host = f"[{url.hostname}]" if ":" in (url.hostname or "") else url.hostname or ""
    try:
        port = f":{url.port}" if url.port else ""
    except ValueError:  # not a port: left out with the rest
        port = ""
    return shown | {
        "url": f"{url.scheme}://{host}{port}/…",  # and no user name or password
        "url_sha256": hashlib.sha256(url._replace(netloc=url.netloc.rpartition("@")[2]).geturl().encode()).hexdigest(),
    }


@transaction.atomic
def webhook_save(*, actor: Any, webhook: Webhook, fields: Iterable[str] | None = None) -> Webhook:
    """Create ``webhook``, or change an existing one: only ``fields`` of it (all, if None),
    on its row as it stands now, so a page opened before someone else's change does not undo
    it. The event records the webhook before and after."""
    policies.can_manage(actor).ensure()
    if webhook.pk is None:
        before, saved = None, webhook
    else:
        saved = Webhook.objects.select_for_update().get(pk=webhook.pk)
        before = _shown(saved)
        for name in SHOWN if fields is None else set(fields) & set(SHOWN):
            setattr(saved, name, getattr(webhook, name))
    # What is set now is checked; what is kept as it was is not, so an old webhook whose address
    # a later rule refuses can still be switched off.
    if before is None or saved.events != before["events"]:
        _check_events(saved.events)
    if before is None or saved.url != before["url"]:
        _check_url(saved.url)
    if before == _shown(saved):
        return saved
    saved.save()
    audit_record(
        actor=actor,
        action="webhook.created" if before is None else "webhook.changed",
        obj=saved,
        before=_recorded(before),
        after=_recorded(_shown(saved)),
    )
    return saved


def _check_events(events: Any) -> None:
    if not isinstance(events, list) or not all(isinstance(name, str) for name in events):
        raise ValidationFailed.on("events", "a list of event names")
    unknown = sorted(set(events) - set(Event.values))
    if unknown:
        raise ValidationFailed.on("events", f"unknown {', '.join(unknown)} (known: {', '.join(Event.values)})")


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValidationFailed.on("url", "http:// or https://")
    if "@" in urlsplit(url).netloc:
        raise ValidationFailed.on("url", "no user name or password in it: the HMAC secret authenticates Warden")
    if not _may_reach(urlsplit(url).hostname or ""):
        raise ValidationFailed.on(
            "url",
            "an internal address: webhooks reach public ones and the networks NOTIFY_WEBHOOK_ALLOWED_NETWORKS names",
        )


def _may_reach(host: str) -> bool:
    """A host given as an address (or as ``localhost``) is checked when the webhook is saved;
    a name is checked as it resolves, each time a delivery connects (``reachable``)."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        return reachable(host)
    except ValueError:  # a name
        return True


@transaction.atomic
def delivery_replay(*, actor: Any, delivery: Delivery, reason: str) -> Delivery:
    """Send a delivery again, as a new delivery (a new id, naming the one it repeats), so a
    receiver that deduplicates on the id still takes it."""
    policies.can_manage(actor).ensure()
    original = Delivery.objects.select_related("message", "webhook").get(pk=delivery.pk)
    if original.state == DeliveryState.PENDING:
        raise Conflict(f"Delivery {original.pk} is still pending: it will be tried again, under its own id.")
    if original.webhook is not None and not original.webhook.active:
        raise Conflict(f"Webhook {original.webhook.name} is inactive: activate it before sending to it again.")
    if original.webhook is not None and not policies.may_resend(original.webhook, original.message):
        raise Conflict(
            f"Webhook {original.webhook.name} no longer takes events about restricted models such as "
            f"{original.message.model_name}."
        )
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
