"""Who hears of what: restricted models reach only those who may see them, by email and by
webhook; each step of a request tells its own deciders; a deactivated webhook is sent nothing
more; a subject quoting a reason of several lines still goes out. Deliveries are sent by
calling ``deliver_due``, as the periodic sweep does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from common.errors import Conflict, ValidationFailed
from governance import services as governance
from notifications import services as notify
from notifications.delivery import deliver_due
from notifications.models import Attempt, Channel, Delivery, DeliveryState, Message, Webhook
from registry import services as registry
from tests.factories import approved, assessed_model, make_version, submitted
from tests.receiver import receiving

SECRET = "shared-with-the-receiver"


def emailed(event: str) -> set[str]:
    return set(Delivery.objects.filter(message__event=event, channel=Channel.EMAIL).values_list("address", flat=True))


def test_a_suspension_whose_reason_has_line_breaks_is_emailed_on_one_subject_line(developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    deliver_due()  # what the approval told
    mail.outbox.clear()

    governance.version_suspend(actor=risk_officer, version=version, reason="PSI 0.31 on income\nsince 2 December")
    deliver_due()

    deliveries = Delivery.objects.filter(message__event="version.suspended", channel=Channel.EMAIL)
    assert {d.state for d in deliveries} == {DeliveryState.DELIVERED}
    subject = f"Version 1 of {version.model.name} is suspended: PSI 0.31 on income since 2 December"
    assert {m.subject for m in mail.outbox} == {subject}
    assert {m.to[0] for m in mail.outbox} == {"owner@example.com", "dev@example.com", "risk@example.com"}


def test_a_webhook_hears_of_restricted_models_only_when_it_includes_them(developer, owner, risk_officer):
    with receiving(SECRET) as receiver:
        notify.webhook_save(actor=risk_officer, webhook=Webhook(name="chat", url=receiver.url, secret=SECRET))
        notify.webhook_save(
            actor=risk_officer,
            webhook=Webhook(name="grc", url=receiver.url, secret=SECRET, include_restricted=True),
        )
        open_model = make_version(developer, assessed_model(owner, 4, name="open-model"))
        secret_model = make_version(developer, assessed_model(owner, 4, name="secret-model", restricted=True))
        for version in (open_model, secret_model):
            governance.request_submit(actor=owner, version=version, rationale="ready")

        deliver_due()

        told = sorted((post["body"]["model"], post["body"]["event"]) for post in receiver.posts)
    posts = Delivery.objects.filter(channel=Channel.WEBHOOK).values_list("webhook__name", "message__model_name")
    assert sorted(posts) == [("chat", "open-model"), ("grc", "open-model"), ("grc", "secret-model")]
    assert told == [
        ("open-model", "version.submitted"),
        ("open-model", "version.submitted"),
        ("secret-model", "version.submitted"),
    ]


def test_no_one_is_emailed_about_a_restricted_model_they_may_not_see(developer, owner, risk_officer):
    """The model's owner moved to another team: told of an open model, not of a restricted one."""
    version, _ = approved(developer, owner, risk_officer)
    secret, _ = approved(developer, owner, risk_officer)
    registry.model_update(actor=owner, model=secret.model, changes={"restricted": True})
    owner.groups.remove(Group.objects.get(name="credit-risk"))

    for v in (version, secret):
        governance.version_suspend(actor=risk_officer, version=v, reason="drift")

    told = dict(Message.objects.filter(event="version.suspended").values_list("model_name", "pk"))
    assert emailed("version.suspended") == {"owner@example.com", "dev@example.com", "risk@example.com"}
    assert set(Delivery.objects.filter(message_id=told[secret.model.name]).values_list("address", flat=True)) == {
        "dev@example.com",
        "risk@example.com",
    }


def test_a_finding_or_condition_owner_must_be_able_to_see_the_model(
    developer, owner, outsider, validator, risk_officer
):
    model = assessed_model(owner, 2, restricted=True)
    version = make_version(developer, model)
    request = governance.request_submit(actor=owner, version=version, rationale="ready")
    due = timezone.localdate() + timedelta(days=30)

    with pytest.raises(ValidationFailed) as refused:
        governance.finding_raise(
            actor=risk_officer, model=model, title="Leak", severity="high", owner=outsider, due_date=due
        )
    assert refused.value.fields == {"owner": [f"outsider cannot see {model.name}, so cannot act on it."]}

    governance.validator_assign(actor=risk_officer, validator=validator, team=model.team)
    with pytest.raises(ValidationFailed) as refused:
        governance.decision_record(
            actor=validator,
            request=request,
            outcome="approve_with_conditions",
            comment="fine, with a report",
            conditions=[governance.ConditionIn("Report PSI monthly", outsider, due)],
        )
    assert refused.value.fields == {"conditions[0].owner": [f"outsider cannot see {model.name}, so cannot act on it."]}
    assert not Message.objects.filter(event="finding.opened").exists()
    assert not request.decisions.exists()


def test_each_step_of_a_request_tells_its_own_deciders(developer, owner, assigned_validator, risk_officer):
    version, request = submitted(developer, owner, 2)
    assert emailed("version.submitted") == {"validator@example.com"}
    assert not Message.objects.filter(event="request.step_opened").exists()

    governance.decision_record(actor=assigned_validator, request=request, outcome="approve")

    message = Message.objects.get(event="request.step_opened")
    assert (
        message.subject == f"Request #{request.pk} (release of version 1 of {version.model.name}) awaits Risk officers"
    )
    assert emailed("request.step_opened") == {"risk@example.com"}


def test_a_tier_change_tells_the_risk_officers_it_awaits(owner, risk_officer, risk_officer_2):
    model = assessed_model(owner, 4)
    request = governance.tier_override_request(
        actor=risk_officer, model=model, tier=3, rationale="more use than scored"
    )

    assert Message.objects.get(event="request.submitted").subject.startswith(f"Request #{request.pk} (tier change")
    assert emailed("request.submitted") == {"risk2@example.com"}


def test_a_deactivated_webhook_is_sent_nothing_more_and_cannot_be_replayed_to(developer, owner, risk_officer):
    with receiving(SECRET, fail_first=1) as receiver:
        webhook = notify.webhook_save(actor=risk_officer, webhook=Webhook(name="ci", url=receiver.url, secret=SECRET))
        submitted(developer, owner, 4)
        deliver_due()  # the first try fails; the delivery waits for its retry
        [delivery] = Delivery.objects.filter(channel=Channel.WEBHOOK)
        webhook.active = False
        notify.webhook_save(actor=risk_officer, webhook=webhook, fields=["active"])

        with pytest.raises(Conflict, match="still pending"):
            notify.delivery_replay(actor=risk_officer, delivery=delivery, reason="again")
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        deliver_due()

        delivery.refresh_from_db()
        assert (delivery.state, receiver.refused, receiver.posts) == (DeliveryState.FAILED, 1, [])
        assert Attempt.objects.filter(delivery=delivery).latest("number").error == "the webhook is inactive"
        with pytest.raises(Conflict, match="Webhook ci is inactive"):
            notify.delivery_replay(actor=risk_officer, delivery=delivery, reason="again")
    assert not Delivery.objects.filter(replay_of=delivery).exists()


def test_a_webhook_page_opened_before_another_change_saves_only_what_its_user_changed(risk_officer, risk_officer_2):
    webhook = notify.webhook_save(
        actor=risk_officer, webhook=Webhook(name="ci", url="https://hooks.example.com/a", events=["version.submitted"])
    )
    page = Client()
    page.force_login(risk_officer_2)
    url = f"/admin/notifications/webhook/{webhook.pk}/change/"
    form = page.get(url).context["adminform"].form
    shown = {name: form[name].value() for name in form.fields}
    assert "secret" not in form.fields  # read-only on the page, never posted

    webhook.active = False  # someone else turns it off meanwhile
    notify.webhook_save(actor=risk_officer, webhook=webhook, fields=["active"])
    posted = {
        **{k: v for k, v in shown.items() if v not in (False, None)},
        "events": '["version.submitted", "decommissioned"]',
    }
    posted.update({f"initial-{k}": v for k, v in shown.items() if v not in (False, None)})
    response = page.post(url, posted)

    assert response.status_code == 302, response.content
    webhook.refresh_from_db()
    assert (webhook.active, webhook.events) == (False, ["version.submitted", "decommissioned"])
    event = AuditEvent.objects.filter(action="webhook.changed").latest("seq")
    assert event.before["events"] == ["version.submitted"] and event.before["active"] is False
    assert (event.after["events"], event.after["active"]) == (["version.submitted", "decommissioned"], False)


def test_the_add_page_shows_no_secret_and_the_saved_webhook_has_one(risk_officer):
    page = Client()
    page.force_login(risk_officer)
    added = page.get("/admin/notifications/webhook/add/")
    assert "secret" not in added.context["adminform"].form.fields
    assert b"Secret" not in added.content

    page.post(
        "/admin/notifications/webhook/add/",
        {"name": "ci", "url": "https://hooks.example.com/a", "events": "[]", "active": "on"},
    )
    webhook = Webhook.objects.get(name="ci")
    assert len(webhook.secret) >= 40
    assert webhook.secret.encode() in page.get(f"/admin/notifications/webhook/{webhook.pk}/change/").content


def test_a_model_restricted_since_is_not_sent_again_to_a_webhook_that_leaves_them_out(developer, owner, risk_officer):
    with receiving(SECRET, fail_first=1) as receiver:
        notify.webhook_save(actor=risk_officer, webhook=Webhook(name="chat", url=receiver.url, secret=SECRET))
        version, _ = submitted(developer, owner, 4)
        deliver_due()  # the first try fails
        [delivery] = Delivery.objects.filter(channel=Channel.WEBHOOK)
        registry.model_update(actor=owner, model=version.model, changes={"restricted": True})
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        deliver_due()

        delivery.refresh_from_db()
        assert (delivery.state, receiver.posts) == (DeliveryState.FAILED, [])
        error = Attempt.objects.filter(delivery=delivery).latest("number").error
        assert error == "the webhook no longer takes events about this model (restricted)"
        with pytest.raises(Conflict, match="no longer takes events about restricted models"):
            notify.delivery_replay(actor=risk_officer, delivery=delivery, reason="again")
