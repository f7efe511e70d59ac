"""A version's life after its approval, as the people around it and the clock live it:
suspension (the kill switch) and reinstatement, decommissioning a version or a whole model,
revalidation and expiry by the clock, lapsed exceptions, and SLA reminders and escalations.
Each story asserts what a user sees: the HTTP answer, the gate's reasons, the audit event and
the notification queued."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent
from common.errors import Conflict, Unavailable, ValidationFailed
from governance import gate, selectors, services
from governance.models import ApprovalRequest, Deployment, Environment, RequestKind, RequestState, StageState
from notifications.models import Message
from registry import services as registry_services
from registry.models import Alias, ModelStatus, ModelVersion, RegisteredModel, VersionState
from tests.factories import (
    UserFactory,
    approve_with_condition,
    approved,
    assessed_model,
    make_model,
    make_version,
    submitted,
)

# --- helpers -------------------------------------------------------------------------------


def fresh(version: ModelVersion) -> ModelVersion:
    return ModelVersion.objects.select_related("model").get(pk=version.pk)


def ask_gate(version: ModelVersion, environment: str = "production", now: datetime | None = None) -> gate.Answer:
    return gate.evaluate(fresh(version), Environment.objects.get(name=environment), now=now)


def ask_gate_api(api: Any, user: Any, version: ModelVersion, environment: str = "production") -> dict[str, Any]:
    response = api(user).get(
        f"/api/v1/gate/?model={version.model.name}&version={version.number}&environment={environment}"
    )
    assert response.status_code == 200, response.data
    return response.data


def deploy(actor: Any, version: ModelVersion, environment: str = "production") -> Deployment:
    return services.deployment_record(
        actor=actor,
        version=version,
        environment=Environment.objects.get(name=environment),
        endpoint=f"https://{environment}.internal/score",
    )


def approve_release(developer: Any, owner: Any, risk_officer: Any, model: RegisteredModel) -> ModelVersion:
    """The next version of ``model`` (T4), submitted by its owner and approved."""
    version = make_version(developer, model)
    request = services.request_submit(actor=owner, version=version, rationale="ready for release")
    services.decision_record(actor=risk_officer, request=request, outcome="approve")
    return fresh(version)


def after(event: AuditEvent) -> dict[str, Any]:
    assert event.after is not None
    return event.after


def addresses(message: Message) -> set[str]:
    return set(message.deliveries.exclude(address="").values_list("address", flat=True))


def only_message(event: str, model: RegisteredModel) -> Message:
    return Message.objects.get(event=event, model_name=model.name)


def decide(api: Any, user: Any, request_id: int, outcome: str = "approve", comment: str = "") -> Any:
    return api(user).post(
        f"/api/v1/approval-requests/{request_id}/decisions/", {"outcome": outcome, "comment": comment}, format="json"
    )


def stages_of(policy_stages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(s["step"], s["name"], s["role"], s["quorum"], s["sla_business_days"]) for s in policy_stages]


# --- suspension ----------------------------------------------------------------------------


def test_a_risk_officer_suspends_a_deployed_version_and_the_gate_refuses_it(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    deploy(developer, version)
    name = version.model.name
    assert ask_gate_api(api, developer, version)["allowed"] is True

    response = api(risk_officer).post(
        f"/api/v1/models/{name}/versions/1/suspend/", {"reason": "scores drifted badly"}, format="json"
    )

    assert response.status_code == 200, response.data
    assert response.data == {"model": name, "version": 1, "state": "suspended"}
    assert fresh(version).state == VersionState.SUSPENDED
    answer = ask_gate_api(api, developer, version)
    assert answer["allowed"] is False
    assert answer["reasons"] == [f"version 1 of {name} is suspended"]

    event = AuditEvent.objects.filter(action="version.state_changed", model_name=name).order_by("-seq").first()
    assert event is not None
    assert (event.actor_name, event.before, after(event)["state"], event.reason) == (
        "risk",
        {"state": "deployed"},
        "suspended",
        "scores drifted badly",
    )
    told = only_message("version.suspended", version.model)
    assert {"owner@example.com", "risk@example.com"} <= addresses(told)
    assert told.payload["reason"] == "scores drifted badly"
    assert told.payload["deployed_in"] == ["production"]


@pytest.mark.parametrize("who", ["developer", "owner"])
def test_only_a_risk_officer_suspends(api, developer, owner, risk_officer, request, who):
    version, _ = approved(developer, owner, risk_officer)
    events = AuditEvent.objects.count()

    response = api(request.getfixturevalue(who)).post(
        f"/api/v1/models/{version.model.name}/versions/1/suspend/", {"reason": "I think it is wrong"}, format="json"
    )

    assert response.status_code == 403, response.data
    assert response.data["message"] == "Only a risk officer suspends a version."
    assert fresh(version).state == VersionState.APPROVED
    assert AuditEvent.objects.count() == events
    assert not Message.objects.filter(event="version.suspended").exists()


def test_a_draft_cannot_be_suspended(api, developer, owner, risk_officer):
    version = make_version(developer, assessed_model(owner, 4))

    response = api(risk_officer).post(
        f"/api/v1/models/{version.model.name}/versions/1/suspend/", {"reason": "just in case"}, format="json"
    )

    assert response.status_code == 409, response.data
    assert response.data["code"] == "invalid_transition"
    assert response.data["message"].startswith(
        f"Version 1 of {version.model.name} is draft; it cannot become suspended"
    )
    assert fresh(version).state == VersionState.DRAFT


# --- deprecation ---------------------------------------------------------------------------


def test_the_owner_deprecates_a_version_once_retired_and_the_gate_then_refuses_it(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    live = deploy(developer, version)
    name = version.model.name
    url = f"/api/v1/models/{name}/versions/1/deprecate/"

    refused = api(developer).post(url, {"reason": "superseded by v2"}, format="json")
    assert refused.status_code == 403
    assert refused.data["message"] == f"Only the owner of {name} or a risk officer deprecates its versions."
    assert api(owner).post(url, {"reason": " "}, format="json").status_code == 400
    still_live = api(owner).post(url, {"reason": "superseded by v2"}, format="json")
    assert still_live.status_code == 409
    assert still_live.data["message"] == f"Version 1 of {name} is deployed in production: retire its deployments first."

    services.deployment_retire(actor=owner, deployment=live, reason="traffic moved to v2")
    done = api(owner).post(url, {"reason": "superseded by v2"}, format="json")
    assert done.status_code == 200, done.data
    assert done.data == {"model": name, "version": 1, "state": "deprecated"}
    assert ask_gate_api(api, developer, version, "staging")["reasons"][0] == f"version 1 of {name} is deprecated"
    event = AuditEvent.objects.filter(action="version.state_changed", model_name=name).order_by("-seq").first()
    assert event is not None
    assert (event.actor_name, event.before, event.after["state"], event.reason) == (
        "owner",
        {"state": "approved"},
        "deprecated",
        "superseded by v2",
    )
    again = api(owner).post(url, {"reason": "twice"}, format="json")
    assert again.status_code == 409
    assert "deprecated" in again.data["message"]


def test_a_draft_cannot_be_deprecated(api, developer, owner):
    version = make_version(developer, make_model(owner))
    refused = api(owner).post(
        f"/api/v1/models/{version.model.name}/versions/1/deprecate/", {"reason": "never mind"}, format="json"
    )
    assert refused.status_code == 409
    assert fresh(version).state == VersionState.DRAFT


def test_deprecating_a_suspended_version_withdraws_its_reinstatement(developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    services.version_suspend(actor=risk_officer, version=version, reason="scores drifted")
    reinstatement = services.request_open(
        actor=owner, kind="reinstatement", model=version.model, version=version, rationale="feed outage"
    )
    services.version_deprecate(actor=owner, version=version, reason="retraining instead")
    reinstatement.refresh_from_db()
    assert reinstatement.state == RequestState.WITHDRAWN
    assert fresh(version).state == VersionState.DEPRECATED
    withdrawn = AuditEvent.objects.get(action="approval_request.withdrawn", object_id=str(reinstatement.pk))
    assert withdrawn.reason == "version deprecated: retraining instead"


# --- reinstatement -------------------------------------------------------------------------


def test_a_reinstatement_lifts_the_suspension_once_a_risk_officer_approves(
    api, developer, owner, risk_officer, risk_officer_2
):
    version, _ = approved(developer, owner, risk_officer)
    deploy(developer, version)
    services.version_suspend(actor=risk_officer, version=version, reason="scores drifted")
    name = version.model.name

    opened = api(owner).post(
        f"/api/v1/models/{name}/versions/1/reinstatement/",
        {"rationale": "drift explained: a feed outage"},
        format="json",
    )

    assert opened.status_code == 201, opened.data
    policy = selectors.published_policy(4)
    assert policy is not None
    assert (opened.data["kind"], opened.data["state"], opened.data["version"], opened.data["submitted_by"]) == (
        "reinstatement",
        "open",
        1,
        "owner",
    )
    assert opened.data["policy"] == {"id": policy.pk, "tier": 4, "version": policy.version}
    assert stages_of(opened.data["stages"]) == stages_of(policy.stages)
    assert [stage["state"] for stage in opened.data["stages"]] == ["active"]
    assert fresh(version).state == VersionState.SUSPENDED  # nothing changes until it is decided
    assert ask_gate(version).allowed is False

    decided = decide(api, risk_officer_2, opened.data["id"])

    assert decided.status_code == 201, decided.data
    assert decided.data["request"]["state"] == "approved"
    assert fresh(version).state == VersionState.DEPLOYED  # it still runs in production
    assert ask_gate_api(api, developer, version) == {
        "allowed": True,
        "reasons": [],
        "model": name,
        "version": 1,
        "environment": "production",
    }
    lifted = AuditEvent.objects.filter(action="version.state_changed", model_name=name).order_by("-seq").first()
    assert lifted is not None
    assert (lifted.before, after(lifted)["state"], lifted.reason) == (
        {"state": "suspended"},
        "deployed",
        f"suspension lifted by request #{opened.data['id']}",
    )
    assert "owner@example.com" in addresses(only_message("version.reinstated", version.model))


def test_only_a_suspended_version_is_reinstated(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)

    response = api(owner).post(
        f"/api/v1/models/{version.model.name}/versions/1/reinstatement/", {"rationale": "please"}, format="json"
    )

    assert response.status_code == 409, response.data
    assert response.data["message"] == f"Version 1 of {version.model.name} is approved, not suspended."
    assert not ApprovalRequest.objects.filter(kind=RequestKind.REINSTATEMENT).exists()


# --- decommissioning -----------------------------------------------------------------------


def test_decommissioning_a_version_retires_its_deployment_and_clears_its_alias(
    api, developer, owner, risk_officer, risk_officer_2, auditor
):
    model = assessed_model(owner, 4)
    name = model.name
    old = approve_release(developer, owner, risk_officer, model)
    new = approve_release(developer, owner, risk_officer, model)
    deployment = deploy(developer, old)
    registry_services.alias_set(actor=developer, model=model, name="production", number=1)
    downstream_model = make_model(developer)
    make_version(developer, downstream_model, parents=[(old, "fine_tuned_from")])

    opened = api(owner).post(
        f"/api/v1/models/{name}/versions/1/decommission/",
        {"rationale": "superseded by version 2", "replacement": {"model": name, "version": 2}},
        format="json",
    )

    assert opened.status_code == 201, opened.data
    assert (opened.data["kind"], opened.data["version"], opened.data["replacement"]) == (
        "decommission",
        1,
        {"model": name, "version": 2},
    )
    assert opened.data["impact"] == {
        "deployments": [
            {"id": deployment.pk, "version": 1, "environment": "production", "endpoint": deployment.endpoint}
        ],
        "aliases": [{"alias": "production", "version": 1}],
        "downstream": [{"model": downstream_model.name, "model_id": downstream_model.pk, "versions": [1]}],
    }
    assert ask_gate(old).allowed is True  # nothing changes until it is decided

    decided = decide(api, risk_officer_2, opened.data["id"], comment="replacement is live")

    assert decided.status_code == 201, decided.data
    request_id = opened.data["id"]
    deployment.refresh_from_db()
    assert deployment.retired_at is not None
    assert deployment.retired_by == risk_officer_2
    assert f"request #{request_id}" in deployment.retired_reason
    assert "superseded by version 2" in deployment.retired_reason
    assert not Alias.objects.filter(model=model, name="production").exists()
    assert fresh(old).state == VersionState.DECOMMISSIONED
    assert fresh(new).state == VersionState.APPROVED
    assert RegisteredModel.objects.get(pk=model.pk).status == ModelStatus.ACTIVE
    refused = ask_gate_api(api, developer, old)
    assert refused["allowed"] is False
    assert refused["reasons"] == [f"version 1 of {name} is decommissioned"]
    assert ask_gate_api(api, developer, new)["allowed"] is True
    assert AuditEvent.objects.filter(action="deployment.retired", after__request=request_id).count() == 1
    assert AuditEvent.objects.filter(action="alias.cleared", object_id=f"{name}@production").count() == 1
    assert "risk@example.com" in addresses(only_message("decommissioned", model))

    found = api(auditor).get("/api/v1/approval-requests/?kind=decommission&state=approved")
    assert found.status_code == 200, found.data
    [row] = found.data["results"]
    assert (row["id"], row["model"], row["version"], row["rationale"], row["replacement"]) == (
        request_id,
        name,
        1,
        "superseded by version 2",
        {"model": name, "version": 2},
    )
    assert row["closed_at"] is not None
    assert [(d["person"], d["outcome"], d["comment"]) for d in row["decisions"]] == [
        ("risk2", "approve", "replacement is live")
    ]


def test_a_decommission_whose_replacement_was_suspended_meanwhile_is_not_carried_out(
    api, developer, owner, risk_officer, risk_officer_2
):
    model = assessed_model(owner, 4)
    old = approve_release(developer, owner, risk_officer, model)
    new = approve_release(developer, owner, risk_officer, model)
    deploy(developer, old)
    opened = api(owner).post(
        f"/api/v1/models/{model.name}/versions/1/decommission/",
        {"rationale": "superseded by version 2", "replacement": {"model": model.name, "version": 2}},
        format="json",
    )
    services.version_suspend(actor=risk_officer, version=new, reason="drift")

    decided = decide(api, risk_officer_2, opened.data["id"], comment="replacement is live")

    assert decided.status_code == 409
    assert decided.data["fields"] == {
        "replacement": [
            f"Version 2 of {model.name}, named to take over, is suspended now: reject or withdraw this request, "
            "and ask again with a replacement in force or none"
        ]
    }
    assert fresh(old).state == VersionState.DEPLOYED
    assert ApprovalRequest.objects.get(pk=opened.data["id"]).state == "open"


def test_a_decommission_a_risk_officer_asked_for_is_asked_again_when_the_owner_raises_the_tier(
    developer, owner, risk_officer, risk_officer_2
):
    """The owner cannot withdraw it, nor make it go away by reassessing: the tier change
    withdraws it as put to the old tier's people and asks it again, as the risk officer's."""
    from tests.factories import ASSESSMENTS

    model = assessed_model(owner, 4)
    version = approve_release(developer, owner, risk_officer, model)
    first = services.request_open(
        actor=risk_officer, kind="decommission", model=model, version=version, rationale="vendor contract ends"
    )
    answers, flags = ASSESSMENTS[3]
    services.assessment_record(actor=owner, model=model, answers=answers, flags=flags)

    first.refresh_from_db()
    again = ApprovalRequest.objects.get(model=model, kind=RequestKind.DECOMMISSION, state=RequestState.OPEN)
    assert first.state == RequestState.WITHDRAWN
    assert (again.submitted_by, again.tier, again.version) == (risk_officer, 3, version)
    assert again.rationale == "vendor contract ends (asked again under T3)"


def test_only_the_owner_or_a_risk_officer_asks_to_decommission(api, developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)

    response = api(developer).post(
        f"/api/v1/models/{version.model.name}/versions/1/decommission/", {"rationale": "old"}, format="json"
    )

    assert response.status_code == 403, response.data
    assert response.data["message"] == (
        f"Only the owner of {version.model.name} or a risk officer asks to decommission it."
    )
    assert not ApprovalRequest.objects.filter(kind=RequestKind.DECOMMISSION).exists()


def test_decommissioning_a_whole_model_retires_every_version_and_withdraws_open_requests(
    api, developer, owner, risk_officer, risk_officer_2
):
    model = assessed_model(owner, 4)
    name = model.name
    deployed = approve_release(developer, owner, risk_officer, model)
    deployment = deploy(developer, deployed)
    idle = approve_release(developer, owner, risk_officer, model)
    pending = make_version(developer, model)
    release = services.request_submit(actor=owner, version=pending, rationale="v3 please")

    opened = api(owner).post(f"/api/v1/models/{name}/decommission/", {"rationale": "the product closed"}, format="json")

    assert opened.status_code == 201, opened.data
    assert (opened.data["kind"], opened.data["version"]) == ("decommission", None)
    assert [d["version"] for d in opened.data["impact"]["deployments"]] == [1]

    decided = decide(api, risk_officer_2, opened.data["id"])

    assert decided.status_code == 201, decided.data
    assert RegisteredModel.objects.get(pk=model.pk).status == ModelStatus.DECOMMISSIONED
    assert fresh(deployed).state == VersionState.DECOMMISSIONED
    assert fresh(idle).state == VersionState.DECOMMISSIONED
    release.refresh_from_db()
    assert release.state == RequestState.WITHDRAWN
    assert f"request #{opened.data['id']}" in release.closed_reason
    assert fresh(pending).state == VersionState.DRAFT  # withdrawn, it is a draft again, never released
    deployment.refresh_from_db()
    assert deployment.retired_at is not None
    for version in (deployed, idle, pending):
        answer = ask_gate_api(api, developer, version)
        assert answer["allowed"] is False
        assert f"model {name} is decommissioned" in answer["reasons"]
    status = AuditEvent.objects.filter(model_name=name, after__status="decommissioned").order_by("-seq").first()
    assert status is not None and f"request #{opened.data['id']}" in status.reason

    again = api(owner).post(f"/api/v1/models/{name}/decommission/", {"rationale": "twice"}, format="json")
    assert again.status_code == 409, again.data
    assert again.data["message"] == f"Model {name} is decommissioned: nothing more can be asked of it."


def test_a_draft_of_a_decommissioned_model_cannot_be_submitted(api, developer, owner, risk_officer, risk_officer_2):
    """A decommissioned model takes no new versions and no more requests: the draft it kept
    (here one whose release the decommission withdrew) is not put up for release either."""
    model = assessed_model(owner, 4)
    approve_release(developer, owner, risk_officer, model)
    draft = make_version(developer, model)
    services.request_submit(actor=owner, version=draft, rationale="v2 please")
    decommission = services.request_open(
        actor=owner, kind=RequestKind.DECOMMISSION, model=model, rationale="the product closed"
    )
    services.decision_record(actor=risk_officer_2, request=decommission, outcome="approve")
    assert fresh(draft).state == VersionState.DRAFT

    response = api(owner).post(f"/api/v1/models/{model.name}/versions/2/submit/", {"rationale": "again"}, format="json")

    assert response.status_code == 409, response.data
    assert "decommissioned" in response.data["message"]
    assert fresh(draft).state == VersionState.DRAFT
    assert not ApprovalRequest.objects.filter(version=draft, state=RequestState.OPEN).exists()


# --- revalidation and expiry by the clock --------------------------------------------------


def sweep_at(moment: datetime) -> dict[str, int]:
    """The clock's sweep, run at ``moment`` (everything it writes is stamped then)."""
    with time_machine.travel(moment, tick=False):
        return services.lifecycle_sweep()


def test_the_clock_asks_for_revalidation_expires_the_approval_and_a_revalidation_renews_it(
    api, developer, owner, risk_officer, risk_officer_2, settings
):
    settings.GATE_GRACE_DAYS = 0
    version, release = approved(developer, owner, risk_officer)
    assert release.valid_until is not None and release.closed_at is not None
    valid_until = release.valid_until
    assert (valid_until.year, valid_until.month) == (release.closed_at.year + 4, release.closed_at.month)  # 48 months

    assert sweep_at(valid_until - timedelta(days=31))["revalidations"] == 0
    assert not ApprovalRequest.objects.filter(kind=RequestKind.REVALIDATION).exists()
    assert not Message.objects.filter(event="approval.expiring").exists()

    counts = sweep_at(valid_until - timedelta(days=29))
    assert counts == {
        "expired": 0,
        "revalidations": 1,
        "exceptions": 0,
        "conditions": 0,
        "reminders": 0,
        "escalations": 0,
    }
    revalidation = ApprovalRequest.objects.get(kind=RequestKind.REVALIDATION)
    assert (revalidation.version_id, revalidation.state, revalidation.submitted_by.username) == (
        version.pk,
        RequestState.OPEN,
        "warden",
    )
    assert f"request #{release.pk}" in revalidation.rationale
    opened = AuditEvent.objects.get(action="approval_request.submitted", object_id=str(revalidation.pk))
    assert (opened.actor_name, after(opened)["kind"]) == ("warden", "revalidation")
    expiring = only_message("approval.expiring", version.model)
    assert "owner@example.com" in addresses(expiring)
    assert f"{valid_until:%Y-%m-%d}" in expiring.subject

    assert sweep_at(valid_until - timedelta(days=28))["revalidations"] == 0
    assert ApprovalRequest.objects.filter(kind=RequestKind.REVALIDATION).count() == 1
    assert Message.objects.filter(event="approval.expiring").count() == 1
    assert ask_gate(version, now=valid_until - timedelta(days=1)).allowed is True

    day_after = valid_until + timedelta(days=1)
    counts = sweep_at(day_after)
    assert (counts["expired"], counts["revalidations"]) == (1, 0)
    release.refresh_from_db()
    assert release.state == RequestState.EXPIRED
    expired = AuditEvent.objects.get(action="approval_request.expired", object_id=str(release.pk))
    assert expired.actor_name == "warden"
    assert "owner@example.com" in addresses(only_message("approval.expired", version.model))
    assert sweep_at(day_after + timedelta(hours=1))["expired"] == 0
    assert ApprovalRequest.objects.filter(kind=RequestKind.REVALIDATION).count() == 1

    refused = ask_gate(version, now=day_after)
    assert refused.allowed is False
    assert refused.reasons == [
        f"version 1 of {version.model.name}'s approval (request #{release.pk}) expired on {valid_until:%Y-%m-%d}"
    ]
    settings.GATE_GRACE_DAYS = 5
    assert ask_gate(version, now=day_after).allowed is True
    assert ask_gate(version, now=valid_until + timedelta(days=6)).allowed is False

    settings.GATE_GRACE_DAYS = 0
    renewed_at = day_after + timedelta(hours=2)
    with time_machine.travel(renewed_at, tick=False):
        decided = decide(api, risk_officer_2, revalidation.pk)
        assert decided.status_code == 201, decided.data
        assert ask_gate_api(api, developer, version)["allowed"] is True
    revalidation.refresh_from_db()
    assert revalidation.state == RequestState.APPROVED
    assert revalidation.valid_until is not None
    assert (revalidation.valid_until.year, revalidation.valid_until.month) == (renewed_at.year + 4, renewed_at.month)
    assert ask_gate(version, now=renewed_at + timedelta(days=1)).allowed is True
    assert fresh(version).state == VersionState.APPROVED  # a revalidation moves no version
    later = sweep_at(renewed_at + timedelta(days=1))
    assert (later["expired"], later["revalidations"]) == (0, 0)
    assert ApprovalRequest.objects.filter(kind=RequestKind.REVALIDATION).count() == 1


def renewed_early(developer: Any, owner: Any, risk_officer: Any, risk_officer_2: Any) -> tuple[Any, ...]:
    """An approval revalidated 20 days before it lapses, and the clock's sweep the day after
    the old approval's valid-until: (version, release, revalidation, that sweep's counts)."""
    version, release = approved(developer, owner, risk_officer)
    assert release.valid_until is not None
    sweep_at(release.valid_until - timedelta(days=29))
    revalidation = ApprovalRequest.objects.get(kind=RequestKind.REVALIDATION)
    with time_machine.travel(release.valid_until - timedelta(days=20), tick=False):
        services.decision_record(actor=risk_officer_2, request=revalidation, outcome="approve")
    revalidation.refresh_from_db()
    assert revalidation.state == RequestState.APPROVED
    counts = sweep_at(release.valid_until + timedelta(days=1))
    release.refresh_from_db()
    return version, release, revalidation, counts


def test_a_revalidation_approved_before_the_old_approval_lapses_keeps_the_gate_open(
    developer, owner, risk_officer, risk_officer_2, settings
):
    """The point of asking early: the renewed approval takes over, and the old approval's
    lapse, recorded afterwards, must not close the gate."""
    settings.GATE_GRACE_DAYS = 0
    version, release, revalidation, _ = renewed_early(developer, owner, risk_officer, risk_officer_2)
    assert release.valid_until is not None

    answer = ask_gate(version, now=release.valid_until + timedelta(days=1))

    assert answer.allowed is True, answer.reasons
    current = selectors.current_approval(version)
    assert current is not None and current.pk == revalidation.pk


def test_the_clock_asks_for_no_second_revalidation_of_a_renewed_approval(
    developer, owner, risk_officer, risk_officer_2
):
    _, _, revalidation, counts = renewed_early(developer, owner, risk_officer, risk_officer_2)

    assert counts["revalidations"] == 0
    assert list(ApprovalRequest.objects.filter(kind=RequestKind.REVALIDATION).values_list("pk", flat=True)) == [
        revalidation.pk
    ]
    assert Message.objects.filter(event="approval.expiring").count() == 1


def test_a_renewed_approval_expires_quietly(developer, owner, risk_officer, risk_officer_2):
    """The old approval is recorded as expired, but no one is told it lapsed: it was renewed."""
    _, release, _, counts = renewed_early(developer, owner, risk_officer, risk_officer_2)
    assert counts["expired"] == 1 and release.state == RequestState.EXPIRED
    event = AuditEvent.objects.get(action="approval_request.expired", object_id=str(release.pk))
    assert event.reason.endswith("(since renewed)")
    assert not Message.objects.filter(event="approval.expired").exists()


def test_a_withdrawn_revalidation_is_asked_again_at_the_next_sweep(developer, owner, risk_officer):
    version, release = approved(developer, owner, risk_officer)
    assert release.valid_until is not None
    sweep_at(release.valid_until - timedelta(days=29))
    first = ApprovalRequest.objects.get(kind=RequestKind.REVALIDATION)
    services.request_withdraw(actor=risk_officer, request=first, reason="wrong evidence attached")

    assert sweep_at(release.valid_until - timedelta(days=28))["revalidations"] == 1
    again = ApprovalRequest.objects.get(kind=RequestKind.REVALIDATION, state=RequestState.OPEN)
    assert again.pk != first.pk and fresh(version).state == VersionState.APPROVED


def test_the_clock_refuses_to_act_as_a_person_named_warden(developer, owner, risk_officer):
    """The name is Warden's own account: a person given it would open revalidations and record
    expiries in their own name, and their own requests would count as Warden's checks."""
    _, release = approved(developer, owner, risk_officer)
    UserFactory(username="warden")
    with pytest.raises(Unavailable, match="The user 'warden' is active"):
        sweep_at(release.valid_until - timedelta(days=29))
    assert not ApprovalRequest.objects.filter(kind=RequestKind.REVALIDATION).exists()


def test_a_decommissions_impact_follows_the_lineage_to_every_generation_in_one_query(
    developer, owner, django_assert_num_queries
):
    """Through the model's own later versions and through other models, each model named once,
    with the versions of it downstream; however long the lineage, the walk is one statement."""
    model = assessed_model(owner, 4)
    base = make_version(developer, model)
    retrained = make_version(developer, model, parents=[(base, "retrained_from")])
    scorer, pricer = make_model(developer, name="scorer"), make_model(developer, name="pricer")
    s1 = make_version(developer, scorer, parents=[(retrained, "distilled_from")])
    s2 = make_version(developer, scorer, parents=[(s1, "retrained_from")])
    p = make_version(developer, pricer, parents=[(s2, "fine_tuned_from")])
    for _ in range(5):
        p = make_version(developer, pricer, parents=[(p, "retrained_from")])
    make_version(developer, make_model(developer, name="unrelated"))

    with django_assert_num_queries(3):  # the deployments, the aliases, the lineage
        whole = services.impact_of(model, None)["downstream"]
    first = services.impact_of(model, base)["downstream"]
    assert (
        whole
        == first
        == [
            {"model": "pricer", "model_id": pricer.pk, "versions": [1, 2, 3, 4, 5, 6]},
            {"model": "scorer", "model_id": scorer.pk, "versions": [1, 2]},
        ]
    )
    assert services.impact_of(scorer, s2)["downstream"] == [
        {"model": "pricer", "model_id": pricer.pk, "versions": [1, 2, 3, 4, 5, 6]}
    ]


def test_a_decommissions_impact_names_a_downstream_model_only_to_those_who_may_see_it(
    api, developer, owner, outsider, risk_officer
):
    """A restricted model of another team, fine-tuned from the version, is counted in the
    impact (by its id) for everyone, and named only to those who may see it: not to the owner
    asking, and not in the trail or the notification, which others read."""
    version, _ = approved(developer, owner, risk_officer)
    secret = make_model(outsider, team="pricing", name="secret-pricing-engine", restricted=True)
    make_version(outsider, secret, parents=[(version, "fine_tuned_from")])
    assert api(owner).get("/api/v1/models/secret-pricing-engine/").status_code == 404

    opened = api(owner).post(
        f"/api/v1/models/{version.model.name}/versions/1/decommission/", {"rationale": "old"}, format="json"
    )

    assert opened.status_code == 201, opened.data
    hidden = [{"model": None, "model_id": secret.pk, "versions": [1]}]
    assert opened.data["impact"]["downstream"] == hidden
    assert api(owner).get(f"/api/v1/approval-requests/{opened.data['id']}/").data["impact"]["downstream"] == hidden
    shown = api(risk_officer).get(f"/api/v1/approval-requests/{opened.data['id']}/").data["impact"]["downstream"]
    assert shown == [{"model": "secret-pricing-engine", "model_id": secret.pk, "versions": [1]}]
    listed = api(owner).get("/api/v1/approval-requests/").data["results"]
    assert [r["impact"]["downstream"] for r in listed if r["id"] == opened.data["id"]] == [hidden]
    submitted_event = AuditEvent.objects.get(action="approval_request.submitted", object_id=str(opened.data["id"]))
    assert submitted_event.after["impact"]["downstream"] == hidden

    decide(api, risk_officer, opened.data["id"], comment="retired")
    message = Message.objects.filter(event="decommissioned").latest("pk")
    assert "secret-pricing-engine" not in json.dumps(message.payload)
    assert message.payload["impact"]["downstream"] == hidden


def test_a_decommissions_replacement_is_named_only_to_those_who_may_see_it(
    api, developer, owner, outsider, risk_officer, risk_officer_2
):
    """As its impact: the version number for everyone, the restricted model's name only to those
    who may see it, and neither in the trail nor in the notification, which others read."""
    from common.roles import Role
    from tests.factories import UserFactory
    from tests.governance.test_admin import signed_in

    pricing_owner = UserFactory(username="pricing-owner", groups=[Role.MODEL_OWNER, "pricing"])
    secret = assessed_model(pricing_owner, 4, team="pricing", name="secret-engine", restricted=True)
    approve_release(outsider, pricing_owner, risk_officer, secret)
    version, _ = approved(developer, owner, risk_officer)

    opened = api(risk_officer).post(
        f"/api/v1/models/{version.model.name}/versions/1/decommission/",
        {"rationale": "the pricing engine takes over", "replacement": {"model": "secret-engine", "version": 1}},
        format="json",
    )

    assert opened.status_code == 201, opened.data
    url = f"/api/v1/approval-requests/{opened.data['id']}/"
    assert api(owner).get(url).data["replacement"] == {"model": None, "version": 1}
    assert api(risk_officer_2).get(url).data["replacement"] == {"model": "secret-engine", "version": 1}
    page = signed_in(owner).get(f"/admin/governance/approvalrequest/{opened.data['id']}/change/")
    assert page.status_code == 200
    assert b"a model you may not see v1" in page.content and b"secret-engine" not in page.content
    submitted_event = AuditEvent.objects.get(action="approval_request.submitted", object_id=str(opened.data["id"]))
    assert submitted_event.after["replacement"] == {"model": None, "version": 1}

    assert decide(api, risk_officer_2, opened.data["id"], comment="retired").status_code == 201
    message = Message.objects.filter(event="decommissioned").latest("pk")
    assert message.payload["replacement"] == {"model": None, "version": 1}
    assert "secret-engine" not in json.dumps(message.payload)


def test_a_condition_open_past_its_due_date_is_told_once_and_then_closes_the_gate(
    developer, owner, risk_officer, settings
):
    """Approved with a condition due in two days: the day after, the clock records it overdue
    and tells its owner and the risk officers, once; GATE_GRACE_DAYS later the gate refuses the
    version until the condition is met."""
    settings.GATE_GRACE_DAYS = 3
    version = make_version(developer, assessed_model(owner, 4))
    request = services.request_submit(actor=owner, version=version, rationale="ready")
    due = timezone.localdate() + timedelta(days=2)
    services.decision_record(
        actor=risk_officer,
        request=request,
        outcome="approve_with_conditions",
        comment="ship it, then backtest",
        conditions=[services.ConditionIn("backtest on Q3 data", owner, due)],
    )
    condition = request.conditions.get()
    noon = datetime.combine(due, datetime.min.time(), tzinfo=timezone.get_current_timezone()) + timedelta(hours=12)

    assert sweep_at(noon)["conditions"] == 0  # due today: not yet overdue
    assert sweep_at(noon + timedelta(days=1))["conditions"] == 1
    assert sweep_at(noon + timedelta(days=2))["conditions"] == 0  # told once
    event = AuditEvent.objects.get(action="condition.overdue")
    assert event.after == {
        "request": request.pk,
        "due_date": due.isoformat(),
        "gate_closes_on": (due + timedelta(days=4)).isoformat(),
    }
    assert Message.objects.filter(event="condition.overdue").count() == 1
    assert {owner.email, risk_officer.email} <= addresses(Message.objects.get(event="condition.overdue"))
    assert ask_gate(version, now=noon + timedelta(days=3)).allowed is True  # within the grace

    answer = ask_gate(version, now=noon + timedelta(days=4))
    assert answer.reasons == [
        f"condition #{condition.pk} of its approval (request #{request.pk}) was due on {due:%Y-%m-%d} "
        "and is still open: backtest on Q3 data"
    ]
    assert ask_gate(version, "staging", now=noon + timedelta(days=4)).allowed is True  # T4 gates production only
    services.condition_close(actor=owner, condition=condition, state="met", note="backtest attached")
    assert ask_gate(version, now=noon + timedelta(days=4)).allowed is True


def test_only_conditions_the_gate_holds_a_version_to_are_told_overdue(
    developer, owner, assigned_validator, risk_officer, risk_officer_2
):
    """Of a T2 request rejected after its validator approved with a condition, and of a release
    approval since superseded by a revalidation, no condition is told overdue: the gate weighs
    the current approval's alone. A reinstatement, which the gate does not weigh, takes none."""
    in_two_days = timezone.localdate() + timedelta(days=2)
    _, rejected = submitted(developer, owner, 2)
    approve_with_condition(assigned_validator, rejected, owner, days=2)
    services.decision_record(actor=risk_officer, request=rejected, outcome="reject", comment="not fit")

    version = make_version(developer, assessed_model(owner, 4))
    release = services.request_submit(actor=owner, version=version, rationale="ready")
    approve_with_condition(risk_officer, release, owner, days=2)
    held = sweep_at(datetime.combine(in_two_days + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
    assert held["conditions"] == 1  # the release's, while it is the current approval
    revalidation = services.request_open(
        actor=owner, kind="revalidation", model=version.model, version=fresh(version), rationale="yearly"
    )
    services.decision_record(actor=risk_officer_2, request=revalidation, outcome="approve")
    release.conditions.update(overdue_at=None)  # as if not yet told
    later = sweep_at(datetime.combine(in_two_days + timedelta(days=2), datetime.min.time(), tzinfo=UTC))
    assert later["conditions"] == 0
    assert [e.after["request"] for e in AuditEvent.objects.filter(action="condition.overdue")] == [release.pk]

    services.version_suspend(actor=risk_officer, version=fresh(version), reason="drift")
    reinstatement = services.request_open(
        actor=owner, kind="reinstatement", model=version.model, version=fresh(version), rationale="feed fixed"
    )
    with pytest.raises(ValidationFailed) as refused:
        services.decision_record(
            actor=risk_officer_2,
            request=reinstatement,
            outcome="approve_with_conditions",
            comment="watch it",
            conditions=[services.ConditionIn("weekly report", owner, in_two_days)],
        )
    assert refused.value.fields == {
        "conditions": ["a reinstatement takes no conditions: the gate holds a version to its approval's"]
    }


def test_a_rejected_revalidation_suspends_the_version_and_closes_the_gate(
    developer, owner, risk_officer, risk_officer_2
):
    """Its validators found the version unfit: it is suspended at once (a reinstatement is the
    way back), not left to pass the gate until its old approval lapses."""
    version, _ = approved(developer, owner, risk_officer)
    deploy(developer, version)
    revalidation = services.request_open(
        actor=owner, kind="revalidation", model=version.model, version=fresh(version), rationale="critical drift"
    )
    services.decision_record(actor=risk_officer_2, request=revalidation, outcome="reject", comment="no longer fit")

    assert fresh(version).state == VersionState.SUSPENDED
    answer = ask_gate(version)
    assert answer.allowed is False and any("suspended" in reason for reason in answer.reasons), answer.reasons
    event = AuditEvent.objects.filter(action="version.state_changed").latest("seq")
    assert (event.after["state"], event.reason) == (
        "suspended",
        f"revalidation #{revalidation.pk} rejected: no longer fit",
    )
    assert Message.objects.filter(event="version.suspended").exists()


def test_changes_requested_on_a_revalidation_leave_the_approval_to_lapse(
    developer, owner, risk_officer, risk_officer_2
):
    version, release = approved(developer, owner, risk_officer)
    revalidation = services.request_open(
        actor=owner, kind="revalidation", model=version.model, version=fresh(version), rationale="yearly"
    )
    services.decision_record(actor=risk_officer_2, request=revalidation, outcome="request_changes", comment="more data")

    assert fresh(version).state == VersionState.APPROVED and ask_gate(version).allowed is True
    assert release.valid_until is not None
    assert ask_gate(version, now=release.valid_until + timedelta(days=60)).allowed is False


def test_decommissioning_a_version_withdraws_its_open_requests(developer, owner, risk_officer):
    """A revalidation still open for a version that is decommissioned would be decided for a
    version that no longer exists: it is withdrawn, saying why."""
    version, release = approved(developer, owner, risk_officer)
    assert release.valid_until is not None
    sweep_at(release.valid_until - timedelta(days=29))
    revalidation = ApprovalRequest.objects.get(kind=RequestKind.REVALIDATION)
    decommission = services.request_open(
        actor=owner, kind="decommission", model=version.model, version=version, rationale="retired early"
    )
    services.decision_record(actor=risk_officer, request=decommission, outcome="approve")

    revalidation.refresh_from_db()
    assert revalidation.state == RequestState.WITHDRAWN
    assert revalidation.closed_reason == f"decommissioned by request #{decommission.pk}"
    assert fresh(version).state == VersionState.DECOMMISSIONED


# --- exceptions ----------------------------------------------------------------------------


def test_no_exception_is_granted_for_a_decommissioned_version_or_model(developer, owner, risk_officer, risk_officer_2):
    model = assessed_model(owner, 4)
    retired = approve_release(developer, owner, risk_officer, model)
    kept = approve_release(developer, owner, risk_officer, model)

    def grant(version):
        return services.exception_grant(
            actor=risk_officer,
            version=version,
            scope="monitoring report late",
            compensating_control="weekly manual review",
            reason="vendor outage",
            expires_at=timezone.now() + timedelta(days=10),
        )

    def decommission(version):
        request = services.request_open(
            actor=owner, kind="decommission", model=model, version=version, rationale="superseded"
        )
        services.decision_record(actor=risk_officer_2, request=request, outcome="approve")

    decommission(retired)
    with pytest.raises(Conflict, match=f"Version 1 of {model.name} is decommissioned: no exception brings it back"):
        grant(fresh(retired))
    decommission(None)
    with pytest.raises(Conflict, match=f"Model {model.name} is decommissioned: nothing more can be asked of it"):
        grant(fresh(kept))
    assert not AuditEvent.objects.filter(action="exception.granted").exists()


def test_the_clock_records_a_lapsed_exception_once(developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    expires_at = timezone.now() + timedelta(days=10)
    exception = services.exception_grant(
        actor=risk_officer,
        version=version,
        scope="monitoring report late",
        compensating_control="weekly manual review",
        reason="vendor outage",
        expires_at=expires_at,
    )

    assert services.lifecycle_sweep(now=expires_at - timedelta(hours=1))["exceptions"] == 0
    exception.refresh_from_db()
    assert exception.expired_at is None

    later = expires_at + timedelta(hours=1)
    assert services.lifecycle_sweep(now=later)["exceptions"] == 1
    exception.refresh_from_db()
    assert exception.expired_at == later
    event = AuditEvent.objects.get(action="exception.expired", object_id=str(exception.pk))
    assert (event.actor_name, event.model_name) == ("warden", version.model.name)
    told = only_message("exception.expired", version.model)
    assert {"owner@example.com", "risk@example.com"} <= addresses(told)

    assert services.lifecycle_sweep(now=later + timedelta(days=1))["exceptions"] == 0
    assert AuditEvent.objects.filter(action="exception.expired").count() == 1
    assert Message.objects.filter(event="exception.expired").count() == 1


# --- SLAs: business days, reminders, escalation --------------------------------------------


def test_a_stage_is_due_in_business_days_reminded_once_and_escalated_once(
    developer, owner, risk_officer, risk_officer_2, settings
):
    settings.HOLIDAYS = frozenset({date(2026, 12, 24), date(2026, 12, 25)})
    policy = selectors.published_policy(4)
    assert policy is not None
    assert [stage["sla_business_days"] for stage in policy.stages] == [20]

    with time_machine.travel(datetime(2026, 12, 21, 10, 0, tzinfo=UTC), tick=False):  # a Monday
        version, request = submitted(developer, owner, 4)
    stage = request.stages.get()
    # 20 working days from Monday 21 December: the 24th and 25th are holidays, weekends skipped,
    # 1 January counts (it is not in HOLIDAYS here).
    due = datetime(2027, 1, 20, 10, 0, tzinfo=UTC)
    assert (stage.state, stage.activated_at, stage.due_at) == (
        StageState.ACTIVE,
        datetime(2026, 12, 21, 10, 0, tzinfo=UTC),
        due,
    )

    assert services.lifecycle_sweep(now=due - timedelta(hours=25))["reminders"] == 0
    reminder_time = due - timedelta(hours=23)
    counts = services.lifecycle_sweep(now=reminder_time)
    assert (counts["reminders"], counts["escalations"]) == (1, 0)
    stage.refresh_from_db()
    assert (stage.reminded_at, stage.escalated_at) == (reminder_time, None)
    reminded = AuditEvent.objects.get(action="approval_stage.reminded", object_id=str(stage.pk))
    assert (reminded.actor_name, after(reminded)["request"], after(reminded)["stage"]) == (
        "warden",
        request.pk,
        "Risk officer acknowledgement",
    )
    reminder = only_message("sla.reminder", version.model)
    assert addresses(reminder) == {"risk@example.com", "risk2@example.com"}

    assert services.lifecycle_sweep(now=due - timedelta(hours=1))["reminders"] == 0
    assert Message.objects.filter(event="sla.reminder").count() == 1

    overdue = due + timedelta(hours=1)
    counts = services.lifecycle_sweep(now=overdue)
    assert (counts["reminders"], counts["escalations"]) == (0, 1)
    stage.refresh_from_db()
    assert stage.escalated_at == overdue
    escalated = AuditEvent.objects.get(action="approval_stage.escalated", object_id=str(stage.pk))
    assert (escalated.actor_name, after(escalated)["due_at"][:19]) == ("warden", "2027-01-20T10:00:00")
    breached = only_message("sla.breached", version.model)
    assert addresses(breached) == {"risk@example.com", "risk2@example.com"}
    assert "Overdue since 2027-01-20" in breached.subject

    assert services.lifecycle_sweep(now=overdue + timedelta(days=1))["escalations"] == 0
    assert AuditEvent.objects.filter(action="approval_stage.escalated").count() == 1
    assert Message.objects.filter(event="sla.breached").count() == 1
