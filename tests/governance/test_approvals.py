"""The workflow through the services, as people live it: each story asserts what changed and
the audit events written."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from common.errors import Conflict, PermissionDenied, ValidationFailed
from common.roles import Role
from governance import selectors, services
from governance.management.commands.demo_seed import ASSESSMENTS as ANSWERS
from governance.models import Condition, Decision, RequestState, StageState
from registry.models import VersionState
from tests.factories import UserFactory, approve_with_condition, assessed_model, make_version, submitted


def actions_since(event_id):
    return list(AuditEvent.objects.filter(pk__gt=event_id).order_by("seq").values_list("action", flat=True))


def last_event_id():
    return AuditEvent.objects.order_by("-seq").values_list("pk", flat=True).first() or 0


def test_one_who_holds_the_roles_of_two_stages_names_the_one_they_sign(
    developer, owner, assigned_validator, compliance, risk_officer, committee
):
    """Their approval, meant for the risk officer's step, is not counted towards the committee's
    once that step has moved on: they name their stage, and a stage no longer open is a 409."""
    both = UserFactory(username="ro-and-committee", groups=[Role.RISK_OFFICER, Role.COMMITTEE_MEMBER, "pricing"])
    _, request = submitted(developer, owner, 1)
    services.decision_record(actor=assigned_validator, request=request, outcome="approve")
    services.decision_record(actor=compliance, request=request, outcome="approve")

    with pytest.raises(ValidationFailed, match="you hold the roles of more than one stage of this request"):
        services.decision_record(actor=both, request=request, outcome="approve")
    services.decision_record(actor=risk_officer, request=request, outcome="approve")  # the step moves on
    with pytest.raises(Conflict, match="Risk officer is complete now; the request awaits Model risk committee"):
        services.decision_record(actor=both, request=request, outcome="approve", stage="Risk officer")
    assert not Decision.objects.filter(person=both).exists()
    services.decision_record(actor=both, request=request, outcome="approve", stage="Model risk committee")
    assert Decision.objects.get(person=both).stage.name == "Model risk committee"


def test_a_t1_version_goes_through_every_stage_to_approved(
    developer, owner, assigned_validator, compliance, risk_officer, committee
):
    version, request = submitted(developer, owner, 1)
    assert [(s.step, s.name, s.state) for s in request.stages.all()] == [
        (1, "Independent validation", "active"),
        (2, "Compliance", "waiting"),
        (2, "Risk officer", "waiting"),
        (3, "Model risk committee", "waiting"),
    ]
    assert request.policy.tier == 1 and request.policy.version == 1

    start = last_event_id()
    services.decision_record(actor=assigned_validator, request=request, outcome="approve", comment="")
    assert actions_since(start) == ["decision.recorded", "approval_stage.completed"]
    services.decision_record(actor=compliance, request=request, outcome="approve")
    services.decision_record(actor=risk_officer, request=request, outcome="approve", comment="limits fine")
    services.decision_record(actor=committee[0], request=request, outcome="approve")
    version.refresh_from_db()
    assert version.state == VersionState.SUBMITTED  # the committee needs two distinct members

    start = last_event_id()
    services.decision_record(actor=committee[1], request=request, outcome="approve")
    assert actions_since(start) == [
        "decision.recorded",
        "approval_stage.completed",
        "approval_request.approved",
        "version.state_changed",
    ]
    request.refresh_from_db()
    version.refresh_from_db()
    assert request.state == RequestState.APPROVED
    assert version.state == VersionState.APPROVED
    assert set(request.stages.values_list("state", flat=True)) == {StageState.COMPLETE}
    signers = set(Decision.objects.filter(request=request).values_list("person__username", flat=True))
    assert len(signers | {owner.username}) >= request.policy.min_distinct_people

    decided = AuditEvent.objects.filter(action="decision.recorded", after__request=request.pk)
    assert decided.count() == 5
    assert all(e.after["policy"] == {"id": request.policy_id, "tier": 1, "version": 1} for e in decided)
    assert decided.get(actor_name="risk").reason == "limits fine"


def test_a_t4_version_needs_one_risk_officer(developer, owner, risk_officer):
    start = last_event_id()
    version, request = submitted(developer, owner, 4)
    assert request.stages.count() == 1
    services.decision_record(actor=risk_officer, request=request, outcome="approve")
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED
    assert actions_since(start)[-7:] == [
        "version.created",
        "approval_request.submitted",
        "version.state_changed",
        "decision.recorded",
        "approval_stage.completed",
        "approval_request.approved",
        "version.state_changed",
    ]


def test_a_rejection_ends_the_request_and_the_version(developer, owner, assigned_validator):
    version, request = submitted(developer, owner, 2)
    start = last_event_id()
    services.decision_record(
        actor=assigned_validator, request=request, outcome="reject", comment="back-test fails in 2023"
    )
    request.refresh_from_db()
    version.refresh_from_db()
    assert (request.state, version.state) == (RequestState.REJECTED, VersionState.REJECTED)
    assert set(request.stages.values_list("state", flat=True)) == {StageState.CLOSED}
    assert actions_since(start) == ["decision.recorded", "approval_request.rejected", "version.state_changed"]
    assert AuditEvent.objects.get(action="approval_request.rejected", object_id=str(request.pk)).reason == (
        "back-test fails in 2023"
    )


def test_changes_requested_return_the_version_to_its_owner_who_answers_with_a_new_one(
    developer, owner, assigned_validator, risk_officer
):
    version, request = submitted(developer, owner, 2)
    start = last_event_id()
    services.decision_record(
        actor=assigned_validator, request=request, outcome="request_changes", comment="add the 2024 holdout"
    )
    version.refresh_from_db()
    assert version.state == VersionState.CHANGES_REQUESTED
    assert actions_since(start) == [
        "decision.recorded",
        "approval_request.changes_requested",
        "version.state_changed",
    ]
    with pytest.raises(Conflict, match="is changes_requested; it cannot become submitted"):
        services.request_submit(actor=owner, version=version)

    answer = make_version(developer, version.model)
    again = services.request_submit(actor=owner, version=answer, rationale="holdout added")
    services.decision_record(actor=assigned_validator, request=again, outcome="approve")
    services.decision_record(actor=risk_officer, request=again, outcome="approve")
    answer.refresh_from_db()
    assert answer.state == VersionState.APPROVED


def test_every_outcome_but_approve_needs_a_comment(developer, owner, assigned_validator):
    _, request = submitted(developer, owner, 2)
    for outcome in ("reject", "request_changes", "approve_with_conditions"):
        with pytest.raises(ValidationFailed, match="comment: is required"):
            services.decision_record(actor=assigned_validator, request=request, outcome=outcome, comment=" ")
    assert not Decision.objects.exists()


def test_one_decision_takes_at_most_twenty_conditions_from_any_interface(developer, owner, assigned_validator):
    _, request = submitted(developer, owner, 2)
    due = timezone.localdate() + timedelta(days=30)
    with pytest.raises(ValidationFailed) as refused:
        services.decision_record(
            actor=assigned_validator,
            request=request,
            outcome="approve_with_conditions",
            comment="many asks",
            conditions=[services.ConditionIn(f"ask {i}", owner, due) for i in range(21)],
        )
    assert refused.value.fields == {"conditions": ["at most 20 conditions in one decision"]}
    assert not Condition.objects.exists() and not request.decisions.exists()


def test_an_approval_with_conditions_creates_conditions_with_an_owner_and_a_due_date(
    developer, owner, assigned_validator
):
    _, request = submitted(developer, owner, 2)
    due = timezone.localdate() + timedelta(days=30)
    services.decision_record(
        actor=assigned_validator,
        request=request,
        outcome="approve_with_conditions",
        comment="monitor the new segment",
        conditions=[services.ConditionIn("Report PSI on the new segment monthly", owner, due)],
    )
    condition = Condition.objects.get()
    assert (condition.owner, condition.due_date, condition.state) == (owner, due, "open")
    event = AuditEvent.objects.get(action="decision.recorded")
    assert event.after["conditions"][0]["owner"] == "owner"

    with pytest.raises(PermissionDenied, match="Only the condition's owner or a risk officer marks it met"):
        services.condition_close(actor=developer, condition=condition, state="met", note="done")
    services.condition_close(actor=owner, condition=condition, state="met", note="first report sent")
    condition.refresh_from_db()
    assert condition.state == "met"


def test_a_risk_officer_on_the_owning_team_neither_waives_its_conditions_nor_closes_its_findings(
    developer, owner, assigned_validator, risk_officer, risk_officer_2, teams
):
    """Letting a model off a check takes someone independent of it, as granting an exception does."""
    _, request = submitted(developer, owner, 2)
    condition = approve_with_condition(assigned_validator, request, owner)
    finding = services.finding_raise(
        actor=assigned_validator,
        model=request.model,
        title="Thin-file segment",
        severity="high",
        owner=owner,
        due_date=timezone.localdate() + timedelta(days=30),
    )
    risk_officer.groups.add(teams["credit-risk"])
    team = re.escape("you are on the owning team (credit-risk).")

    with pytest.raises(PermissionDenied, match=f"You cannot waive this condition: {team}"):
        services.condition_close(actor=risk_officer, condition=condition, state="waived", note="not needed")
    with pytest.raises(PermissionDenied, match=f"You cannot mark this condition met: {team}"):
        services.condition_close(actor=risk_officer, condition=condition, state="met", note="done, trust me")
    with pytest.raises(PermissionDenied, match=f"You cannot close this finding: {team}"):
        services.finding_move(actor=risk_officer, finding=finding, state="closed", comment="fine")

    services.condition_close(actor=risk_officer_2, condition=condition, state="waived", note="segment dropped")
    services.finding_move(actor=risk_officer_2, finding=finding, state="closed", comment="accepted")
    condition.refresh_from_db()
    finding.refresh_from_db()
    assert (condition.state, finding.state) == ("waived", "closed")


def test_a_withdrawn_request_returns_the_version_to_draft(developer, owner):
    version, request = submitted(developer, owner, 3)
    start = last_event_id()
    services.request_withdraw(actor=owner, request=request, reason="wrong artifact")
    assert actions_since(start) == ["approval_request.withdrawn", "version.state_changed"]
    version.refresh_from_db()
    request.refresh_from_db()
    assert (request.state, version.state) == (RequestState.WITHDRAWN, VersionState.DRAFT)
    again = services.request_submit(actor=owner, version=version)
    assert again.state == RequestState.OPEN


def test_a_closed_request_takes_no_more_decisions(developer, owner, risk_officer, risk_officer_2):
    _, request = submitted(developer, owner, 4)
    services.decision_record(actor=risk_officer, request=request, outcome="approve")
    with pytest.raises(Conflict, match=f"Request #{request.pk} is approved; it takes no more decisions"):
        services.decision_record(actor=risk_officer_2, request=request, outcome="approve")


def test_a_request_finishes_under_the_policy_it_pinned(developer, owner, risk_officer, risk_officer_2):
    _, request = submitted(developer, owner, 4)
    draft = services.policy_draft(actor=risk_officer, tier=4)
    services.document_update(
        actor=risk_officer,
        document=draft,
        changes={"stages": [{**draft.stages[0], "quorum": 2}], "min_distinct_people": 3, "notes": "two sign"},
    )
    services.document_publish(actor=risk_officer, document=draft)
    services.decision_record(actor=risk_officer_2, request=request, outcome="approve")
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED  # one signature, as policy v1 asked
    later = submitted(developer, owner, 4)[1]
    assert later.policy.version == 2 and later.stages.get().quorum == 2


def test_a_prohibited_model_can_never_be_submitted(developer, owner):
    model = assessed_model(owner, 1)
    answers, _ = ANSWERS[4]
    services.assessment_record(actor=owner, model=model, answers=answers, flags=["prohibited_practice"])
    version = make_version(developer, model)
    with pytest.raises(Conflict, match="prohibited practice: it can never be approved"):
        services.request_submit(actor=owner, version=version)


def test_an_override_that_the_second_risk_officer_refuses_leaves_the_tier(
    developer, owner, risk_officer, risk_officer_2
):
    model = assessed_model(owner, 1)
    request = services.tier_override_request(
        actor=risk_officer, model=model, tier=3, rationale="used for reporting only since 2025"
    )
    with pytest.raises(PermissionDenied, match="You cannot approve: you asked for this tier change"):
        services.decision_record(actor=risk_officer, request=request, outcome="approve")
    start = last_event_id()
    services.decision_record(actor=risk_officer_2, request=request, outcome="reject", comment="still feeds capital")
    model.refresh_from_db()
    assert model.risk_tier == 1
    assert actions_since(start) == ["decision.recorded", "approval_request.rejected"]


def test_an_approved_override_changes_the_tier(owner, risk_officer, risk_officer_2):
    model = assessed_model(owner, 1)
    request = services.tier_override_request(actor=owner, model=model, tier=2, rationale="no longer in IRB scope")
    services.decision_record(actor=risk_officer, request=request, outcome="approve")
    model.refresh_from_db()
    assert model.risk_tier == 2
    event = AuditEvent.objects.filter(action="model.risk_tier_changed").order_by("-seq").first()
    assert (event.before, event.after["risk_tier"], event.after["request"]) == ({"risk_tier": 1}, 2, request.pk)


def test_a_reassessment_that_lowers_the_tier_waits_for_a_second_risk_officer(owner, risk_officer):
    model = assessed_model(owner, 2)
    answers, _ = ANSWERS[4]
    services.assessment_record(actor=owner, model=model, answers=answers, flags=[])
    model.refresh_from_db()
    assert model.risk_tier == 2
    pending = model.approval_requests.get(kind="tier_change")
    assert (pending.state, pending.requested_tier) == ("open", 4)
    assert pending.rationale.startswith("Reassessment #")


def test_only_a_risk_officer_independent_of_the_model_lifts_a_prohibition(owner, risk_officer, risk_officer_2, teams):
    model = assessed_model(owner, 2)
    answers, flags = ANSWERS[2]
    services.assessment_record(actor=risk_officer, model=model, answers=answers, flags=[*flags, "prohibited_practice"])
    with pytest.raises(PermissionDenied, match="Only a risk officer lifts the prohibited-practice ruling"):
        services.assessment_record(actor=owner, model=model, answers=answers, flags=flags)
    risk_officer_2.groups.add(teams["credit-risk"])
    with pytest.raises(PermissionDenied, match="You cannot lift the prohibited-practice ruling: you are on the owning"):
        services.assessment_record(actor=risk_officer_2, model=model, answers=answers, flags=flags)
    services.assessment_record(actor=risk_officer, model=model, answers=answers, flags=flags)
    assert not selectors.latest_assessment(model).prohibited


def test_a_stricter_tier_withdraws_the_requests_put_to_the_old_tiers_people(developer, owner, risk_officer):
    version, release = submitted(developer, owner, 4)
    model = version.model
    downgrade = services.tier_override_request(actor=owner, model=model, tier=3, rationale="not needed")
    answers, flags = ANSWERS[1]
    services.assessment_record(actor=owner, model=model, answers=answers, flags=flags)
    model.refresh_from_db()
    version.refresh_from_db()
    assert (model.risk_tier, version.state) == (1, VersionState.DRAFT)
    for stale in (release, downgrade):
        stale.refresh_from_db()
        assert stale.state == RequestState.WITHDRAWN
        assert stale.closed_reason == "the model's tier changed from T4 to T1; submit again under the T1 policy"
    with pytest.raises(Conflict, match="is withdrawn; it takes no more decisions"):
        services.decision_record(actor=risk_officer, request=downgrade, outcome="approve")
    again = services.request_submit(actor=owner, version=version)
    assert (again.tier, again.policy.tier) == (1, 1)


def test_a_version_without_its_digest_cannot_be_submitted(developer, owner):
    model = assessed_model(owner, 4)
    version = make_version(developer, model, artifact_sha256="")
    with pytest.raises(Conflict, match="has no artifact SHA-256"):
        services.request_submit(actor=owner, version=version)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"role": ["Risk officers"]}, "stages[0].role"),
        ({"name": " padded "}, "stages[0].name"),
        ({"quorum": True}, "stages[0].quorum"),
        ({"step": 2}, "stages[0].step"),
    ],
)
def test_a_malformed_policy_draft_is_refused_at_publication_naming_the_field(risk_officer, change, field):
    draft = services.policy_draft(actor=risk_officer, tier=4)
    services.document_update(actor=risk_officer, document=draft, changes={"stages": [{**draft.stages[0], **change}]})
    with pytest.raises(ValidationFailed) as refused:
        services.document_publish(actor=risk_officer, document=draft)
    assert list(refused.value.fields) == [field]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"floors": {"regulatory_capital": True}}, "rules.floors"),
        ({"matrix": [[4, 4, 3], [3, 3, 2], [2, 2, 1]]}, "rules.matrix"),
        ({"materiality_bands": [7, 4, 10]}, "rules.materiality_bands"),
        ({"override_stages": []}, "rules.override_stages"),
    ],
)
def test_a_malformed_scorecard_draft_is_refused_at_publication_naming_the_field(risk_officer, change, field):
    draft = services.scorecard_draft(actor=risk_officer)
    services.document_update(actor=risk_officer, document=draft, changes={"rules": {**draft.rules, **change}})
    with pytest.raises(ValidationFailed) as refused:
        services.document_publish(actor=risk_officer, document=draft)
    assert list(refused.value.fields) == [field]
