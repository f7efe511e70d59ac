"""The pitch's scenario, end to end with the clock moving a day at a time: a T1 pricing model in
production whose key metric drifts linearly from its approved value to 6% off over 11 daily
observations (day 0 to day 10, 0.6% a day). Warden raises a warning finding by day 6 and makes
it critical by day 9, opens a revalidation request, tells the owner and the risk officers, and,
under a policy that says so, suspends the version so the gate refuses it. The same drift on a
T3 model (thresholds 10% / 20%) asks for nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import time_machine
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent
from governance import services
from governance.models import ApprovalRequest, Environment, Finding
from notifications.delivery import deliver_due
from registry.models import ModelVersion
from tests.factories import assessed_model, make_version

BASELINE = 0.62  # the approved loss ratio


def approve(request: ApprovalRequest, signers: dict[str, list[Any]]) -> None:
    """Sign each active stage with the people given for its role until the request is decided."""
    while True:
        request.refresh_from_db()
        if request.state != "open":
            return
        for stage in request.stages.filter(state="active"):
            for person in signers[stage.role][: stage.quorum]:
                services.decision_record(actor=person, request=request, outcome="approve", stage=stage.name)


def in_production(owner, developer, tier: int, signers: dict[str, list[Any]]) -> ModelVersion:
    model = assessed_model(owner, tier)
    version = make_version(developer, model, metrics={"loss_ratio": BASELINE, "gini": 0.41})
    approve(services.request_submit(actor=owner, version=version, rationale="pricing v1"), signers)
    services.deployment_record(actor=owner, version=version, environment=Environment.objects.get(name="production"))
    return ModelVersion.objects.select_related("model").get(pk=version.pk)


def drift(api: Any, reporter: Any, version: ModelVersion, start: Any) -> dict[int, list[dict[str, Any]]]:
    """Post day d's observation (0.6% a day off the baseline), each day at its time; returns the
    breaches each day's call reported."""
    reported = {}
    for day in range(11):
        with time_machine.travel(start + timedelta(days=day + 1, hours=1), tick=False):  # once the day is over
            window = start + timedelta(days=day)
            body = {
                "observations": [
                    {
                        "key": f"{version.model.name}-loss-ratio-{day}",
                        "model": version.model.name,
                        "version": version.number,
                        "metric": "loss_ratio",
                        "value": BASELINE * (1 + 0.006 * day),
                        "window_start": window.isoformat(),
                        "window_end": (window + timedelta(days=1)).isoformat(),
                    }
                ]
            }
            response = api(reporter).post("/api/v1/monitoring/observations/", body, format="json")
            assert response.status_code == 200, response.data
            reported[day] = response.data["breaches"]
    return reported


def test_a_drifting_t1_pricing_model_is_caught_and_stopped(
    api, owner, developer, assigned_validator, compliance, risk_officer, committee, settings
):
    signers = {
        "Validators": [assigned_validator],
        "Compliance officers": [compliance],
        "Risk officers": [risk_officer],
        "Committee members": committee[:2],
    }
    # The T1 policy, as a risk officer republishes it: a critical breach suspends automatically.
    draft = services.policy_draft(actor=risk_officer, tier=1)
    monitoring = {**draft.monitoring, "on_critical": {**draft.monitoring["on_critical"], "suspension": "automatic"}}
    services.document_update(actor=risk_officer, document=draft, changes={"monitoring": monitoring})
    services.document_publish(actor=risk_officer, document=draft)

    version = in_production(owner, developer, 1, signers)
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    reported = drift(api, developer, version, start)

    levels = {day: [b["level"] for b in breaches] for day, breaches in reported.items()}
    first_warning = min(day for day, found in levels.items() if "warn" in found)
    first_critical = min(day for day, found in levels.items() if "critical" in found)
    assert first_warning <= 6 and first_critical <= 9
    assert (first_warning, first_critical) == (5, 9)  # 3.0% on day 5; 4.8% on day 8, 5.4% on day 9

    finding = Finding.objects.get(version=version, metric="loss_ratio")  # one finding, updated
    assert (finding.source, finding.severity, finding.state) == ("monitoring", "high", "open")
    assert [(e.action, e.severity) for e in finding.entries.all()] == [("raised", "medium"), ("escalated", "high")]
    assert "5.40% from the approved 0.62" in finding.entries.last().note

    revalidation = ApprovalRequest.objects.get(version=version, kind="revalidation")
    assert revalidation.state == "open" and "critical breach of loss_ratio" in revalidation.rationale
    version.refresh_from_db()
    assert version.state == "suspended"
    gate = api(developer).get(f"/api/v1/gate/?model={version.model.name}&version=1&environment=production").data
    assert gate["allowed"] is False and f"version 1 of {version.model.name} is suspended" in gate["reasons"]
    actions = set(AuditEvent.objects.filter(model_name=version.model.name).values_list("action", flat=True))
    assert {"finding.raised", "finding.escalated", "version.state_changed", "approval_request.submitted"} <= actions

    with time_machine.travel(start + timedelta(days=12), tick=False):
        deliver_due()
    told = {(m.subject.split(":")[0], address) for m in mail.outbox for address in m.to}
    for who in (owner, risk_officer):
        assert (f"High monitoring finding on version 1 of {version.model.name}", who.email) in told
        assert (f"Medium monitoring finding on version 1 of {version.model.name}", who.email) in told
    assert any("is suspended" in m.subject and owner.email in m.to for m in mail.outbox)


def test_the_same_drift_on_a_t3_model_asks_for_nothing(api, owner, developer, outsider, risk_officer):
    version = in_production(owner, developer, 3, {"Model developers": [outsider], "Risk officers": [risk_officer]})
    start = timezone.now() + timedelta(days=1)
    reported = drift(api, developer, version, start)

    assert all(breaches == [] for breaches in reported.values())  # 6% is under T3's 10% warning
    assert not Finding.objects.filter(version=version).exists()
    assert not ApprovalRequest.objects.filter(version=version, kind="revalidation").exists()
    version.refresh_from_db()
    assert version.state == "deployed"
    assert version.observations.count() == 11


def test_a_batch_posted_twice_is_counted_once(api, owner, developer, risk_officer):
    version = in_production(owner, developer, 4, {"Risk officers": [risk_officer]})
    points = [
        {
            "key": f"batch-7-{i}",
            "deployment": version.deployments.get().pk,
            "metric": "gini",
            "value": 0.41,
            "window_start": "2026-11-01T00:00:00Z",
            "window_end": "2026-11-02T00:00:00Z",
            "segment": f"region-{i}",
        }
        for i in range(1000)
    ]
    first = api(developer).post("/api/v1/monitoring/observations/", {"observations": points}, format="json")
    again = api(developer).post("/api/v1/monitoring/observations/", {"observations": points}, format="json")
    assert (first.status_code, first.data["stored"], first.data["duplicates"]) == (200, 1000, 0)
    assert (again.status_code, again.data["stored"], again.data["duplicates"]) == (200, 0, 1000)
    assert version.observations.count() == 1000
