"""The embedded mode: without Redis, `manage.py serve` (what `make run` starts) runs beat's
schedule in its own process, so a notification waiting in the outbox is delivered with no
worker and no broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from notifications.models import Channel, Delivery, DeliveryState, Message, Webhook
from tests.notifications.test_worker import database_url, free_port, wait_until
from tests.receiver import receiving

pytestmark = pytest.mark.django_db(transaction=True)


def test_serve_without_redis_delivers_what_the_outbox_holds() -> None:
    with receiving() as receiver:
        with transaction.atomic():  # as a write whose kick never reached a worker leaves it
            webhook = Webhook.objects.create(name="embedded", url=receiver.url)
            receiver.secret = webhook.secret
            message = Message.objects.create(
                event="version.deployed", subject="churn v1 deployed", payload={"event": "version.deployed"}
            )
            delivery = Delivery.objects.create(
                message=message, channel=Channel.WEBHOOK, webhook=webhook, next_attempt_at=timezone.now()
            )
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": "",
            "NOTIFY_SWEEP_SECONDS": "1",
            "NOTIFY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", f"127.0.0.1:{port}"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert wait_until(lambda: receiver.posts, timeout=60), "serve did not deliver"
            assert _get(f"http://127.0.0.1:{port}/healthz") == 200
        finally:
            server.terminate()
            output = server.communicate(timeout=30)[0].decode()
    assert "Embedded mode (no REDIS_URL)" in output
    assert receiver.per_delivery() == {str(delivery.pk): 1}
    assert receiver.posts[0]["signed"]
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED


def _get(url: str) -> Any:
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except OSError:
            time.sleep(0.2)
    return None
