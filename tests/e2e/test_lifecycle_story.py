"""A version's whole life, as a CI/CD pipeline and the people around it see it: approved,
deployed to production, `production` moved to it, its approval expiring (the clock travels),
the gate refusing it, revalidated, approved again, decommissioned, and refused for good. Each
step writes its audit event and delivers its notification, by email and to a signed webhook
at a real local receiver."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import time_machine
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent
from governance import services
from notifications import services as notify
from notifications.delivery import deliver_due
from notifications.models import Webhook
from tests.factories import UserFactory, assessed_model, make_version
from tests.receiver import receiving


def test_approval_to_decommissioning(api: Any, developer, owner, risk_officer, risk_officer_2, settings) -> None:
    settings.GATE_GRACE_DAYS = 0
    admin = UserFactory(username="admin", is_superuser=True, is_staff=True)
    model = assessed_model(owner, 4, name="churn")
    make_version(developer, model)
    version_url = "/api/v1/models/churn/versions/1"
    pipeline, officer, owner_api = api(developer), api(risk_officer), api(owner)

    def gate() -> Any:
        response = pipeline.get("/api/v1/gate/?model=churn&version=1&environment=production")
        assert response.status_code == 200
        return response.data

    def step(action: str, event: str, to: str) -> None:
        """The step wrote its audit event, and its notification reached the webhook and ``to``."""
        assert AuditEvent.objects.filter(model_name="churn", action=action).exists(), action
        mail.outbox.clear()
        seen = len(receiver.posts)
        deliver_due()
        assert event in [post["event"] for post in receiver.posts[seen:]], event
        assert all(post["signed"] for post in receiver.posts)
        assert to in {address for message in mail.outbox for address in message.to}, (event, to)

    with receiving() as receiver:
        receiver.secret = notify.webhook_save(actor=admin, webhook=Webhook(name="cd", url=receiver.url)).secret

        # Submitted and approved.
        submitted = owner_api.post(f"{version_url}/submit/", {"rationale": "churn v1"})
        assert submitted.status_code == 201
        step("approval_request.submitted", "version.submitted", "risk@example.com")
        assert gate()["allowed"] is False
        decided = officer.post(f"/api/v1/approval-requests/{submitted.data['id']}/decisions/", {"outcome": "approve"})
        assert decided.status_code == 201
        step("approval_request.approved", "request.approved", "owner@example.com")
        assert (gate()["allowed"], gate()["reasons"]) == (True, [])

        # Deployed to production; the protected alias follows.
        deployed = pipeline.post(f"{version_url}/deployments/", {"environment": "production", "endpoint": "svc/churn"})
        assert deployed.status_code == 201
        step("deployment.recorded", "version.deployed", "owner@example.com")
        moved = pipeline.put("/api/v1/models/churn/aliases/production/", {"version": 1})
        assert moved.status_code == 200
        step("alias.set", "alias.moved", "dev@example.com")

        # The clock: 30 days before expiry a revalidation opens; after it, the gate refuses.
        valid_until = services.selectors.current_approval(model.versions.get()).valid_until
        with time_machine.travel(valid_until - timedelta(days=10), tick=False) as clock:
            assert services.lifecycle_sweep()["revalidations"] == 1
            step("approval_request.submitted", "approval.expiring", "owner@example.com")
            revalidation = model.approval_requests.get(kind="revalidation")
            assert revalidation.submitted_by.username == "warden"
            clock.move_to(valid_until + timedelta(days=1))
            assert services.lifecycle_sweep()["expired"] == 1
            step("approval_request.expired", "approval.expired", "owner@example.com")
            answer = gate()
            assert answer["allowed"] is False
            assert answer["reasons"] == [
                f"version 1 of churn's approval (request #{submitted.data['id']}) expired on {valid_until:%Y-%m-%d}"
            ]
            refused = pipeline.put("/api/v1/models/churn/aliases/production/", {"version": 1})
            assert refused.status_code == 409 and "expired" in refused.data["message"]

            # Revalidated: approved again, the gate lets it back.
            decided = api(risk_officer_2).post(
                f"/api/v1/approval-requests/{revalidation.pk}/decisions/", {"outcome": "approve"}
            )
            assert decided.status_code == 201 and decided.data["request"]["state"] == "approved"
            step("approval_request.approved", "request.approved", "owner@example.com")
            assert (gate()["allowed"], gate()["reasons"]) == (True, [])

            # Decommissioned: the deployment retired, the alias cleared, the gate closed for good.
            asked = owner_api.post(f"{version_url}/decommission/", {"rationale": "replaced by the 2027 model"})
            assert asked.status_code == 201
            assert asked.data["impact"]["aliases"] == [{"alias": "production", "version": 1}]
            assert [d["environment"] for d in asked.data["impact"]["deployments"]] == ["production"]
            step("approval_request.submitted", "request.submitted", "risk@example.com")
            decided = officer.post(f"/api/v1/approval-requests/{asked.data['id']}/decisions/", {"outcome": "approve"})
            assert decided.status_code == 201
            step("deployment.retired", "decommissioned", "owner@example.com")
            assert AuditEvent.objects.filter(model_name="churn", action="alias.cleared").exists()
            answer = gate()
            assert answer["allowed"] is False and "version 1 of churn is decommissioned" in answer["reasons"]

        with time_machine.travel(timezone.now() + timedelta(days=3650), tick=False):
            assert gate()["allowed"] is False
            reopened = officer.post(f"{version_url}/reinstatement/", {"rationale": "bring it back"})
            assert reopened.status_code == 409

        assert pipeline.get("/api/v1/models/churn/aliases/production/").status_code == 404
        assert len(receiver.per_delivery()) == len(receiver.posts)  # each delivery id arrived once
