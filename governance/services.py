"""Every governance write: assessments, submissions, decisions, withdrawals, tier overrides,
exceptions, validator assignments and the published rules. Each locks what it changes, asks
``governance.policies`` who may, ``governance.workflow`` whether the move is allowed, saves, and
writes its audit events in the same transaction; the API, the admin and the commands call these.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from audit.services import audit_record
from common.errors import Conflict, ValidationFailed
from common.roles import Role, has_role, is_team
from governance import gate, policies, rules, selectors, tiering, workflow
from governance.calendar import add_business_days, add_months
from governance.models import (
    ApprovalPolicy,
    ApprovalRequest,
    Condition,
    ConditionState,
    Decision,
    Deployment,
    DocumentStatus,
    Environment,
    Finding,
    Outcome,
    PolicyException,
    PublishedDocument,
    RequestKind,
    RequestStage,
    RequestState,
    RiskAssessment,
    Scorecard,
    Severity,
    StageState,
)
from registry import services as registry_services
from registry.models import ModelVersion, RegisteredModel, VersionState

POLICY_FIELDS = (
    "stages",
    "min_distinct_people",
    "revalidation_months",
    "max_exception_days",
    "approval_required_in",
    "monitoring",
    "notes",
)
SCORECARD_FIELDS = ("rules", "notes")
MAX_COMMENT = 10_000


# --- helpers -----------------------------------------------------------------------------


def _policy_ref(policy: ApprovalPolicy) -> dict[str, Any]:
    return {"id": policy.pk, "tier": policy.tier, "version": policy.version}


def _text(field: str, value: str, *, required: bool, limit: int = MAX_COMMENT) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ValidationFailed.on(field, "is required")
    if len(value) > limit:
        raise ValidationFailed.on(field, f"at most {limit} characters")
    return value


def published_policy(tier: int) -> ApprovalPolicy:
    policy = selectors.published_policy(tier)
    if policy is None:
        raise Conflict(f"No approval policy is published for T{tier}: a risk officer must publish one.")
    return policy


def published_scorecard() -> Scorecard:
    scorecard = selectors.published_scorecard()
    if scorecard is None:
        raise Conflict("No scorecard is published: a risk officer must publish one.")
    return scorecard


def _version_name(version: ModelVersion) -> str:
    return f"Version {version.number} of {version.model.name}"


def _lock_request(request: ApprovalRequest) -> ApprovalRequest:
    """Lock the request, its version and its model (always in that order, and before any audit
    event: the ledger's lock is held from the first event to the commit, so a row lock taken
    after it could deadlock with a writer holding that row), then read them afresh: whoever
    held the locks before may have moved them on."""
    locked = ApprovalRequest.objects.select_for_update(of=("self",)).filter(pk=request.pk)
    version_id, model_id = locked.values_list("version_id", "model_id").get()
    if version_id is not None:
        ModelVersion.objects.select_for_update(no_key=True).filter(pk=version_id).first()
    RegisteredModel.objects.select_for_update(no_key=True).filter(pk=model_id).first()
    return (
        ApprovalRequest.objects.select_related("model__team", "version", "policy", "scorecard")
        .prefetch_related("stages", "decisions__stage")
        .get(pk=request.pk)
    )


def _open_stages(request: ApprovalRequest, stages: Sequence[dict[str, Any]]) -> None:
    RequestStage.objects.bulk_create(
        RequestStage(
            request=request,
            step=stage["step"],
            name=stage["name"],
            role=stage["role"],
            quorum=stage["quorum"],
            sla_business_days=stage["sla_business_days"],
            independent=stage["independent"],
        )
        for stage in stages
    )
    _activate_step(request, 1)


def _activate_step(request: ApprovalRequest, step: int) -> None:
    now = timezone.now()
    for stage in RequestStage.objects.filter(request=request, step=step):
        stage.state = StageState.ACTIVE
        stage.activated_at = now
        stage.due_at = add_business_days(now, stage.sla_business_days)
        stage.save(update_fields=["state", "activated_at", "due_at"])
    request.current_step = step
    request.save(update_fields=["current_step"])


def _close(request: ApprovalRequest, state: str, *, actor: Any, reason: str) -> None:
    """End the request in ``state``: its unfinished stages close with it."""
    workflow.ensure_request_transition(f"Request #{request.pk}", request.state, state)
    before = {"state": request.state}
    request.state = state
    request.closed_at = timezone.now()
    request.closed_reason = reason
    request.save(update_fields=["state", "closed_at", "closed_reason"])
    RequestStage.objects.filter(request=request).exclude(state=StageState.COMPLETE).update(state=StageState.CLOSED)
    audit_record(
        actor=actor,
        action=f"approval_request.{state}",
        obj=request,
        model_name=request.model.name,
        before=before,
        after={"state": state, "kind": request.kind, "valid_until": request.valid_until, **_pinned(request)},
        reason=reason,
    )


def _pinned(request: ApprovalRequest) -> dict[str, Any]:
    if request.policy is not None:
        return {"policy": _policy_ref(request.policy)}
    assert request.scorecard is not None
    return {"scorecard": {"id": request.scorecard_id, "version": request.scorecard.version}}


def _move_version(request: ApprovalRequest, state: str, *, actor: Any, reason: str) -> None:
    version = request.version
    assert version is not None
    workflow.ensure_version_transition(_version_name(version), version.state, state)
    request.version = registry_services.version_set_state(
        actor=actor, version=version, state=state, reason=reason, request=request.pk, **_pinned(request)
    )


# --- risk assessment and tier ------------------------------------------------------------


@transaction.atomic
def assessment_record(*, actor: Any, model: RegisteredModel, answers: Any, flags: Any = ()) -> RiskAssessment:
    """Score the questionnaire under the published scorecard and store it with its rationale.
    The model takes the computed tier at once when it is as strict as its current one or
    stricter (or it had none); a less strict tier is a downgrade, which never takes effect on
    one person's word: it opens a tier-change request for a second risk officer instead."""
    model = RegisteredModel.objects.select_for_update(of=("self",), no_key=True).select_related("team").get(pk=model.pk)
    policies.can_assess(actor, model).ensure()
    scorecard = published_scorecard()
    flags = list(flags) if isinstance(flags, list | tuple) else flags
    result = tiering.assess(scorecard.rules, answers, flags)
    previous = selectors.latest_assessment(model)
    if previous is not None and previous.prohibited and not result.prohibited:
        policies.can_lift_prohibition(actor, model).ensure()
    assessment = RiskAssessment.objects.create(
        model=model,
        scorecard=scorecard,
        answers=answers,
        flags=sorted(set(flags)),
        materiality=result.materiality,
        complexity=result.complexity,
        inherent_tier=result.tier,
        prohibited=result.prohibited,
        rationale=result.rationale,
        assessed_by=actor,
    )
    audit_record(
        actor=actor,
        action="risk_assessment.recorded",
        obj=assessment,
        model_name=model.name,
        after={
            "answers": answers,
            "flags": assessment.flags,
            "inherent_tier": result.tier,
            "prohibited": result.prohibited,
            "rationale": result.rationale,
            "scorecard": {"id": scorecard.pk, "version": scorecard.version},
        },
        reason=tiering.explain(result.rationale),
    )
    if model.risk_tier is None or result.tier <= model.risk_tier:
        _set_tier(
            actor=actor,
            model=model,
            tier=result.tier,
            reason=tiering.explain(result.rationale),
            source={"assessment": assessment.pk, "scorecard": {"id": scorecard.pk, "version": scorecard.version}},
        )
    else:
        _open_tier_change(
            actor=actor,
            model=model,
            tier=result.tier,
            rationale=f"Reassessment #{assessment.pk}: {tiering.explain(result.rationale)}",
        )
    return assessment


@transaction.atomic
def tier_override_request(*, actor: Any, model: RegisteredModel, tier: int, rationale: str) -> ApprovalRequest:
    """Ask for the model's tier to be set to ``tier`` against its assessment. Decided by the
    scorecard's override stages (a second risk officer); takes effect only when approved."""
    model = RegisteredModel.objects.select_for_update(of=("self",), no_key=True).select_related("team").get(pk=model.pk)
    policies.can_request_tier_override(actor, model).ensure()
    rationale = _text("rationale", rationale, required=True)
    if tier not in rules.TIERS:
        raise ValidationFailed.on("tier", "must be 1, 2, 3 or 4")
    return _open_tier_change(actor=actor, model=model, tier=tier, rationale=rationale)


def _set_tier(*, actor: Any, model: RegisteredModel, tier: int, reason: str, source: dict[str, Any]) -> None:
    """Give the model its new tier. Requests still open for it were put to the people of the
    old tier's policy, or asked for a change now overtaken: they are withdrawn, saying why, and
    their versions return to draft, to be submitted again under the new tier's policy."""
    old = model.risk_tier
    registry_services.model_set_risk_tier(actor=actor, model=model, tier=tier, reason=reason, **source)
    if old is None or old == tier:
        return
    why = f"the model's tier changed from T{old} to T{tier}; submit again under the T{tier} policy"
    stale = ApprovalRequest.objects.filter(model=model, state=RequestState.OPEN)
    if "request" in source:
        stale = stale.exclude(pk=source["request"])
    for pk in stale.order_by("pk").values_list("pk", flat=True):
        request = _lock_request(ApprovalRequest(pk=pk))
        _close(request, RequestState.WITHDRAWN, actor=actor, reason=why)
        if request.version is not None:
            _move_version(request, VersionState.DRAFT, actor=actor, reason=why)


def _open_tier_change(*, actor: Any, model: RegisteredModel, tier: int, rationale: str) -> ApprovalRequest:
    if model.risk_tier is None:
        raise Conflict(f"Model {model.name} has no tier yet: record a risk assessment first.")
    if tier == model.risk_tier:
        raise Conflict.on("tier", f"{model.name} is already T{tier}")
    scorecard = published_scorecard()
    try:
        with transaction.atomic():
            request = ApprovalRequest.objects.create(
                kind=RequestKind.TIER_CHANGE,
                model=model,
                tier=model.risk_tier,
                requested_tier=tier,
                scorecard=scorecard,
                rationale=rationale,
                submitted_by=actor,
            )
    except IntegrityError:
        open_id = ApprovalRequest.objects.filter(model=model, kind=RequestKind.TIER_CHANGE, state=RequestState.OPEN)
        raise Conflict(
            f"A tier change for {model.name} already awaits a decision (#{open_id.values_list('pk', flat=True).first()})."
        ) from None
    _open_stages(request, scorecard.rules["override_stages"])
    audit_record(
        actor=actor,
        action="approval_request.submitted",
        obj=request,
        model_name=model.name,
        after={
            "kind": request.kind,
            "from_tier": model.risk_tier,
            "to_tier": tier,
            "scorecard": {"id": scorecard.pk, "version": scorecard.version},
            "stages": scorecard.rules["override_stages"],
        },
        reason=rationale,
    )
    return request


# --- submission and withdrawal -----------------------------------------------------------


@transaction.atomic
def request_submit(*, actor: Any, version: ModelVersion, rationale: str = "") -> ApprovalRequest:
    """Submit a draft version for release under the policy published for its model's tier,
    which the request pins to its end."""
    version = (
        ModelVersion.objects.select_for_update(of=("self",), no_key=True)
        .select_related("model__team")
        .get(pk=version.pk)
    )
    model = version.model
    policies.can_submit(actor, version).ensure()
    workflow.ensure_version_transition(_version_name(version), version.state, VersionState.SUBMITTED)
    rationale = _text("rationale", rationale, required=False)
    if not version.artifact_sha256:
        raise Conflict.on(
            "artifact_sha256",
            f"{_version_name(version).lower()} has no artifact SHA-256: what is approved must be pinned by its digest; "
            "register a version with one",
        )
    if model.risk_tier is None:
        raise Conflict(f"Model {model.name} has no risk tier: record its risk assessment before submitting.")
    assessment = selectors.latest_assessment(model)
    if assessment is not None and assessment.prohibited:
        raise Conflict(f"Model {model.name} is assessed as a prohibited practice: it can never be approved.")
    policy = published_policy(model.risk_tier)
    request = ApprovalRequest.objects.create(
        kind=RequestKind.RELEASE,
        model=model,
        version=version,
        tier=model.risk_tier,
        policy=policy,
        rationale=rationale,
        submitted_by=actor,
    )
    _open_stages(request, policy.stages)
    audit_record(
        actor=actor,
        action="approval_request.submitted",
        obj=request,
        model_name=model.name,
        after={
            "kind": request.kind,
            "version": version.number,
            "tier": request.tier,
            "policy": _policy_ref(policy),
            "stages": policy.stages,
        },
        reason=rationale,
    )
    _move_version(request, VersionState.SUBMITTED, actor=actor, reason=rationale or "submitted for approval")
    return request


@transaction.atomic
def request_withdraw(*, actor: Any, request: ApprovalRequest, reason: str) -> ApprovalRequest:
    """Take an open request back: its version returns to draft, to be submitted again."""
    request = _lock_request(request)
    policies.can_withdraw(actor, request).ensure()
    reason = _text("reason", reason, required=True)
    _close(request, RequestState.WITHDRAWN, actor=actor, reason=reason)
    if request.version_id:
        _move_version(request, VersionState.DRAFT, actor=actor, reason=f"request #{request.pk} withdrawn: {reason}")
    return request


# --- decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionIn:
    description: str
    owner: Any
    due_date: date


@transaction.atomic
def decision_record(
    *,
    actor: Any,
    request: ApprovalRequest,
    outcome: str,
    comment: str = "",
    stage: str | None = None,
    conditions: Sequence[ConditionIn] = (),
) -> Decision:
    """Sign the request's current stage. Approvals count towards the stage's quorum of distinct
    people; when the last stage completes the request is approved (and its version, or the new
    tier, takes effect); a rejection or a request for changes ends it at once.

    The request row is locked first, so people deciding at the same moment are served one
    after the other: the quorum is met once, the version moves once."""
    request = _lock_request(request)
    if request.state != RequestState.OPEN:
        raise Conflict(
            f"Request #{request.pk} is {request.state}; it takes no more decisions.",
            fields={"state": [f"{request.state} requests take no decisions"]},
            code="invalid_transition",
        )
    if outcome not in Outcome.values:
        raise ValidationFailed.on("outcome", f"one of: {', '.join(Outcome.values)}")
    allowed, stages = policies.signable_stages(actor, request, outcome)
    allowed.ensure()
    comment = _text("comment", comment, required=outcome != Outcome.APPROVE)
    signed = _choose_stage(stages, stage)
    if outcome == Outcome.APPROVE_WITH_CONDITIONS and not conditions:
        raise ValidationFailed.on("conditions", "an approval with conditions names at least one condition")
    if conditions and outcome != Outcome.APPROVE_WITH_CONDITIONS:
        raise ValidationFailed.on("conditions", "only an approval with conditions has conditions")
    for index, condition in enumerate(conditions):
        _text(f"conditions[{index}].description", condition.description, required=True)
        if condition.due_date <= timezone.localdate():
            raise ValidationFailed.on(f"conditions[{index}].due_date", "must be after today")

    decision = Decision.objects.create(request=request, stage=signed, person=actor, outcome=outcome, comment=comment)
    made = Condition.objects.bulk_create(
        Condition(
            decision=decision,
            request=request,
            description=c.description.strip(),
            owner=c.owner,
            due_date=c.due_date,
        )
        for c in conditions
    )
    audit_record(
        actor=actor,
        action="decision.recorded",
        obj=decision,
        model_name=request.model.name,
        after={
            "request": request.pk,
            "kind": request.kind,
            "version": request.version.number if request.version else None,
            "stage": signed.name,
            "role": signed.role,
            "outcome": outcome,
            "conditions": [
                {"id": c.pk, "description": c.description, "owner": c.owner.get_username(), "due_date": c.due_date}
                for c in made
            ],
            **_pinned(request),
        },
        reason=comment,
    )
    if outcome == Outcome.REJECT:
        _finish(request, RequestState.REJECTED, actor=actor, reason=comment)
    elif outcome == Outcome.REQUEST_CHANGES:
        _finish(request, RequestState.CHANGES_REQUESTED, actor=actor, reason=comment)
    else:
        _count_towards_quorum(request, signed, actor=actor)
    return decision


def _choose_stage(stages: list[RequestStage], name: str | None) -> RequestStage:
    if name:
        for stage in stages:
            if stage.name == name:
                return stage
        raise ValidationFailed.on("stage", f"you may sign: {', '.join(s.name for s in stages)}")
    if len(stages) > 1:
        raise ValidationFailed.on(
            "stage", f"you hold roles for more than one stage; name one of: {', '.join(s.name for s in stages)}"
        )
    return stages[0]


def _count_towards_quorum(request: ApprovalRequest, stage: RequestStage, *, actor: Any) -> None:
    approvals = Decision.objects.filter(
        stage=stage, outcome__in=[Outcome.APPROVE, Outcome.APPROVE_WITH_CONDITIONS]
    ).count()
    if approvals < stage.quorum:
        return
    stage.state = StageState.COMPLETE
    stage.completed_at = timezone.now()
    stage.save(update_fields=["state", "completed_at"])
    audit_record(
        actor=actor,
        action="approval_stage.completed",
        obj=stage,
        model_name=request.model.name,
        after={
            "request": request.pk,
            "stage": stage.name,
            "role": stage.role,
            "approvals": approvals,
            **_pinned(request),
        },
    )
    step_open = RequestStage.objects.filter(request=request, step=stage.step).exclude(state=StageState.COMPLETE)
    if step_open.exists():
        return
    later = RequestStage.objects.filter(request=request, step__gt=stage.step).aggregate(step=Max("step"))["step"]
    if later is not None:
        _activate_step(request, stage.step + 1)
        return
    _finish(request, RequestState.APPROVED, actor=actor, reason=f"{stage.name} complete: every stage has signed")


def _finish(request: ApprovalRequest, state: str, *, actor: Any, reason: str) -> None:
    if state == RequestState.APPROVED and request.kind == RequestKind.RELEASE:
        assessment = selectors.latest_assessment(request.model)
        if assessment is not None and assessment.prohibited:
            raise Conflict(
                f"Model {request.model.name} is assessed as a prohibited practice: it can never be approved."
            )
    if state == RequestState.APPROVED and request.policy is not None:
        request.valid_until = add_months(timezone.now(), request.policy.revalidation_months)
        request.save(update_fields=["valid_until"])
    _close(request, state, actor=actor, reason=reason)
    if request.kind == RequestKind.RELEASE:
        _move_version(request, state, actor=actor, reason=reason)
    elif state == RequestState.APPROVED:
        assert request.requested_tier is not None
        _set_tier(
            actor=actor,
            model=request.model,
            tier=request.requested_tier,
            reason=request.rationale,
            source={"request": request.pk, **_pinned(request)},
        )


@transaction.atomic
def condition_close(*, actor: Any, condition: Condition, state: str, note: str) -> Condition:
    """Mark a condition met or waived: its owner says it is met; a risk officer may waive it."""
    condition = Condition.objects.select_for_update().select_related("request__model").get(pk=condition.pk)
    if condition.state != ConditionState.OPEN:
        raise Conflict(f"Condition #{condition.pk} is already {condition.state}.")
    if state not in (ConditionState.MET, ConditionState.WAIVED):
        raise ValidationFailed.on("state", "met or waived")
    policies.can_close_condition(actor, condition, state).ensure()
    note = _text("note", note, required=True)
    condition.state = state
    condition.save(update_fields=["state"])
    audit_record(
        actor=actor,
        action=f"condition.{state}",
        obj=condition,
        model_name=condition.request.model.name,
        before={"state": ConditionState.OPEN},
        after={"state": state, "request": condition.request_id},
        reason=note,
    )
    return condition


# --- deployments -------------------------------------------------------------------------


@transaction.atomic
def deployment_record(*, actor: Any, version: ModelVersion, environment: Environment, endpoint: str = "") -> Deployment:
    """Record that ``version`` now runs in ``environment``, if the gate lets it in; its first
    deployment moves an approved version to ``deployed``."""
    # The version, then its model (as _lock_request does): the gate reads the model's tier,
    # status and findings, which must not change under it.
    version = (
        ModelVersion.objects.select_for_update(of=("self",), no_key=True)
        .select_related("model__team")
        .get(pk=version.pk)
    )
    RegisteredModel.objects.select_for_update(no_key=True).filter(pk=version.model_id).first()
    version.model.refresh_from_db()
    policies.can_deploy(actor, version).ensure()
    endpoint = _text("endpoint", endpoint, required=False, limit=1000)
    gate.ensure(version, environment)
    if Deployment.objects.filter(version=version, environment=environment, retired_at=None).exists():
        raise Conflict(f"{_version_name(version)} is already deployed in {environment.name}.")
    deployment = Deployment.objects.create(
        version=version, environment=environment, endpoint=endpoint, deployed_by=actor
    )
    audit_record(
        actor=actor,
        action="deployment.recorded",
        obj=deployment,
        model_name=version.model.name,
        after={"version": version.number, "environment": environment.name, "endpoint": endpoint},
    )
    if version.state == VersionState.APPROVED:
        workflow.ensure_version_transition(_version_name(version), version.state, VersionState.DEPLOYED)
        registry_services.version_set_state(
            actor=actor, version=version, state=VersionState.DEPLOYED, reason=f"deployed to {environment.name}"
        )
    return deployment


@transaction.atomic
def deployment_retire(*, actor: Any, deployment: Deployment, reason: str) -> Deployment:
    """Take a deployment out of service; a version retired from everywhere is approved again."""
    deployment = Deployment.objects.select_for_update(of=("self",)).select_related("environment").get(pk=deployment.pk)
    version = (
        ModelVersion.objects.select_for_update(of=("self",), no_key=True)
        .select_related("model__team")
        .get(pk=deployment.version_id)
    )
    policies.can_deploy(actor, version).ensure()
    reason = _text("reason", reason, required=True)
    if deployment.retired_at is not None:
        raise Conflict(f"Deployment #{deployment.pk} was retired on {deployment.retired_at:%Y-%m-%d}.")
    deployment.retired_at = timezone.now()
    deployment.retired_by = actor
    deployment.retired_reason = reason
    deployment.save(update_fields=["retired_at", "retired_by", "retired_reason"])
    audit_record(
        actor=actor,
        action="deployment.retired",
        obj=deployment,
        model_name=version.model.name,
        after={"version": version.number, "environment": deployment.environment.name},
        reason=reason,
    )
    live = Deployment.objects.filter(version=version, retired_at=None).exists()
    if version.state == VersionState.DEPLOYED and not live:
        registry_services.version_set_state(
            actor=actor, version=version, state=VersionState.APPROVED, reason="retired from every environment"
        )
    return deployment


# --- findings ----------------------------------------------------------------------------


@transaction.atomic
def finding_raise(
    *,
    actor: Any,
    model: RegisteredModel,
    title: str,
    severity: str,
    owner: Any,
    due_date: date,
    description: str = "",
    version: ModelVersion | None = None,
) -> Finding:
    """Record an issue found in ``model`` (or one of its versions), owned by ``owner`` to be
    fixed by ``due_date``."""
    policies.can_raise_finding(actor).ensure()
    title = _text("title", title, required=True, limit=200)
    description = _text("description", description, required=False)
    if severity not in Severity.values:
        raise ValidationFailed.on("severity", f"one of: {', '.join(Severity.values)}")
    if version is not None and version.model_id != model.pk:
        raise ValidationFailed.on("version", f"not a version of {model.name}")
    if due_date <= timezone.localdate():
        raise ValidationFailed.on("due_date", "must be after today")
    finding = Finding.objects.create(
        model=model,
        version=version,
        title=title,
        description=description,
        severity=severity,
        owner=owner,
        due_date=due_date,
        raised_by=actor,
    )
    audit_record(
        actor=actor,
        action="finding.raised",
        obj=finding,
        model_name=model.name,
        after={
            "title": title,
            "severity": severity,
            "owner": owner.get_username(),
            "due_date": due_date,
            "version": version.number if version else None,
        },
        reason=description,
    )
    return finding


# --- exceptions --------------------------------------------------------------------------


@transaction.atomic
def exception_grant(
    *,
    actor: Any,
    version: ModelVersion,
    scope: str,
    compensating_control: str,
    reason: str,
    expires_at: datetime,
) -> PolicyException:
    """Sanction a departure from the policy for ``version``, until ``expires_at``: no later
    than the tier's policy allows."""
    version = ModelVersion.objects.select_related("model__team").get(pk=version.pk)
    policies.can_grant_exception(actor, version).ensure()
    if version.model.risk_tier is None:
        raise Conflict(f"Model {version.model.name} has no risk tier: record its risk assessment first.")
    policy = published_policy(version.model.risk_tier)
    scope = _text("scope", scope, required=True)
    compensating_control = _text("compensating_control", compensating_control, required=True)
    reason = _text("reason", reason, required=True)
    now = timezone.now()
    if expires_at <= now:
        raise ValidationFailed.on("expires_at", "must be in the future")
    if expires_at > now + timedelta(days=policy.max_exception_days):
        raise ValidationFailed.on(
            "expires_at",
            f"T{policy.tier} exceptions last at most {policy.max_exception_days} days (policy v{policy.version})",
        )
    exception = PolicyException.objects.create(
        version=version,
        policy=policy,
        scope=scope,
        compensating_control=compensating_control,
        reason=reason,
        approver=actor,
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action="exception.granted",
        obj=exception,
        model_name=version.model.name,
        after={
            "version": version.number,
            "scope": scope,
            "compensating_control": compensating_control,
            "expires_at": expires_at,
            "policy": _policy_ref(policy),
        },
        reason=reason,
    )
    return exception


# --- validator assignment ----------------------------------------------------------------


@transaction.atomic
def validator_assign(
    *, actor: Any, validator: Any, model: RegisteredModel | None = None, team: Group | None = None, assign: bool = True
) -> None:
    """Assign (or, with ``assign=False``, unassign) a validator to one model or to every model
    of a team, as a django-guardian object permission."""
    policies.can_assign_validators(actor).ensure()
    if (model is None) == (team is None):
        raise ValidationFailed.on("model", "name a model or a team, not both")
    if not has_role(validator, Role.VALIDATOR):
        raise ValidationFailed.on("validator", f"{validator.get_username()} is not a validator")
    if team is not None and not is_team(team.name):
        raise ValidationFailed.on("team", f"{team.name!r} is a role, not a team")
    target: Any = model if model is not None else team
    codename = f"registry.{policies.VALIDATE_MODEL}" if model is not None else f"auth.{policies.VALIDATE_TEAM}"
    (assign_perm if assign else remove_perm)(codename, validator, target)
    audit_record(
        actor=actor,
        action="validator.assigned" if assign else "validator.unassigned",
        object_type="registry.registeredmodel" if model is not None else "auth.group",
        object_id=target.pk,
        model_name=model.name if model is not None else "",
        after={"validator": validator.get_username(), "model" if model is not None else "team": str(target)},
    )


# --- published rules: policies and the scorecard ----------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _lock_documents(family: QuerySet[Any]) -> None:
    """Serialise drafting and publishing within a family (one tier's policies, the scorecards):
    every writer locks all of its rows first, so version numbers and the one published version
    are decided one writer at a time."""
    list(family.select_for_update().values_list("pk", flat=True))


def _document(kind: type[PublishedDocument], pk: int) -> Any:
    family: QuerySet[Any] = kind._default_manager.all()
    if kind is ApprovalPolicy:
        family = ApprovalPolicy.objects.filter(tier=ApprovalPolicy.objects.filter(pk=pk).values("tier")[:1])
    _lock_documents(family)
    return kind._default_manager.get(pk=pk)


@transaction.atomic
def policy_draft(*, actor: Any, tier: int) -> ApprovalPolicy:
    """A new draft of the tier's policy, a copy of the published one, to edit and publish."""
    policies.can_edit_rules(actor).ensure()
    if tier not in rules.TIERS:
        raise ValidationFailed.on("tier", "must be 1, 2, 3 or 4")
    _lock_documents(ApprovalPolicy.objects.filter(tier=tier))
    source = published_policy(tier)
    draft = ApprovalPolicy.objects.create(
        tier=tier,
        version=(ApprovalPolicy.objects.filter(tier=tier).aggregate(v=Max("version"))["v"] or 0) + 1,
        created_by=actor,
        **{name: getattr(source, name) for name in POLICY_FIELDS if name != "notes"},
    )
    audit_record(
        actor=actor,
        action="approvalpolicy.drafted",
        obj=draft,
        after={"tier": tier, "version": draft.version, "from_version": source.version}
        | {name: getattr(draft, name) for name in POLICY_FIELDS},
    )
    return draft


@transaction.atomic
def scorecard_draft(*, actor: Any) -> Scorecard:
    policies.can_edit_rules(actor).ensure()
    _lock_documents(Scorecard.objects.all())
    source = published_scorecard()
    draft = Scorecard.objects.create(
        version=(Scorecard.objects.aggregate(v=Max("version"))["v"] or 0) + 1, created_by=actor, rules=source.rules
    )
    audit_record(
        actor=actor,
        action="scorecard.drafted",
        obj=draft,
        after={"version": draft.version, "from_version": source.version, "rules": draft.rules},
    )
    return draft


@transaction.atomic
def document_update(*, actor: Any, document: PublishedDocument, changes: dict[str, Any]) -> PublishedDocument:
    """Edit a draft policy or scorecard. Published versions never change."""
    policies.can_edit_rules(actor).ensure()
    document = _document(type(document), document.pk)
    allowed = POLICY_FIELDS if isinstance(document, ApprovalPolicy) else SCORECARD_FIELDS
    if document.status != DocumentStatus.DRAFT:
        raise Conflict(f"{document} is {document.status}: published rules never change; draft a new version.")
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ValidationFailed.on(unknown[0], "cannot be changed")
    # Compared as JSON: in Python true == 1, and a quorum of true must not pass for unchanged.
    changed = {name: value for name, value in changes.items() if _json(getattr(document, name)) != _json(value)}
    if not changed:
        return document
    before = {name: getattr(document, name) for name in changed}
    for name, value in changed.items():
        setattr(document, name, value)
    document.save(update_fields=list(changed))
    audit_record(
        actor=actor,
        action=f"{document._meta.model_name}.draft_updated",
        obj=document,
        before=before,
        after=changed,
    )
    return document


@transaction.atomic
def document_publish(*, actor: Any, document: PublishedDocument) -> PublishedDocument:
    """Check the draft and publish it; the version it replaces becomes superseded. Requests
    already running keep the version they pinned."""
    policies.can_edit_rules(actor).ensure()
    document = _document(type(document), document.pk)
    if document.status != DocumentStatus.DRAFT:
        raise Conflict(f"{document} is {document.status}: only a draft is published.")
    current: QuerySet[Any]
    if isinstance(document, ApprovalPolicy):
        rules.check_policy(document)
        current = ApprovalPolicy.objects.filter(tier=document.tier, status=DocumentStatus.PUBLISHED)
        content = {name: getattr(document, name) for name in POLICY_FIELDS} | {"tier": document.tier}
    else:
        assert isinstance(document, Scorecard)
        rules.check_scorecard(document.rules)
        current = Scorecard.objects.filter(status=DocumentStatus.PUBLISHED)
        content = {"rules": document.rules, "notes": document.notes}
    replaced = [(doc.pk, doc.version) for doc in current]
    current.update(status=DocumentStatus.SUPERSEDED)
    document.status = DocumentStatus.PUBLISHED
    document.published_by = actor
    document.published_at = timezone.now()
    document.save(update_fields=["status", "published_by", "published_at"])
    audit_record(
        actor=actor,
        action=f"{document._meta.model_name}.published",
        obj=document,
        before={"published": [{"id": pk, "version": v} for pk, v in replaced]},
        after={"version": document.version, **content},
        reason=document.notes,
    )
    return document
