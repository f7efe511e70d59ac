"""Distributions against a frozen reference, threshold overrides, the periodic evaluation, and
working a finding through to closed: what an engineer and a risk officer see."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from governance import services as governance
from governance.models import Environment, Finding
from monitoring import services
from registry.models import ModelVersion, RiskTier
from tests.factories import UserFactory, approved, assessed_model, make_version

WINDOW = {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-02T00:00:00Z"}
BINS = ["<300", "300-600", "600-900", ">900"]


def reference(api: Any, user: Any, version: ModelVersion, counts: list[int], key: str = "ref-1") -> Any:
    body = {"key": key, "model": version.model.name, "version": version.number, "feature": "score", "bins": BINS}
    return api(user).post("/api/v1/monitoring/references/", {**body, "counts": counts}, format="json")


def distribution(version: ModelVersion, counts: list[int], key: str) -> dict[str, Any]:
    return {
        "key": key,
        "model": version.model.name,
        "version": version.number,
        "feature": "score",
        "bins": BINS,
        "counts": counts,
        **WINDOW,
    }


def test_psi_against_the_reference_captured_before_approval(api, developer, owner, risk_officer):
    version = make_version(developer, assessed_model(owner, 2))
    assert reference(api, developer, version, [10, 40, 40, 10]).status_code == 201
    assert reference(api, developer, version, [10, 40, 40, 10], key="ref-2").status_code == 409  # one per feature

    services.thresholds_override(
        actor=risk_officer, model=version.model, measure="psi", warn=0.1, critical=0.25, reason="T2 defaults"
    )
    governance.request_submit(actor=owner, version=version)  # submitted: not frozen until approved

    stable = api(developer).post(
        "/api/v1/monitoring/distributions/",
        {"distributions": [distribution(version, [11, 39, 41, 9], "d-1")]},
        format="json",
    )
    assert stable.status_code == 200 and stable.data["breaches"] == []
    received = AuditEvent.objects.get(action="monitoring.distributions_received")
    assert received.model_name == version.model.name  # so the model's export holds it
    assert received.after["versions"] == {"count": 1, "first": [f"{version.model.name} v{version.number}"]}
    shifted = api(developer).post(
        "/api/v1/monitoring/distributions/",
        {"distributions": [distribution(version, [40, 40, 10, 10], "d-2")]},
        format="json",
    )
    assert shifted.status_code == 200
    (breach,) = shifted.data["breaches"]
    assert (breach["metric"], breach["level"]) == ("psi:score", "critical")
    assert breach["value"] > 0.25
    wrong_bins = api(developer).post(
        "/api/v1/monitoring/distributions/",
        {"distributions": [{**distribution(version, [1, 1, 1], "d-3"), "bins": BINS[:3]}]},
        format="json",
    )
    assert wrong_bins.status_code == 400 and "distributions[0].bins" in wrong_bins.data["fields"]


def test_a_reference_is_frozen_once_the_version_is_approved(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    refused = reference(api, developer, version, [10, 40, 40, 10])
    assert refused.status_code == 409
    assert "its reference is frozen" in refused.data["message"]


def test_only_a_risk_officer_overrides_thresholds_and_it_is_audited(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    url = f"/api/v1/models/{version.model.name}/monitoring/thresholds/"
    body = {"measure": "relative_change", "warn": 0.02, "critical": 0.04, "reason": "price-sensitive book"}
    assert api(owner).post(url, body, format="json").status_code == 403
    assert api(risk_officer).post(url, {**body, "warn": 0.05}, format="json").status_code == 400
    made = api(risk_officer).post(url, body, format="json")
    assert made.status_code == 201 and made.data["set_by"] == "risk"
    event = AuditEvent.objects.get(action="monitoring.thresholds_overridden", model_name=version.model.name)
    assert event.reason == "price-sensitive book" and event.before is None  # T4's policy has no thresholds


def test_the_periodic_evaluation_finds_silence_and_new_thresholds(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer, tier=4)
    version = make_version(developer, version.model, metrics={"auc": 0.80})
    request = governance.request_submit(actor=owner, version=version)
    governance.decision_record(actor=risk_officer, request=request, outcome="approve")
    governance.deployment_record(actor=owner, version=version, environment=Environment.objects.get(name="production"))
    point = {"key": "auc-1", "model": version.model.name, "version": version.number, "metric": "auc", "value": 0.77}
    posted = api(developer).post(
        "/api/v1/monitoring/observations/", {"observations": [{**point, **WINDOW}]}, format="json"
    )
    assert posted.data["breaches"] == []  # T4 has no thresholds of its own

    services.thresholds_override(
        actor=risk_officer, model=version.model, measure="relative_change", warn=0.02, critical=0.05, reason="r"
    )
    counts = services.evaluate_all()
    assert counts["breaches"] == 1  # 3.75% against the new 2% warning: logged, as T4's policy says
    logged = AuditEvent.objects.filter(action="monitoring.breach_logged", model_name=version.model.name)
    assert logged.count() == 1
    assert not Finding.objects.filter(version=version).exists()
    services.evaluate_all()
    services.evaluate_all()
    assert logged.count() == 1  # the same window, met every hour, is logged once

    services.thresholds_override(
        actor=risk_officer, model=version.model, measure="relative_change", warn=0.01, critical=0.03, reason="r"
    )
    services.evaluate_all()
    services.evaluate_all()
    assert [event.after["level"] for event in logged.order_by("seq")] == ["warn", "critical"]  # once a level

    with time_machine.travel(timezone.now() + timedelta(days=400), tick=False):
        assert services.evaluate_all()["stale"] == 0  # T4 sets no cadence


def test_the_evaluation_reads_each_metric_once_not_every_window(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer, tier=4)
    governance.deployment_record(actor=owner, version=version, environment=Environment.objects.get(name="production"))
    points = [
        {
            "key": f"auc-{day}",
            "model": version.model.name,
            "version": version.number,
            "metric": "auc",
            "value": 0.8,
            "window_start": f"2026-10-{day:02d}T00:00:00Z",
            "window_end": f"2026-10-{day + 1:02d}T00:00:00Z",
        }
        for day in range(1, 21)
    ]
    posted = api(developer).post("/api/v1/monitoring/observations/", {"observations": points}, format="json")
    assert posted.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        services.evaluate_all()
    # The names asked (SELECT DISTINCT), not the newest window of each series (DISTINCT ON).
    names = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT DISTINCT "')]
    assert names and not [sql for sql in names if "window_end" in sql]
    page = Client()
    page.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))
    with CaptureQueriesContext(connection) as queries:
        assert page.get("/admin/monitoring/monitoredversion/").status_code == 200
    assert not [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"]]


def test_a_monitoring_finding_is_acknowledged_remediated_and_closed(api, developer, owner, validator, risk_officer):
    version, _ = approved(developer, owner, risk_officer, tier=4)
    services.thresholds_override(
        actor=risk_officer, model=version.model, measure="relative_change", warn=0.02, critical=0.05, reason="r"
    )
    finding = governance.monitoring_breach(
        version=version,
        metric="auc",
        level="warn",
        measure="relative change",
        value=0.03,
        detail="d",
        window_end=timezone.now(),
    )
    assert finding is None  # T4 logs only
    finding = governance.finding_raise(
        actor=validator,
        model=version.model,
        version=version,
        title="Calibration drift",
        severity="high",
        owner=owner,
        due_date=timezone.localdate() + timedelta(days=10),
    )
    url = f"/api/v1/findings/{finding.pk}"
    assert api(owner).post(f"{url}/close/", {"comment": "done"}, format="json").status_code == 403
    assert api(owner).post(f"{url}/acknowledge/", {"comment": "looking"}, format="json").data["state"] == "acknowledged"
    assert (
        api(owner).post(f"{url}/remediate/", {"comment": "recalibrated"}, format="json").data["state"] == "remediated"
    )
    closed = api(validator).post(f"{url}/close/", {"comment": "checked on October data"}, format="json")
    assert closed.status_code == 200 and closed.data["state"] == "closed"
    assert [e["action"] for e in closed.data["entries"]] == ["raised", "acknowledged", "remediated", "closed"]
    again = api(validator).post(f"{url}/acknowledge/", {"comment": "x"}, format="json")
    assert again.status_code == 409 and again.data["code"] == "invalid_transition"
    assert AuditEvent.objects.filter(object_type="governance.finding", object_id=str(finding.pk)).count() == 4


def test_the_admin_draws_each_metric_against_its_lines_and_marks_breaches(api, developer, owner, risk_officer):
    from tests.governance.test_admin import signed_in

    version, _ = approved(developer, owner, risk_officer, tier=4)
    version = make_version(developer, version.model, metrics={"auc": 0.80})
    governance.decision_record(
        actor=risk_officer, request=governance.request_submit(actor=owner, version=version), outcome="approve"
    )
    services.thresholds_override(
        actor=risk_officer, model=version.model, measure="relative_change", warn=0.02, critical=0.05, reason="r"
    )
    points = [
        {
            "key": f"auc-{day}",
            "model": version.model.name,
            "version": version.number,
            "metric": "auc",
            "value": value,
            "window_start": f"2026-11-0{day}T00:00:00Z",
            "window_end": f"2026-11-0{day + 1}T00:00:00Z",
        }
        for day, value in [(1, 0.80), (2, 0.79), (3, 0.78), (4, 0.75)]
    ]
    posted = api(developer).post("/api/v1/monitoring/observations/", {"observations": points}, format="json")
    assert posted.status_code == 200

    client = signed_in(risk_officer)
    listed = client.get("/admin/monitoring/monitoredversion/")
    assert listed.status_code == 200 and str(version).encode() in listed.content
    page = client.get(f"/admin/monitoring/monitoredversion/{version.pk}/change/")
    assert page.status_code == 200
    svg = page.content.decode()
    assert svg.count('role="img"') == 1 and 'aria-label="auc"' in svg
    assert svg.count('class="point-ok"') == 2  # 0.80 and 0.79 (1.25%)
    assert svg.count('class="point-warn"') == 1  # 0.78: 2.5%
    assert svg.count('class="point-critical"') == 1  # 0.75: 6.25%
    assert svg.count("<title>warn:") == 2 and svg.count("<title>critical:") == 2

    governance.finding_raise(
        actor=risk_officer,
        model=version.model,
        version=version,
        title="AUC below the approved value",
        severity="high",
        owner=owner,
        due_date=timezone.localdate() + timedelta(days=14),
    )
    dashboard = client.get("/admin/governance/approvalrequest/dashboard/").content.decode()
    table = dashboard[dashboard.index('id="findings"') :]
    row = table[table.index(RiskTier(4).label) :].split("</tr>")[0]
    assert row.endswith("<td>0</td><td>1</td><td>0</td><td>0</td>")  # critical, high, medium, low
