"""Sending what the outbox holds. Each delivery is sent while its row is locked (``SKIP
LOCKED``), and only while it is pending and due, so the task kicked after the commit and the
periodic sweep never send the same delivery twice. Every try is logged as an ``Attempt``; a
failed one is tried again after a doubling backoff, up to ``NOTIFY_MAX_ATTEMPTS``.

Webhooks are signed: ``X-Warden-Signature: sha256=<hex>`` is HMAC-SHA256 with the webhook's
secret over ``<delivery id>.<timestamp>.<body>``, with the id and timestamp in
``X-Warden-Delivery`` and ``X-Warden-Timestamp``; ``docs/notifications.md`` shows a receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from notifications.models import Attempt, Channel, Delivery, DeliveryState

USER_AGENT = "Warden-Webhook/1"


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def deliver(delivery_id: Any) -> str | None:
    """Try one delivery if it is pending and due; returns its state afterwards, or None when
    another worker holds it or it is not due."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("message", "webhook")
            .filter(pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=timezone.now())
            .first()
        )
        if delivery is None:
            return None
        started = time.monotonic()
        ok, status, error = _send(delivery)
        delivery.attempts += 1
        Attempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            ok=ok,
            status_code=status,
            error=error[:2000],
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        now = timezone.now()
        if ok:
            delivery.state = DeliveryState.DELIVERED
            delivery.delivered_at = now
        elif delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
            delivery.state = DeliveryState.FAILED
        else:
            delivery.next_attempt_at = now + timedelta(
                seconds=settings.NOTIFY_BACKOFF_SECONDS * 2 ** (delivery.attempts - 1)
            )
        delivery.save(update_fields=["state", "attempts", "delivered_at", "next_attempt_at"])
        return delivery.state


def deliver_due(limit: int = 500) -> int:
    """Deliver up to ``limit`` pending deliveries that are due, oldest first; returns how many
    were delivered."""
    due = Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=timezone.now())
    ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    return sum(deliver(pk) == DeliveryState.DELIVERED for pk in ids)


def _send(delivery: Delivery) -> tuple[bool, int | None, str]:
    try:
        if delivery.channel == Channel.EMAIL:
            message = delivery.message
            send_mail(message.subject, message.body, None, [delivery.address])
            return True, None, ""
        return _post(delivery)
    except Exception as error:  # any failure is logged on the attempt and retried
        return False, None, f"{type(error).__name__}: {error}"


def _post(delivery: Delivery) -> tuple[bool, int | None, str]:
    webhook = delivery.webhook
    assert webhook is not None
    body = json.dumps(
        {
            "delivery": str(delivery.pk),
            "replay_of": str(delivery.replay_of_id or "") or None,
            **delivery.message.payload,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Warden-Event": delivery.message.event,
            "X-Warden-Delivery": str(delivery.pk),
            "X-Warden-Timestamp": timestamp,
            "X-Warden-Signature": sign(webhook.secret, str(delivery.pk), timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT) as response:
            return 200 <= response.status < 300, response.status, ""
    except urllib.error.HTTPError as error:
        return False, error.code, f"HTTP {error.code}: {error.reason}"
