"""A T1 release as the people of PRODUCT.md live it, over HTTP with their own tokens: the
owner submits, each role decides in turn, the submitter is refused, and the auditor's export
shows every decision with its reason and the policy version, and verifies offline."""

from __future__ import annotations

import io
import json
import secrets
from contextlib import redirect_stdout
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from audit import offline_verify
from registry import services as registry_services
from tests.factories import assessed_model, make_version


def bearer(user):
    _, secret = registry_services.token_create(actor=user, name=f"laptop-{secrets.token_hex(4)}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_t1_release_is_decided_by_every_role_and_the_export_shows_each_decision(
    developer, owner, assigned_validator, compliance, risk_officer, committee, signing_key, tmp_path
):
    model = assessed_model(owner, 1, name="pd-retail")
    make_version(developer, model)
    submitted = bearer(owner).post("/api/v1/models/pd-retail/versions/1/submit/", {"rationale": "IRB"}, format="json")
    assert submitted.status_code == 201
    url = f"/api/v1/approval-requests/{submitted.data['id']}/decisions/"

    refused = bearer(owner).post(url, {"outcome": "approve"}, format="json")
    assert (refused.status_code, refused.data["message"]) == (403, "You cannot approve: you submitted this version.")
    early = bearer(committee[0]).post(url, {"outcome": "approve"}, format="json")
    assert early.status_code == 403 and "the current stage needs Independent validation" in early.data["message"]

    decisions = [
        (assigned_validator, "approve_with_conditions", "Back-test holds; add a 2025 holdout report"),
        (compliance, "approve", "Fair-lending review done"),
        (risk_officer, "approve", "Within appetite"),
        (committee[0], "approve", "Agreed"),
        (committee[1], "approve", "Agreed"),
    ]
    state, in_a_year = None, timezone.localdate() + timedelta(days=365)
    for person, outcome, comment in decisions:
        body = {"outcome": outcome, "comment": comment}
        if outcome == "approve_with_conditions":
            body["conditions"] = [{"description": "2025 holdout report", "owner": "owner", "due_date": str(in_a_year)}]
        response = bearer(person).post(url, body, format="json")
        assert response.status_code == 201, response.data
        state = response.data["request"]["state"]
    assert state == "approved"
    assert bearer(developer).get("/api/v1/models/pd-retail/versions/1/").data["state"] == "approved"

    bundle = tmp_path / "bundle"
    call_command("audit_export", str(bundle), "--model", "pd-retail", "--reason", "annual audit", stdout=io.StringIO())
    with redirect_stdout(io.StringIO()):
        assert offline_verify.main([str(bundle), "--pubkey", signing_key]) == 0
    events = [json.loads(line)["event"] for line in (bundle / "events.jsonl").read_text().splitlines()]
    recorded = [e for e in events if e["action"] == "decision.recorded"]
    assert [(e["after"]["outcome"], e["reason"]) for e in recorded] == [(o, c) for _, o, c in decisions]
    assert {json.dumps(e["after"]["policy"]) for e in recorded} == {json.dumps(recorded[0]["after"]["policy"])}
    assert recorded[0]["after"]["policy"]["tier"] == 1 and recorded[0]["after"]["policy"]["version"] == 1
    assert [e["action"] for e in events if e["action"].startswith("approval_request")] == [
        "approval_request.submitted",
        "approval_request.approved",
    ]
