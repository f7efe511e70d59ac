"""The outbox as its users see it: risk officers register webhooks, which receive signed POSTs
at a real local receiver; failed posts are retried with a doubling backoff until they succeed
or give up; a delivery is replayed (from the service or the admin) as a new delivery; emails
go through Django's mail; a change that rolls back tells no one; and a delivery is sent once.

Deliveries are sent by calling ``deliver_due`` (what the periodic sweep does), never by waiting
on the kick after the commit, which these tests' transactions never reach."""

from __future__ import annotations

import hashlib
import importlib
import socket
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from common.errors import PermissionDenied, ValidationFailed
from governance import services as governance
from notifications import delivery as delivery_module
from notifications import outbox
from notifications import services as notify
from notifications.delivery import deliver, deliver_due
from notifications.models import Attempt, Channel, Delivery, DeliveryState, Message, Webhook
from tests.factories import submitted
from tests.receiver import receiving

SECRET = "shared-with-the-receiver"


def hook(actor: Any, url: str, events: list[str] | None = None, name: str = "ci") -> Webhook:
    return notify.webhook_save(
        actor=actor, webhook=Webhook(name=name, url=url, secret=SECRET, events=events or ["version.submitted"])
    )


def webhook_delivery(event: str = "version.submitted") -> Delivery:
    return Delivery.objects.select_related("message").get(channel=Channel.WEBHOOK, message__event=event)


def attempts_of(delivery: Delivery) -> list[tuple[int, bool, int | None]]:
    return list(Attempt.objects.filter(delivery=delivery).order_by("number").values_list("number", "ok", "status_code"))


def closed_port_url() -> str:
    """A local URL nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --- webhooks ------------------------------------------------------------------------------


def test_a_webhook_receives_a_signed_post_for_a_submission(developer, owner, risk_officer):
    with receiving(SECRET) as receiver:
        webhook = hook(risk_officer, receiver.url)
        assert AuditEvent.objects.filter(action="webhook.created", object_id=str(webhook.pk)).exists()
        version, request = submitted(developer, owner, 4)
        delivery = webhook_delivery()
        assert (delivery.state, delivery.attempts, delivery.webhook_id) == (DeliveryState.PENDING, 0, webhook.pk)

        deliver_due()

        [post] = receiver.posts
    assert (post["delivery"], post["event"], post["signed"]) == (str(delivery.pk), "version.submitted", True)
    assert post["body"]["delivery"] == str(delivery.pk)
    assert post["body"]["replay_of"] is None
    assert (post["body"]["model"], post["body"]["version"], post["body"]["request"]) == (
        version.model.name,
        1,
        request.pk,
    )
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 1)
    assert delivery.delivered_at is not None
    assert attempts_of(delivery) == [(1, True, 204)]


def test_the_trail_keeps_a_webhook_address_without_its_path_or_query(risk_officer):
    url = "https://hooks.example.com/services/T0/B0/s3cr3t?token=abc"
    webhook = notify.webhook_save(actor=risk_officer, webhook=Webhook(name="chat", url=url))
    webhook.url = "https://hooks.example.com/services/T0/B0/n3w"
    notify.webhook_save(actor=risk_officer, webhook=webhook, fields=["url"])

    created, changed = AuditEvent.objects.filter(object_id=str(webhook.pk)).order_by("seq")
    assert created.after["url"] == "https://hooks.example.com/…"
    assert created.after["url_sha256"] == hashlib.sha256(url.encode()).hexdigest()
    assert changed.before["url_sha256"] != changed.after["url_sha256"]
    assert "s3cr3t" not in created.canonical and "n3w" not in changed.canonical and "abc" not in created.canonical


def test_switching_off_an_old_webhook_with_a_password_in_its_address_keeps_it_out_of_the_trail(risk_officer):
    """Addresses with a user name or password are refused now, but one saved before may remain."""
    webhook = Webhook.objects.create(name="old", url="https://bot:hunter2@hooks.example.com:8443/x", secret=SECRET)
    webhook.active = False
    notify.webhook_save(actor=risk_officer, webhook=webhook, fields=["active"])
    event = AuditEvent.objects.get(action="webhook.changed")
    assert event.after["url"] == "https://hooks.example.com:8443/…"
    assert "hunter2" not in event.canonical and "bot" not in event.canonical


def test_a_webhook_only_gets_the_events_it_asked_for(developer, owner, risk_officer):
    hook(risk_officer, "https://hooks.example.com/warden", events=["version.deployed"])
    submitted(developer, owner, 4)
    assert not Delivery.objects.filter(channel=Channel.WEBHOOK).exists()


def test_a_webhook_names_only_known_events(risk_officer):
    with pytest.raises(ValidationFailed) as refused:
        hook(risk_officer, "https://hooks.example.com/warden", events=["version.submitted", "version.exploded"])
    assert refused.value.fields["events"][0].startswith("unknown version.exploded (known: ")
    assert refused.value.message.startswith("events: unknown version.exploded")
    assert not Webhook.objects.exists()
    assert not AuditEvent.objects.filter(action="webhook.created").exists()


def test_a_webhook_url_with_a_user_name_or_password_is_refused(risk_officer):
    """urllib cannot send it (every try would fail), and the password would land in the log of
    each failed try; the HMAC secret is what authenticates Warden to the receiver."""
    with pytest.raises(ValidationFailed) as refused:
        hook(risk_officer, "https://bob:s3cr3t@hooks.example.com/warden")
    rule = "no user name or password in it: the HMAC secret authenticates Warden"
    assert refused.value.fields == {"url": [rule]}
    assert not Webhook.objects.exists()


INTERNAL = "an internal address: webhooks reach public ones and the networks NOTIFY_WEBHOOK_ALLOWED_NETWORKS names"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "http://10.0.0.5/admin",
        "http://localhost:5432/",
        "http://[::1]:6379/",
        "http://[::ffff:192.168.1.1]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64, to 169.254.169.254
        "http://[2002:a9fe:a9fe::1]/",  # 6to4, from 169.254.169.254
        "http://[::7f00:1]/",  # IPv4-compatible, 127.0.0.1
        "http://[fec0::1]/",  # site-local
    ],
)
def test_a_webhook_to_an_internal_address_is_refused_unless_its_network_is_allowed(risk_officer, settings, url):
    settings.NOTIFY_WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(ValidationFailed) as refused:
        hook(risk_officer, url)
    assert refused.value.fields == {"url": [INTERNAL]}
    settings.NOTIFY_WEBHOOK_ALLOWED_NETWORKS = [
        *("10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16"),
        *("::1/128", "::/96", "fec0::/10"),
    ]
    assert hook(risk_officer, url).url == url


def test_a_name_that_resolves_to_an_internal_address_is_not_connected_to(developer, owner, risk_officer, settings):
    """Checked where the delivery connects, as the name resolves then: here the network was
    allowed when the webhook was saved, and is no longer."""
    with receiving(SECRET) as receiver:
        hook(risk_officer, receiver.url.replace("127.0.0.1", "localhost"))
        submitted(developer, owner, 4)
        settings.NOTIFY_WEBHOOK_ALLOWED_NETWORKS = []
        deliver_due()
        assert receiver.posts == [] and receiver.refused == 0
    [attempt] = Attempt.objects.filter(delivery=webhook_delivery())
    assert (attempt.ok, attempt.status_code) == (False, None)
    assert "resolves to no address a webhook may reach" in attempt.error


def test_a_proxy_in_the_environment_is_not_used_to_reach_a_webhook(developer, owner, risk_officer, monkeypatch):
    """Through a proxy the address checked would be the proxy's; the POST goes straight to the receiver."""
    proxies = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
    with receiving(SECRET) as receiver:
        hook(risk_officer, receiver.url)
        submitted(developer, owner, 4)
        for name in proxies:
            monkeypatch.setenv(name, closed_port_url() if "no" not in name.lower() else "")
        importlib.reload(delivery_module)  # the opener is made as the process starts, in its environment
        try:
            deliver_due()
        finally:
            for name in proxies:
                monkeypatch.delenv(name)
            importlib.reload(delivery_module)
        assert receiver.events() == ["version.submitted"]


def test_a_webhook_whose_address_is_now_refused_can_still_be_switched_off(risk_officer, settings):
    settings.NOTIFY_WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    webhook = hook(risk_officer, "http://10.0.0.5/hook")  # allowed when it was saved
    settings.NOTIFY_WEBHOOK_ALLOWED_NETWORKS = []
    webhook.active = False
    notify.webhook_save(actor=risk_officer, webhook=webhook, fields=["active"])
    webhook.refresh_from_db()
    assert webhook.active is False
    webhook.url = "http://10.0.0.6/hook"
    with pytest.raises(ValidationFailed, match="url: an internal address"):
        notify.webhook_save(actor=risk_officer, webhook=webhook, fields=["url"])


@pytest.mark.parametrize("who", ["developer", "owner", "validator"])
def test_only_risk_officers_and_administrators_manage_webhooks(request, who):
    with pytest.raises(PermissionDenied) as refused:
        hook(request.getfixturevalue(who), "https://hooks.example.com/warden")
    assert refused.value.message == "Only risk officers and administrators manage webhooks and replay deliveries."
    assert not Webhook.objects.exists()


# --- retries -------------------------------------------------------------------------------


def test_a_failing_receiver_is_retried_with_a_doubling_backoff(developer, owner, risk_officer, settings):
    settings.NOTIFY_BACKOFF_SECONDS = 60
    with receiving(SECRET, fail_first=2) as receiver:
        hook(risk_officer, receiver.url)
        submitted(developer, owner, 4)
        delivery = webhook_delivery()

        deliver_due()  # refused (503)
        delivery.refresh_from_db()
        first = Attempt.objects.get(delivery=delivery)
        assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 1)
        assert timedelta(seconds=60) <= delivery.next_attempt_at - first.at < timedelta(seconds=62)
        assert (first.ok, first.status_code) == (False, 503)
        deliver_due()  # not due yet: nothing is tried
        delivery.refresh_from_db()
        assert delivery.attempts == 1

        second_try = delivery.next_attempt_at + timedelta(seconds=1)
        with time_machine.travel(second_try, tick=False):
            deliver_due()  # refused again; the wait doubles
            delivery.refresh_from_db()
            assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 2)
            assert delivery.next_attempt_at == second_try + timedelta(seconds=120)

        with time_machine.travel(second_try + timedelta(seconds=119), tick=False):
            assert deliver_due() == 0  # still not due
        with time_machine.travel(delivery.next_attempt_at, tick=False):
            assert deliver_due() == 1
        assert receiver.per_delivery() == {str(delivery.pk): 1}
        assert receiver.posts[0]["signed"] is True

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 3)
    assert attempts_of(delivery) == [(1, False, 503), (2, False, 503), (3, True, 204)]


def test_the_doubling_backoff_stops_at_a_day(developer, owner, risk_officer, settings):
    """Fifty attempts from thirty seconds would double past any date: the wait stops at a day,
    and the attempt is logged."""
    settings.NOTIFY_MAX_ATTEMPTS = 50
    hook(risk_officer, closed_port_url())
    submitted(developer, owner, 4)
    delivery = webhook_delivery()
    Delivery.objects.filter(pk=delivery.pk).update(attempts=33)

    deliver_due()

    delivery.refresh_from_db()
    last = Attempt.objects.get(delivery=delivery)
    assert (delivery.state, delivery.attempts, last.number) == (DeliveryState.PENDING, 34, 34)
    assert delivery.next_attempt_at - last.at == timedelta(days=1)


@pytest.mark.parametrize("succeeds", [True, False])
def test_a_try_that_outlasts_its_claim_is_logged_and_only_its_success_ends_the_delivery(
    developer, owner, risk_officer, succeeds
):
    """A receiver slower than the claim: the sweep claims the delivery again and tries it (and
    logs attempt 1, a failure) while the first try is still waiting. The first try, answered at
    last, logs attempt 2; a success ends the delivery, a failure leaves it to the new claimant."""
    hook(risk_officer, closed_port_url())
    submitted(developer, owner, 4)
    delivery = webhook_delivery()

    def slow_send(sending: Delivery) -> tuple[bool, int | None, str]:
        later = timezone.now() + timedelta(hours=1)  # the sweep's backoff after its failed try
        Delivery.objects.filter(pk=sending.pk).update(next_attempt_at=later, attempts=1)
        Attempt.objects.create(delivery=sending, number=1, at=timezone.now(), ok=False, error="its own", duration_ms=5)
        return (True, 204, "") if succeeds else (False, 503, "late refusal")

    with mock.patch("notifications.delivery._send", slow_send):
        deliver(delivery.pk)

    delivery.refresh_from_db()
    expected = (DeliveryState.DELIVERED, 2) if succeeds else (DeliveryState.PENDING, 1)
    assert (delivery.state, delivery.attempts) == expected
    assert attempts_of(delivery) == [(1, False, None), (2, succeeds, 204 if succeeds else 503)]


def test_an_unreachable_webhook_fails_after_the_last_attempt(developer, owner, risk_officer, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 2
    settings.NOTIFY_BACKOFF_SECONDS = 30
    hook(risk_officer, closed_port_url())
    submitted(developer, owner, 4)
    delivery = webhook_delivery()

    deliver_due()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 1)
    with time_machine.travel(delivery.next_attempt_at + timedelta(seconds=1), tick=False):
        deliver_due()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 2)
    tries = list(Attempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.ok, a.status_code) for a in tries] == [(1, False, None), (2, False, None)]
    assert all("refused" in a.error.lower() for a in tries), [a.error for a in tries]

    with time_machine.travel(delivery.next_attempt_at + timedelta(days=1), tick=False):
        deliver_due()  # a failed delivery is not tried again
    assert Attempt.objects.filter(delivery=delivery).count() == 2


# --- replay --------------------------------------------------------------------------------


def test_a_replay_is_a_new_delivery_naming_the_one_it_repeats(developer, owner, risk_officer):
    with receiving(SECRET) as receiver:
        hook(risk_officer, receiver.url)
        submitted(developer, owner, 4)
        original = webhook_delivery()
        deliver_due()

        replay = notify.delivery_replay(actor=risk_officer, delivery=original, reason="the receiver lost it")
        assert replay.pk != original.pk
        assert (replay.replay_of_id, replay.state, replay.message_id) == (
            original.pk,
            DeliveryState.PENDING,
            original.message_id,
        )
        event = AuditEvent.objects.get(action="notification.replayed")
        assert (event.object_id, event.actor_name, event.reason) == (str(replay.pk), "risk", "the receiver lost it")
        assert event.after == {"replay_of": str(original.pk), "event": "version.submitted", "channel": "webhook"}

        deliver_due()

        assert receiver.per_delivery() == {str(original.pk): 1, str(replay.pk): 1}
        again = receiver.posts[1]
    assert (again["delivery"], again["signed"], again["body"]["replay_of"]) == (str(replay.pk), True, str(original.pk))
    replay.refresh_from_db()
    assert replay.state == DeliveryState.DELIVERED


def test_only_risk_officers_replay(developer, owner, risk_officer):
    hook(risk_officer, "https://hooks.example.com/warden")
    submitted(developer, owner, 4)
    original = webhook_delivery()
    with pytest.raises(PermissionDenied):
        notify.delivery_replay(actor=owner, delivery=original, reason="again")
    assert not Delivery.objects.filter(replay_of=original).exists()
    assert not AuditEvent.objects.filter(action="notification.replayed").exists()


def test_the_admin_replays_the_selected_deliveries(developer, owner, risk_officer):
    hook(risk_officer, "https://hooks.example.com/warden")
    submitted(developer, owner, 4)
    original = webhook_delivery()
    Delivery.objects.filter(pk=original.pk).update(state=DeliveryState.FAILED)  # its tries ran out
    client = Client()
    client.force_login(risk_officer)

    response = client.post(
        "/admin/notifications/delivery/", {"action": "replay", "_selected_action": [str(original.pk)]}, follow=True
    )

    assert response.status_code == 200
    assert "1 delivery(ies) queued again." in [str(m) for m in response.context["messages"]]
    replay = Delivery.objects.get(replay_of=original)
    assert replay.pk != original.pk and replay.state == DeliveryState.PENDING
    assert AuditEvent.objects.get(action="notification.replayed").reason == "replayed from the admin"


def test_the_admin_replays_nothing_for_staff_who_do_not_manage_notifications(developer, owner, risk_officer, auditor):
    hook(risk_officer, "https://hooks.example.com/warden")
    submitted(developer, owner, 4)
    original = webhook_delivery()
    client = Client()
    client.force_login(auditor)

    response = client.post(
        "/admin/notifications/delivery/", {"action": "replay", "_selected_action": [str(original.pk)]}
    )

    assert response.status_code == 403
    assert not Delivery.objects.filter(replay_of=original).exists()


# --- the transaction -----------------------------------------------------------------------


def test_a_change_that_rolls_back_tells_no_one(owner, django_capture_on_commit_callbacks):
    messages, deliveries = Message.objects.count(), Delivery.objects.count()
    with (
        django_capture_on_commit_callbacks() as kicks,
        pytest.raises(RuntimeError, match="changed my mind"),
        transaction.atomic(),
    ):
        outbox.enqueue("finding.opened", subject="rolled back", payload={"model": "m"}, to=[owner])
        assert Message.objects.count() == messages + 1
        raise RuntimeError("changed my mind")
    assert (Message.objects.count(), Delivery.objects.count()) == (messages, deliveries)
    assert kicks == []


def test_a_change_that_commits_kicks_delivery_after_the_commit(owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as kicks, transaction.atomic():
        message = outbox.enqueue("finding.opened", subject="committed", payload={"model": "m"}, to=[owner])
        assert kicks == []  # not before the commit
    assert len(kicks) == 1
    assert list(message.deliveries.values_list("address", flat=True)) == ["owner@example.com"]


def test_enqueue_refuses_to_run_outside_a_transaction(owner):
    messages = Message.objects.count()
    with (
        mock.patch.object(transaction.get_connection(), "in_atomic_block", False),
        pytest.raises(RuntimeError, match="inside the transaction"),
    ):
        outbox.enqueue("finding.opened", subject="no", payload={}, to=[owner])
    assert Message.objects.count() == messages


# --- email and idempotency -----------------------------------------------------------------


def test_deliveries_to_people_are_sent_as_email(developer, owner, risk_officer):
    version, _ = submitted(developer, owner, 4)
    message = Message.objects.get(event="version.submitted", model_name=version.model.name)
    delivery = message.deliveries.get()
    assert (delivery.channel, delivery.address) == (Channel.EMAIL, "risk@example.com")
    mail.outbox.clear()

    assert deliver_due() >= 1

    sent = [m for m in mail.outbox if m.subject == message.subject]
    assert len(sent) == 1
    assert sent[0].to == ["risk@example.com"]
    assert version.model.name in sent[0].subject
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert attempts_of(delivery) == [(1, True, None)]


def test_a_deactivated_owner_is_not_emailed(developer, owner, risk_officer):
    owner_address = owner.email
    _, request = submitted(developer, owner, 4)
    owner.is_active = False
    owner.save(update_fields=["is_active"])

    governance.decision_record(actor=risk_officer, request=request, outcome="approve")

    message = Message.objects.get(event="request.approved")
    addresses = set(message.deliveries.values_list("address", flat=True))
    assert owner_address not in addresses and addresses, addresses


def test_a_delivered_delivery_is_never_sent_again(developer, owner, risk_officer):
    with receiving(SECRET) as receiver:
        hook(risk_officer, receiver.url)
        submitted(developer, owner, 4)
        deliver_due()
        email = Delivery.objects.get(channel=Channel.EMAIL, message__event="version.submitted")
        webhook = webhook_delivery()
        sent, attempts = len(mail.outbox), Attempt.objects.count()

        assert deliver(email.pk) is None
        assert deliver(webhook.pk) is None
        assert deliver_due() == 0

        assert len(receiver.posts) == 1
    assert len(mail.outbox) == sent
    assert Attempt.objects.count() == attempts
