"""The deployment gate as a CI/CD pipeline asks it, and the deployments and protected aliases
that ask the same question."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from governance import gate, services
from governance.management.commands.demo_seed import ASSESSMENTS
from governance.models import Environment
from registry import services as registry_services
from registry.models import VersionState
from tests.factories import make_model, make_version, submitted


def approved(developer, owner, risk_officer, tier=4):
    version, request = submitted(developer, owner, tier)
    services.decision_record(actor=risk_officer, request=request, outcome="approve")
    version.refresh_from_db()
    request.refresh_from_db()
    return version, request


def ask(api, user, version, environment="production"):
    response = api(user).get(
        f"/api/v1/gate/?model={version.model.name}&version={version.number}&environment={environment}"
    )
    assert response.status_code == 200, response.data
    return response.data


def test_an_unapproved_version_may_not_enter_production_but_may_enter_development(api, developer, owner):
    version, _ = submitted(developer, owner, 4)
    answer = ask(api, developer, version)
    assert answer["allowed"] is False
    assert answer["reasons"] == [f"version 1 of {version.model.name} has no approval, which T4 needs in production"]
    assert ask(api, developer, version, "development")["allowed"] is True


def test_an_approved_version_passes_and_its_deployment_is_recorded_and_audited(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    assert ask(api, developer, version) == {
        "allowed": True,
        "reasons": [],
        "model": version.model.name,
        "version": 1,
        "environment": "production",
    }
    url = f"/api/v1/models/{version.model.name}/versions/1/deployments/"
    made = api(developer).post(url, {"environment": "production", "endpoint": "https://score.internal"}, format="json")
    assert made.status_code == 201, made.data
    assert (made.data["environment"], made.data["deployed_by"]) == ("production", "dev")
    version.refresh_from_db()
    assert version.state == VersionState.DEPLOYED
    assert AuditEvent.objects.filter(action="deployment.recorded", after__environment="production").exists()
    twice = api(developer).post(url, {"environment": "production"}, format="json")
    assert twice.status_code == 409

    retired = api(developer).post(f"/api/v1/deployments/{made.data['id']}/retire/", {"reason": "v2"}, format="json")
    assert retired.status_code == 200 and retired.data["retired_by"] == "dev"
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED
    assert [d["id"] for d in api(developer).get("/api/v1/deployments/?live=true").data["results"]] == []


def test_recording_a_deployment_refuses_with_the_gates_reasons(api, developer, owner):
    version, _ = submitted(developer, owner, 2)
    reasons = ask(api, developer, version)["reasons"]
    refused = api(developer).post(
        f"/api/v1/models/{version.model.name}/versions/1/deployments/", {"environment": "production"}, format="json"
    )
    assert (refused.status_code, refused.data["code"], refused.data["fields"]) == (
        409,
        "gate_refused",
        {"gate": reasons},
    )
    assert refused.data["message"] == f"Version 1 of {version.model.name} may not enter production: {reasons[0]}."


def test_an_expired_approval_is_refused_after_the_grace(developer, owner, risk_officer, settings):
    version, request = approved(developer, owner, risk_officer)
    production = Environment.objects.get(name="production")
    day_after = request.valid_until + timedelta(days=1)
    assert gate.evaluate(version, production, now=request.valid_until).allowed
    expired = gate.evaluate(version, production, now=day_after)
    assert expired.reasons == [
        f"version 1 of {version.model.name}'s approval (request #{request.pk}) expired on {request.valid_until:%Y-%m-%d}"
    ]
    settings.GATE_GRACE_DAYS = 7
    assert gate.evaluate(version, production, now=day_after).allowed


def test_an_open_critical_finding_blocks_the_gate(api, developer, owner, risk_officer, validator):
    version, _ = approved(developer, owner, risk_officer)
    finding = services.finding_raise(
        actor=validator,
        model=version.model,
        title="Leaks the protected attribute",
        severity="critical",
        owner=owner,
        due_date=timezone.localdate() + timedelta(days=3),
    )
    assert ask(api, developer, version)["reasons"] == [
        f"critical finding #{finding.pk} is open: Leaks the protected attribute"
    ]


def test_an_exception_that_lapsed_since_the_approval_blocks_the_gate(developer, owner, risk_officer):
    production = Environment.objects.get(name="production")
    later = timezone.now() + timedelta(days=6)
    version, request = submitted(developer, owner, 4)
    before = services.exception_grant(
        actor=risk_officer,
        version=version,
        scope="use before validation",
        compensating_control="manual review",
        reason="deadline",
        expires_at=timezone.now() + timedelta(days=5),
    )
    assert f"exception #{before.pk} (use before validation) lapsed" in "; ".join(
        gate.evaluate(version, production, now=later).reasons
    )
    services.decision_record(actor=risk_officer, request=request, outcome="approve")
    version.refresh_from_db()
    assert gate.evaluate(version, production, now=later).allowed  # the approval weighed it

    since = services.exception_grant(
        actor=risk_officer,
        version=version,
        scope="serving outside the validated segment",
        compensating_control="daily monitoring",
        reason="pilot",
        expires_at=timezone.now() + timedelta(days=5),
    )
    assert gate.evaluate(version, production).allowed
    assert gate.evaluate(version, production, now=later).reasons == [
        f"exception #{since.pk} (serving outside the validated segment) lapsed on {since.expires_at:%Y-%m-%d}"
    ]


def test_a_prohibited_model_does_not_pass_even_with_an_approval(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    answers, _ = ASSESSMENTS[4]
    services.assessment_record(actor=risk_officer, model=version.model, answers=answers, flags=["prohibited_practice"])
    assert ask(api, developer, version)["reasons"] == [
        f"model {version.model.name} is assessed as a prohibited practice"
    ]


def test_a_model_without_a_tier_may_enter_development_only(api, developer):
    version = make_version(developer, make_model(developer))
    assert ask(api, developer, version, "development")["allowed"] is True
    assert ask(api, developer, version, "production")["reasons"] == [
        f"model {version.model.name} has no risk tier, and production needs an approval"
    ]


def test_an_approval_under_a_less_strict_tier_no_longer_passes(api, developer, owner, risk_officer):
    version, request = approved(developer, owner, risk_officer, tier=4)
    answers, flags = ASSESSMENTS[1]
    services.assessment_record(actor=owner, model=version.model, answers=answers, flags=flags)
    assert ask(api, developer, version)["reasons"] == [
        f"version 1 of {version.model.name} was approved as T4 (request #{request.pk}); the model is now T1"
    ]


def test_a_protected_alias_does_not_lead_to_a_suspended_version_until_it_is_reinstated(
    api, developer, owner, risk_officer, risk_officer_2
):
    """The kill switch stops whoever loads models:/<model>@production, on both APIs; the alias
    stays where it was, so a reinstatement brings the version back behind it."""
    version, _ = approved(developer, owner, risk_officer)
    name = version.model.name
    native = f"/api/v1/models/{name}/aliases/production/"
    _, token = registry_services.token_create(actor=developer, name="loader")
    loader = Client(HTTP_AUTHORIZATION=f"Bearer {token}")  # as the mlflow client sends it

    def resolve() -> Any:
        return loader.get("/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": "production"})

    assert api(developer).put(native, {"version": 1}, format="json").status_code == 200
    assert (
        api(developer).put(f"/api/v1/models/{name}/aliases/candidate/", {"version": 1}, format="json").status_code
        == 200
    )

    services.version_suspend(actor=risk_officer, version=version, reason="scores drifted")
    message = (
        f"Alias production of {name} points to version 1, which is suspended: "
        "a protected alias does not lead to a suspended version."
    )
    refused = api(developer).get(native)
    assert (refused.status_code, refused.data["message"]) == (403, message)
    refused = resolve()
    assert (refused.status_code, refused.json()) == (403, {"error_code": "PERMISSION_DENIED", "message": message})
    assert api(developer).get(f"/api/v1/models/{name}/aliases/candidate/").status_code == 200  # not protected
    assert [a["name"] for a in api(developer).get(f"/api/v1/models/{name}/aliases/").data] == [
        "candidate",
        "production",
    ]

    reinstatement = services.request_open(
        actor=owner, kind="reinstatement", model=version.model, version=version, rationale="feed outage"
    )
    services.decision_record(actor=risk_officer_2, request=reinstatement, outcome="approve")
    assert api(developer).get(native).data["version"] == 1
    assert resolve().json()["model_version"]["version"] == "1"


def test_production_moves_only_to_a_version_the_gate_lets_in(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    draft = registry_services.version_create(
        actor=developer, model=version.model, artifact_uri="s3://m/2", artifact_sha256="b" * 64
    )
    url = f"/api/v1/models/{version.model.name}/aliases/production/"
    refused = api(developer).put(url, {"version": draft.number}, format="json")
    assert (refused.status_code, refused.data["code"]) == (409, "gate_refused")
    assert refused.data["fields"]["gate"] == [
        f"version 2 of {version.model.name} has no approval, which T4 needs in production"
    ]
    assert api(developer).put(url, {"version": 1}, format="json").status_code == 200
    assert (
        api(developer)
        .put(f"/api/v1/models/{version.model.name}/aliases/candidate/", {"version": 2}, format="json")
        .status_code
        == 200
    )


def test_the_gate_takes_a_digest_and_refuses_bad_questions(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    by_digest = api(developer).get(f"/api/v1/gate/?digest={version.artifact_sha256}&environment=production")
    assert (by_digest.status_code, by_digest.data["allowed"], by_digest.data["version"]) == (200, True, 1)
    for query, field in [
        ("environment=production", "model"),
        (f"model={version.model.name}&version=1", "environment"),
        (f"model={version.model.name}&version=1&environment=moon", "environment"),
        (f"digest={version.artifact_sha256}&model=x&environment=production", "digest"),
        (f"model={version.model.name}&version=x&environment=production", "version"),
        (f"model={version.model.name}&version=%C2%B2&environment=production", "version"),
        ("digest=abc&environment=production", "digest"),
        ("model=a%00b&version=1&environment=production", "model"),
    ]:
        response = api(developer).get(f"/api/v1/gate/?{query}")
        assert (response.status_code, list(response.data["fields"])) == (400, [field]), query
    assert api(developer).get("/api/v1/gate/?model=nope&version=1&environment=production").status_code == 404


def test_only_deployers_and_the_owning_team_record_deployments(api, developer, owner, risk_officer, outsider):
    version, _ = approved(developer, owner, risk_officer)
    refused = api(outsider).post(
        f"/api/v1/models/{version.model.name}/versions/1/deployments/", {"environment": "staging"}, format="json"
    )
    assert refused.status_code == 403
    assert refused.data["message"] == f"Only deployers and the owning team (credit-risk) deploy {version.model.name}."


@pytest.mark.parametrize("tier, gated", [(1, ["staging", "production"]), (4, ["production"])])
def test_the_policy_says_which_environments_need_an_approval(api, developer, owner, tier, gated):
    version, _ = submitted(developer, owner, tier)
    for name in ("development", "staging", "production"):
        assert ask(api, developer, version, name)["allowed"] is (name not in gated), name
