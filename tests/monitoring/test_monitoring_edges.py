"""What monitoring refuses, and how it keeps from acting twice on the same data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import ledger
from audit.models import AuditEvent
from common.errors import ValidationFailed
from governance import services as governance
from governance.models import ApprovalRequest, Deployment, Environment, Finding, RequestKind, RequestState
from monitoring import services
from monitoring.models import Observation
from registry.models import ModelVersion
from tests.concurrency import run_at_once
from tests.conftest import on_postgres
from tests.factories import approved, assessed_model, make_version


def deployed_t2(
    developer: Any,
    owner: Any,
    assigned_validator: Any,
    risk_officer: Any,
    auc: float = 0.80,
    deployed_days_ago: int = 0,
) -> ModelVersion:
    """A T2 version (thresholds 5% / 10%, findings high) with auc 0.80, in production (deployed
    that many days ago: a deployment's time is governed, not to be changed after)."""
    from tests.factories import assessed_model

    version = make_version(developer, assessed_model(owner, 2), metrics={"auc": auc})
    request = governance.request_submit(actor=owner, version=version)
    governance.decision_record(actor=assigned_validator, request=request, outcome="approve")
    governance.decision_record(actor=risk_officer, request=request, outcome="approve")
    deploy(owner, version, "production", days_ago=deployed_days_ago)
    return ModelVersion.objects.select_related("model").get(pk=version.pk)


def deploy(owner: Any, version: ModelVersion, environment: str, days_ago: int = 0) -> None:
    with time_machine.travel(timezone.now() - timedelta(days=days_ago), tick=False):
        governance.deployment_record(
            actor=owner, version=version, environment=Environment.objects.get(name=environment)
        )


def post(api: Any, user: Any, version: ModelVersion, value: float, days_ago: int, **extra: Any) -> Any:
    end = timezone.now() - timedelta(days=days_ago)
    point = {
        "key": f"auc-{days_ago}-{value}",
        "model": version.model.name,
        "version": version.number,
        "metric": "auc",
        "value": value,
        "window_start": (end - timedelta(days=1)).isoformat(),
        "window_end": end.isoformat(),
        **extra,
    }
    return api(user).post("/api/v1/monitoring/observations/", {"observations": [point]}, format="json")


def test_a_window_is_acted_on_once(api, developer, owner, assigned_validator, risk_officer, risk_officer_2):
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    assert post(api, developer, version, 0.70, days_ago=3).data["breaches"][0]["level"] == "critical"
    finding = Finding.objects.get(version=version, metric="auc")
    governance.finding_move(actor=owner, finding=finding, state="remediated", comment="retrained the calibration")
    governance.finding_move(actor=risk_officer_2, finding=finding, state="closed", comment="fix confirmed")

    services.evaluate_all()  # the same (closed) window again: nothing new
    assert Finding.objects.filter(version=version, metric="auc").count() == 1

    assert post(api, developer, version, 0.75, days_ago=1).data["breaches"][0]["level"] == "warn"
    assert Finding.objects.filter(version=version, metric="auc").count() == 2  # a new window, a new finding


def test_the_revalidation_a_breach_opens_is_withdrawn_only_by_a_risk_officer(
    api, developer, owner, assigned_validator, risk_officer
):
    """The owner whose model breached cannot dismiss the check on it."""
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    assert post(api, developer, version, 0.70, days_ago=3).data["breaches"][0]["level"] == "critical"
    revalidation = ApprovalRequest.objects.get(version=version, kind=RequestKind.REVALIDATION)

    url = f"/api/v1/approval-requests/{revalidation.pk}/withdraw/"
    refused = api(owner).post(url, {"reason": "the drift is seasonal"}, format="json")
    assert refused.status_code == 403
    assert (
        refused.data["message"]
        == "Warden opened this request itself: only a risk officer independent of the model withdraws it."
    )
    revalidation.refresh_from_db()
    assert revalidation.state == RequestState.OPEN

    assert api(risk_officer).post(url, {"reason": "seasonal drift, reviewed"}, format="json").status_code == 200
    revalidation.refresh_from_db()
    assert revalidation.state == RequestState.WITHDRAWN


def test_a_breach_in_a_new_window_of_an_open_finding_is_recorded(
    api, developer, owner, assigned_validator, risk_officer
):
    """The finding stays one, at its severity; the trail says the breach went on, and until when."""
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    assert post(api, developer, version, 0.70, days_ago=3).data["breaches"][0]["level"] == "critical"
    first = Finding.objects.get(version=version, metric="auc")
    assert post(api, developer, version, 0.69, days_ago=1).data["breaches"][0]["level"] == "critical"
    finding = Finding.objects.get(version=version, metric="auc")
    assert finding.window_end > first.window_end

    (event,) = AuditEvent.objects.filter(action="finding.breached_again", object_id=str(finding.pk))
    assert event.model_name == version.model.name
    assert event.before == {"window_end": ledger.format_time(first.window_end)}
    assert event.after["window_end"] == ledger.format_time(finding.window_end)
    assert event.after["level"] == "critical"


def test_a_stricter_tier_asks_the_breach_revalidation_again_rather_than_dropping_it(
    api, developer, owner, assigned_validator, risk_officer
):
    """The owner's reassessment withdraws the requests made under the old tier; Warden's own
    revalidation is asked again under the new one, not lost with them."""
    from tests.factories import ASSESSMENTS

    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    assert post(api, developer, version, 0.70, days_ago=3).data["breaches"][0]["level"] == "critical"
    first = ApprovalRequest.objects.get(version=version, kind=RequestKind.REVALIDATION)

    answers, flags = ASSESSMENTS[1]
    governance.assessment_record(actor=owner, model=version.model, answers=answers, flags=flags)

    first.refresh_from_db()
    assert first.state == RequestState.WITHDRAWN
    again = ApprovalRequest.objects.get(version=version, kind=RequestKind.REVALIDATION, state=RequestState.OPEN)
    assert (again.submitted_by.username, again.tier) == ("warden", 1)
    assert again.rationale == f"{first.rationale} (asked again under T1)"


def test_a_stricter_tier_goes_through_when_the_breach_revalidations_version_was_suspended(
    api, developer, owner, assigned_validator, risk_officer
):
    """The revalidation is withdrawn with the other requests and not asked again: the suspended
    version comes back only through a reinstatement, decided under the new tier."""
    from tests.factories import ASSESSMENTS

    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    post(api, developer, version, 0.70, days_ago=3)
    first = ApprovalRequest.objects.get(version=version, kind=RequestKind.REVALIDATION)
    governance.version_suspend(actor=risk_officer, version=version, reason="the score collapsed")

    answers, flags = ASSESSMENTS[1]
    governance.assessment_record(actor=owner, model=version.model, answers=answers, flags=flags)

    version.refresh_from_db()
    first.refresh_from_db()
    assert (version.model.risk_tier, version.state, first.state) == (1, "suspended", RequestState.WITHDRAWN)
    assert not ApprovalRequest.objects.filter(version=version, state=RequestState.OPEN).exists()


def test_a_new_breach_reopens_a_finding_said_to_be_remediated(api, developer, owner, assigned_validator, risk_officer):
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    post(api, developer, version, 0.70, days_ago=3)
    finding = Finding.objects.get(version=version, metric="auc")
    governance.finding_move(actor=owner, finding=finding, state="remediated", comment="retrained")
    post(api, developer, version, 0.70, days_ago=2)
    finding.refresh_from_db()
    assert finding.state == "open"
    assert [e.action for e in finding.entries.all()] == ["raised", "remediated", "reopened"]


def test_who_said_it_was_remediated_does_not_close_it(developer, owner, validator, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    finding = governance.finding_raise(
        actor=validator,
        model=version.model,
        title="Thin-file segment",
        severity="medium",
        owner=owner,
        due_date=timezone.localdate() + timedelta(days=30),
    )
    governance.finding_move(actor=risk_officer, finding=finding, state="remediated", comment="done")
    with pytest.raises(Exception, match="you said it was remediated"):
        governance.finding_move(actor=risk_officer, finding=finding, state="closed", comment="and checked")
    assert (
        governance.finding_move(actor=validator, finding=finding, state="closed", comment="checked").state == "closed"
    )


def test_what_an_ingest_refuses(api, developer, owner, assigned_validator, risk_officer):
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    future = post(api, developer, version, 0.8, days_ago=-2)
    assert future.status_code == 400 and "observations[0].window_end" in future.data["fields"]
    reserved = post(api, developer, version, 0.8, days_ago=1, metric="staleness")
    assert reserved.status_code == 400
    colon = post(api, developer, version, 0.8, days_ago=1, metric="psi:score")
    assert colon.status_code == 400
    huge = post(api, developer, version, 1e308, days_ago=1)
    assert huge.status_code == 200 and huge.data["breaches"][0]["level"] == "critical"
    nul = api(developer).get(f"/api/v1/models/{version.model.name}/versions/1/monitoring/?metric=a%00b")
    assert nul.status_code == 400

    deployment = version.deployments.get()
    governance.deployment_retire(actor=owner, deployment=deployment, reason="moved to the new cluster")
    point = {"key": "late", "deployment": deployment.pk, "metric": "auc", "value": 0.8}
    window = {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-02T00:00:00Z"}
    late = api(developer).post(
        "/api/v1/monitoring/observations/", {"observations": [{**point, **window}]}, format="json"
    )
    assert late.status_code == 400 and "was retired" in late.data["message"]


def test_the_service_refuses_what_reports_nothing_more_whoever_calls_it(
    api, developer, owner, assigned_validator, risk_officer
):
    """The refusals live in the service, read under its locks: a caller besides the API (the
    demo's seed, a script) is held to them too."""
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    deployment = version.deployments.get()
    governance.deployment_retire(actor=owner, deployment=deployment, reason="moved to the new cluster")
    now = timezone.now()
    data = {"key": "k", "metric": "auc", "value": 0.8, "window_start": now - timedelta(days=2), "window_end": now}
    late = services.Item(version=version, deployment=deployment, data=data)
    with pytest.raises(ValidationFailed, match="was retired") as refused:
        services.observations_receive(actor=developer, items=[late])
    assert refused.value.fields == {"observations[0].deployment": ["was retired: it reports nothing more"]}
    assert not Observation.objects.exists()


def test_the_reference_and_threshold_endpoints_name_the_fields_sent(api, developer, owner, risk_officer):
    version = make_version(developer, assessed_model(owner, 2))
    body = {"key": "r", "model": version.model.name, "version": version.number, "feature": "score"}
    wrong = api(developer).post(
        "/api/v1/monitoring/references/", {**body, "bins": ["a", "b"], "counts": [1]}, format="json"
    )
    assert (wrong.status_code, list(wrong.data["fields"])) == (400, ["counts"])
    url = f"/api/v1/models/{version.model.name}/monitoring/thresholds/"
    zero = api(risk_officer).post(url, {"measure": "psi", "warn": 0, "critical": 0.2, "reason": "r"}, format="json")
    assert (zero.status_code, list(zero.data["fields"])) == (400, ["warn"])


def test_a_reference_is_captured_while_the_version_is_a_draft_only(api, developer, owner):
    """It is what the version's approvers judge its drift against: frozen with its content."""
    version = make_version(developer, assessed_model(owner, 2))
    governance.request_submit(actor=owner, version=version)
    body = {"key": "r", "model": version.model.name, "version": version.number, "feature": "score"}
    refused = api(developer).post(
        "/api/v1/monitoring/references/", {**body, "bins": ["a", "b"], "counts": [1, 2]}, format="json"
    )
    assert (refused.status_code, refused.data["message"]) == (
        409,
        f"Version 1 of {version.model.name} is submitted: its reference is frozen with its content; "
        "register a new version.",
    )


def test_a_metrics_series_tells_its_deployments_apart(api, developer, owner, assigned_validator, risk_officer):
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    production = version.deployments.get()
    staging = governance.deployment_record(
        actor=owner, version=version, environment=Environment.objects.get(name="staging")
    )
    window = {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-02T00:00:00Z"}
    rows = [
        {"key": "p", "deployment": production.pk, "metric": "auc", "value": 0.79, **window},
        {"key": "s", "deployment": staging.pk, "metric": "auc", "value": 0.81, **window},
    ]
    assert (
        api(developer).post("/api/v1/monitoring/observations/", {"observations": rows}, format="json").status_code
        == 200
    )
    url = f"/api/v1/models/{version.model.name}/versions/{version.number}/monitoring/"
    both = api(developer).get(url, {"metric": "auc"}).data
    assert sorted((p["deployment"], p["value"]) for p in both) == [(production.pk, 0.79), (staging.pk, 0.81)]
    one = api(developer).get(url, {"metric": "auc", "deployment": staging.pk}).data
    assert [(p["deployment"], p["value"]) for p in one] == [(staging.pk, 0.81)]
    assert api(developer).get(url, {"metric": "auc", "deployment": "x"}).data["fields"] == {
        "deployment": ["a deployment's id"]
    }


def test_a_batch_over_two_models_is_in_each_models_trail_naming_the_batch(
    api, developer, owner, assigned_validator, risk_officer
):
    first = deployed_t2(developer, owner, assigned_validator, risk_officer)
    second = deployed_t2(developer, owner, assigned_validator, risk_officer)
    window = {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-02T00:00:00Z"}
    rows = [
        {"key": f"k{n}", "model": v.model.name, "version": v.number, "metric": "auc", "value": 0.8, **window}
        for n, v in enumerate((first, first, second))
    ]
    assert (
        api(developer).post("/api/v1/monitoring/observations/", {"observations": rows}, format="json").status_code
        == 200
    )
    (batch,) = set(Observation.objects.values_list("batch", flat=True))
    events = AuditEvent.objects.filter(action="monitoring.observations_received")
    assert {e.model_name: (e.object_id, e.after["stored"], e.after["versions"]["count"]) for e in events} == {
        first.model.name: (str(batch), 2, 1),
        second.model.name: (str(batch), 1, 1),
    }


def test_a_breach_names_its_window_in_utc_whatever_the_servers_time_zone(
    api, developer, owner, assigned_validator, risk_officer, settings
):
    """Found on arrival (the time as the request gave it, read in TIME_ZONE) or by the hourly
    evaluation (read back from the database), the words are the same."""
    settings.TIME_ZONE = "Europe/Berlin"
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    row = {"key": "k", "model": version.model.name, "version": version.number, "metric": "auc", "value": 0.6}
    window = {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-02T00:00:00Z"}
    posted = api(developer).post(
        "/api/v1/monitoring/observations/", {"observations": [{**row, **window}]}, format="json"
    )
    assert len(posted.data["breaches"]) == 1
    finding = Finding.objects.get(version=version, metric="auc")
    assert "in the window ending 2026-11-02 00:00 UTC" in finding.description


def test_a_batch_over_many_models_reads_their_thresholds_once(api, developer, owner, assigned_validator, risk_officer):
    """Their overrides in one query, and each tier's published policy once."""
    versions = [deployed_t2(developer, owner, assigned_validator, risk_officer) for _ in range(5)]
    window = {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-02T00:00:00Z"}
    rows = [
        {"key": "k", "model": v.model.name, "version": v.number, "metric": "auc", "value": 0.8, **window}
        for v in versions
    ]
    with CaptureQueriesContext(connection) as queries:
        posted = api(developer).post("/api/v1/monitoring/observations/", {"observations": rows}, format="json")
    assert posted.status_code == 200 and posted.data["stored"] == 5
    read = [q["sql"] for q in queries.captured_queries]
    assert sum("monitoring_thresholdoverride" in sql for sql in read) == 1
    assert sum("governance_approvalpolicy" in sql for sql in read) == 1


def test_a_change_too_large_for_a_float_is_critical(api, developer, owner, assigned_validator, risk_officer):
    version = deployed_t2(developer, owner, assigned_validator, risk_officer, auc=1e-300)
    answer = post(api, developer, version, 1e10, days_ago=1)
    assert answer.status_code == 200
    assert [(b["level"], b["value"]) for b in answer.data["breaches"]] == [("critical", 1e300)]
    finding = Finding.objects.get(version=version)
    assert "1e+302% from the approved 1e-300" in finding.description


def test_a_policy_with_a_malformed_monitoring_section_is_not_published(risk_officer):
    draft = governance.policy_draft(actor=risk_officer, tier=2)
    cases = [
        ({"thresholds": {"psi": {"warn": 0.3, "critical": 0.2}}}, "monitoring.thresholds.psi"),
        ({"thresholds": {"latency": {"warn": 1, "critical": 2}}}, "monitoring.thresholds"),
        ({"on_critical": {"finding_severity": "severe"}}, "monitoring.on_critical.finding_severity"),
        ({"on_critical": {"finding_severity": "high", "suspension": "maybe"}}, "monitoring.on_critical.suspension"),
        ({"stale_after_days": "weekly"}, "monitoring.stale_after_days"),
    ]
    for monitoring, field in cases:
        with pytest.raises(ValidationFailed) as refused:
            governance.document_update(actor=risk_officer, document=draft, changes={"monitoring": monitoring})
            governance.document_publish(actor=risk_officer, document=draft)
        assert field in refused.value.fields, (monitoring, refused.value.fields)


def test_a_batch_costs_the_same_queries_whatever_its_size(api, developer, owner, risk_officer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    version, _ = approved(developer, owner, risk_officer)
    versions = [version] + [make_version(developer, version.model, metrics={"auc": 0.8}) for _ in range(4)]

    def batch(size: int, tag: str) -> int:
        points = [
            {
                "key": f"{tag}-{i}",
                "model": version.model.name,
                "version": versions[i % len(versions)].number,
                "metric": "auc",
                "segment": f"s{i}",
                "value": 0.8,
                "window_start": "2026-11-01T00:00:00Z",
                "window_end": "2026-11-02T00:00:00Z",
            }
            for i in range(size)
        ]
        with CaptureQueriesContext(connection) as queries:
            response = api(developer).post("/api/v1/monitoring/observations/", {"observations": points}, format="json")
        assert response.status_code == 200 and response.data["stored"] == size
        return len(queries)

    batch(3, "warm-up")  # the first call reads what later calls find cached (the user's roles)
    # 80 points stay inside one INSERT on SQLite too (its statements take 999 parameters)
    assert batch(5, "small") == batch(80, "large")


def test_only_versions_live_somewhere_are_evaluated(api, developer, owner, risk_officer):
    """A draft reporting in shadow, and an approved version never deployed, are no live
    deployment: the hourly evaluation leaves them alone, and calls neither stale."""
    draft = make_version(developer, assessed_model(owner, 1), metrics={"auc": 0.80})
    assert post(api, developer, draft, 0.80, days_ago=5).status_code == 200
    shelved, _ = approved(developer, owner, risk_officer)
    assert services.evaluate_all() == {"versions": 0, "breaches": 0, "stale": 0}
    assert not Finding.objects.filter(version__in=[draft, shelved]).exists()


def test_a_version_reporting_only_distributions_is_not_stale(api, developer, owner, assigned_validator, risk_officer):
    version = make_version(developer, assessed_model(owner, 2), metrics={"auc": 0.80})
    reference = {"model": version.model.name, "version": 1, "key": "ref", "feature": "score", "bins": ["a", "b"]}
    response = api(developer).post("/api/v1/monitoring/references/", reference | {"counts": [5, 5]}, format="json")
    assert response.status_code == 201, response.data
    request = governance.request_submit(actor=owner, version=version)
    governance.decision_record(actor=assigned_validator, request=request, outcome="approve")
    governance.decision_record(actor=risk_officer, request=request, outcome="approve")
    deploy(owner, version, "production", days_ago=10)
    end = timezone.now() - timedelta(hours=2)
    window = {"window_start": (end - timedelta(days=1)).isoformat(), "window_end": end.isoformat()}
    distribution = {"model": version.model.name, "version": 1, "key": "d1", "feature": "score", "bins": ["a", "b"]}
    response = api(developer).post(
        "/api/v1/monitoring/distributions/",
        {"distributions": [distribution | window | {"counts": [5, 5]}]},
        format="json",
    )
    assert response.status_code == 200, response.data

    assert services.evaluate_all()["stale"] == 0
    assert not Finding.objects.filter(version=version, metric="staleness").exists()
    assert services.evaluate_all(now=end + timedelta(days=8))["stale"] == 1  # and stale once it too is old


def test_data_sent_before_a_deployment_does_not_make_it_stale_at_once(
    api, developer, owner, assigned_validator, risk_officer
):
    """A T2 version (data at least every 7 days) reported in shadow 20 days ago, then was
    deployed: its clock starts at the deployment, not at the old data."""
    version = make_version(developer, assessed_model(owner, 2), metrics={"auc": 0.80})
    assert post(api, developer, version, 0.80, days_ago=20).status_code == 200
    request = governance.request_submit(actor=owner, version=version)
    governance.decision_record(actor=assigned_validator, request=request, outcome="approve")
    governance.decision_record(actor=risk_officer, request=request, outcome="approve")
    governance.deployment_record(actor=owner, version=version, environment=Environment.objects.get(name="production"))

    assert services.evaluate_all()["stale"] == 0
    assert services.evaluate_all(now=timezone.now() + timedelta(days=8))["stale"] == 1


def test_thresholds_tightened_since_escalate_the_window_already_judged(
    api, developer, owner, assigned_validator, risk_officer
):
    """A warning (5% under T2's 5% / 10%) made a medium finding; a risk officer tightens the
    thresholds to 1% / 3%: the same window is now critical, and the next evaluation escalates the
    finding it is still open on, rather than calling the window judged."""
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    assert post(api, developer, version, 0.76, days_ago=1).data["breaches"][0]["level"] == "warn"
    finding = Finding.objects.get(version=version, metric="auc")
    assert finding.severity == "medium"
    services.thresholds_override(
        actor=risk_officer, model=version.model, measure="relative_change", warn=0.01, critical=0.03, reason="tighter"
    )

    services.evaluate_all()

    finding.refresh_from_db()
    assert (finding.severity, Finding.objects.filter(version=version, metric="auc").count()) == ("high", 1)
    services.evaluate_all()  # judged now at this weight: nothing more
    assert finding.entries.filter(action="escalated").count() == 1


@pytest.mark.skipif(not on_postgres(), reason="concurrent writers need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_batches_of_the_same_keys_in_opposite_orders_are_stored_once_without_a_deadlock(developer, owner):
    """Each waits for the other's uncommitted keys; inserted in the client's order, the two
    would wait in a circle."""
    version = make_version(developer, assessed_model(owner, 2), metrics={"auc": 0.80})
    version = ModelVersion.objects.select_related("model").get(pk=version.pk)
    end = timezone.now() - timedelta(days=1)
    items = [
        services.Item(
            version=version,
            deployment=None,
            data={
                "key": f"k{n:04d}",
                "metric": "auc",
                "segment": "",
                "value": 0.8,
                "window_start": end - timedelta(hours=1),
                "window_end": end,
            },
        )
        for n in range(2000)
    ]
    received: list[Any] = []

    def send(i: int) -> None:
        received.append(services.observations_receive(actor=developer, items=items if i == 0 else items[::-1]))

    assert run_at_once(2, send) == []
    assert sum(r.stored for r in received) == 2000
    assert Observation.objects.filter(version=version).count() == 2000


def _points(version: ModelVersion, values: list[float], **extra: Any) -> list[dict[str, Any]]:
    """Daily windows ending len(values)-1 … 0 days ago, one value each."""
    now = timezone.now() - timedelta(minutes=5)
    points = []
    for n, value in enumerate(values):
        end = now - timedelta(days=len(values) - 1 - n)
        window = {"window_start": (end - timedelta(days=1)).isoformat(), "window_end": end.isoformat()}
        points.append({"key": f"d{n:02d}", "metric": "auc", "value": value, **window, **extra})
    return points


def _by_version(version: ModelVersion) -> dict[str, Any]:
    return {"model": version.model.name, "version": version.number}


def test_a_batch_of_many_windows_is_judged_as_if_they_had_come_one_by_one(
    api, developer, owner, assigned_validator, risk_officer
):
    """Eleven daily windows drifting 1.2% a day against T2's 5% / 10%, sent at once: a warning on
    day 5, critical on day 9, and the newest window recorded; not one judgement of day 10 alone."""
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    points = [p | _by_version(version) for p in _points(version, [0.80 * (1 - 0.012 * d) for d in range(11)])]
    response = api(developer).post("/api/v1/monitoring/observations/", {"observations": points}, format="json")
    assert response.status_code == 200, response.data
    assert [(b["level"], round(b["value"], 3)) for b in response.data["breaches"]] == [
        ("warn", 0.06),
        ("critical", 0.108),
        ("critical", 0.12),
    ]
    finding = Finding.objects.get(version=version, metric="auc")
    assert list(finding.entries.order_by("id").values_list("action", "severity")) == [
        ("raised", "medium"),
        ("escalated", "high"),
    ]
    actions = AuditEvent.objects.filter(object_id=str(finding.pk), action__startswith="finding.").order_by("seq")
    assert list(actions.values_list("action", flat=True)) == [
        "finding.raised",
        "finding.escalated",
        "finding.breached_again",
    ]


def test_a_dip_that_recovered_before_the_batch_was_sent_is_still_a_finding(
    api, developer, owner, assigned_validator, risk_officer
):
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    points = [p | _by_version(version) for p in _points(version, [0.80, 0.70, 0.80])]
    response = api(developer).post("/api/v1/monitoring/observations/", {"observations": points}, format="json")
    assert [b["level"] for b in response.data["breaches"]] == ["critical"]
    assert Finding.objects.get(version=version, metric="auc").severity == "high"


def _reported_under_loose_thresholds(
    api: Any, developer: Any, owner: Any, risk_officer: Any, version: Any, values: dict[str, float]
) -> dict[str, Deployment]:
    """The version (live in production) deployed to staging too; each environment reports its
    value for a day's window, in the order given, under thresholds too loose to breach; then
    the thresholds are put back to T2's. Returns the deployments by environment."""
    governance.deployment_record(actor=owner, version=version, environment=Environment.objects.get(name="staging"))
    deployments = {
        d.environment.name: d for d in Deployment.objects.filter(version=version).select_related("environment")
    }
    override = {"actor": risk_officer, "model": version.model, "measure": "relative_change"}
    services.thresholds_override(**override, warn=0.5, critical=0.9, reason="loose")
    batch = [
        _points(version, [value], deployment=deployments[name].pk)[0] | {"key": f"{n}-{name}"}
        for n, (name, value) in enumerate(values.items())
    ]
    response = api(developer).post("/api/v1/monitoring/observations/", {"observations": batch}, format="json")
    assert (response.status_code, response.data["breaches"]) == (200, [])
    services.thresholds_override(**override, warn=0.05, critical=0.1, reason="back")
    return deployments


def test_each_deployment_is_a_series_of_its_own_so_staging_does_not_hide_production(
    api, developer, owner, assigned_validator, risk_officer
):
    """The same version live in production and in staging, each reporting by its deployment.
    Thresholds loose at first (no breach); tightened, the hourly evaluation finds production's
    window, which staging's good one, stored after it for a window ending a moment later, no
    longer hides."""
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    _reported_under_loose_thresholds(
        api, developer, owner, risk_officer, version, {"production": 0.60, "staging": 0.80}
    )

    assert services.evaluate_all()["breaches"] == 1
    finding = Finding.objects.get(version=version, metric="auc")
    assert finding.severity == "high"
    assert finding.description.startswith("auc was 0.6 in production in the window ending")
    drawn = services.charts(version)
    assert [chart.count('class="point-critical"') for chart in drawn] == [1, 0]
    assert ['aria-label="auc in production"' in drawn[0], 'aria-label="auc in staging"' in drawn[1]] == [True, True]


def test_a_deployment_added_later_does_not_restart_the_clock_of_a_silent_one(
    developer, owner, assigned_validator, risk_officer
):
    version = deployed_t2(developer, owner, assigned_validator, risk_officer, deployed_days_ago=20)
    governance.deployment_record(actor=owner, version=version, environment=Environment.objects.get(name="staging"))
    assert services.evaluate_all()["stale"] == 1


def test_a_retired_deployments_last_window_is_judged_no_more(api, developer, owner, assigned_validator, risk_officer):
    """Staging reported a bad window under loose thresholds and was retired; tightened
    thresholds find nothing to judge in it (production reports well)."""
    version = deployed_t2(developer, owner, assigned_validator, risk_officer)
    deployments = _reported_under_loose_thresholds(
        api, developer, owner, risk_officer, version, {"staging": 0.60, "production": 0.80}
    )
    governance.deployment_retire(actor=owner, deployment=deployments["staging"], reason="the trial ended")

    assert services.evaluate_all()["breaches"] == 0
    assert not Finding.objects.filter(version=version).exists()
