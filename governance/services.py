"""Every governance write: assessments, submissions, decisions, withdrawals, tier overrides,
exceptions, validator assignments and the published rules. Each locks what it changes, asks
``governance.policies`` who may, ``governance.workflow`` whether the move is allowed, saves, and
writes its audit events in the same transaction; the API, the admin and the commands call these.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from guardian.shortcuts import assign_perm, get_user_perms, remove_perm

from audit.models import AuditEvent
from audit.services import audit_record
from common.errors import Conflict, DomainError, Unavailable, ValidationFailed
from common.roles import Role, has_role, is_team, roles_of
from governance import gate, policies, rules, selectors, tiering, workflow
from governance.calendar import add_business_days, add_months
from governance.models import (
    APPROVAL_KINDS,
    ApprovalPolicy,
    ApprovalRequest,
    Condition,
    ConditionState,
    Decision,
    Deployment,
    DocumentStatus,
    Environment,
    Finding,
    FindingEntry,
    FindingSource,
    FindingState,
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
from notifications import outbox
from notifications.models import Event
from registry import selectors as registry_selectors
from registry import services as registry_services
from registry.models import Alias, ModelStatus, ModelVersion, RegisteredModel, VersionState

log = logging.getLogger(__name__)

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
# A condition is due within this many years: one due later is no condition (and a date near the
# calendar's end has no day after it for the gate to close on).
CONDITION_YEARS = 10
# The states a version's approval is in force in: it is revalidated in them, and may replace
# a version decommissioned (``workflow.IN_FORCE``).
IN_FORCE = workflow.IN_FORCE


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


def _ensure_active(model: RegisteredModel) -> None:
    if model.status == ModelStatus.DECOMMISSIONED:
        raise Conflict(f"Model {model.name} is decommissioned: nothing more can be asked of it.")


def _version_name(version: ModelVersion) -> str:
    return f"Version {version.number} of {version.model.name}"


def _lock_request(request: ApprovalRequest) -> ApprovalRequest:
    """Lock what deciding the request may change (``_lock_in_order``), then read it afresh:
    whoever held the locks before may have moved it on. A decommission may also withdraw the
    other open requests it overtakes and retire versions and deployments; a tier change
    withdraws every other open request of the model."""
    fixed = ApprovalRequest.objects.values_list("kind", "version_id", "model_id")  # never change
    kind, version_id, model_id = fixed.get(pk=request.pk)
    requests = Q(pk=request.pk)
    if kind == RequestKind.DECOMMISSION:
        requests |= Q(pk__in=_withdrawn_by(request.pk, model_id, version_id))
    elif kind == RequestKind.TIER_CHANGE:
        requests |= Q(model_id=model_id, state=RequestState.OPEN)
    grows = kind in (RequestKind.DECOMMISSION, RequestKind.TIER_CHANGE)
    versions = _lock_in_order(model_id, ApprovalRequest.objects.filter(requests), grows=grows)
    if kind == RequestKind.DECOMMISSION:
        live = Deployment.objects.filter(version__in=versions, retired_at=None)
        list(live.select_for_update(no_key=True).values_list("pk"))  # no key, as deployment_retire says
    return (
        ApprovalRequest.objects.select_related("model__team", "version", "policy", "scorecard")
        .prefetch_related("stages", "decisions__stage")
        .get(pk=request.pk)
    )


def _lock_in_order(
    model_id: int, requests: QuerySet[ApprovalRequest], *, grows: bool = False
) -> QuerySet[ModelVersion]:
    """Lock ``requests`` (by id), the versions they are about (every version of the model for a
    whole-model decommission), then the model: the one order in which every service that locks
    more than one of these takes them, and before any audit event, so two of them never wait on
    each other in a circle. Returns the versions.

    ``grows``: ``requests`` are the model's open ones (or some of them), which a tier change or
    a decommission withdraws. One opened after they were locked and before the model was (its
    opener held the model) is not locked here, and whoever decides it at this moment holds it
    and waits for the model: withdrawing it would wait for them in a circle. So the locks are
    taken in a savepoint and, if ``requests`` has grown by the time the model is held, given
    back (a savepoint rolled back releases the row locks taken in it) and taken again, the new
    request with them. After ``_LOCK_ATTEMPTS`` tries they are kept as they are; should the
    circle then close, PostgreSQL ends one side and its caller is asked to send it again."""
    if not grows:
        return _take_locks(model_id, requests)[0]
    attempt = 1
    while True:
        with transaction.atomic():
            versions, locked = _take_locks(model_id, requests)
            if attempt == _LOCK_ATTEMPTS or not requests.exclude(pk__in=locked).exists():
                return versions
            transaction.set_rollback(True)
        attempt += 1


_LOCK_ATTEMPTS = 3


def _take_locks(model_id: int, requests: QuerySet[ApprovalRequest]) -> tuple[QuerySet[ModelVersion], list[int]]:
    locked = list(requests.select_for_update(of=("self",)).order_by("pk").values_list("pk", "kind", "version_id"))
    if any(kind == RequestKind.DECOMMISSION and version_id is None for _, kind, version_id in locked):
        versions = ModelVersion.objects.filter(model_id=model_id)
    else:
        versions = ModelVersion.objects.filter(pk__in=[version for *_, version in locked if version is not None])
    list(versions.select_for_update(no_key=True).order_by("pk").values_list("pk"))
    RegisteredModel.objects.select_for_update(no_key=True).filter(pk=model_id).first()
    return versions, [pk for pk, *_ in locked]


def _lock_version(pk: int) -> ModelVersion:
    """The version, then its model, locked in the services' one order (``_lock_in_order``), the
    model read once locked: its tier, status and owner as any change of them in flight left them
    when it committed, not as they were before (a submission pinning the old tier's policy)."""
    version = ModelVersion.objects.select_for_update(of=("self",), no_key=True).get(pk=pk)
    models = RegisteredModel.objects.select_for_update(of=("self",), no_key=True).select_related("team", "owner")
    version.model = models.get(pk=version.model_id)
    return version


def _lock_for_tier(model: RegisteredModel) -> RegisteredModel:
    """Lock the model for a change of its tier, which withdraws its open requests: those first."""
    open_requests = ApprovalRequest.objects.filter(model_id=model.pk, state=RequestState.OPEN)
    _lock_in_order(model.pk, open_requests, grows=True)
    return RegisteredModel.objects.select_related("team").get(pk=model.pk)


def _withdrawn_by(pk: int, model_id: int, version_id: int | None) -> QuerySet[ApprovalRequest]:
    """The open requests a decommission withdraws when it is approved: the version's, or all
    of the model's."""
    others = ApprovalRequest.objects.filter(model_id=model_id, state=RequestState.OPEN).exclude(pk=pk)
    return others.filter(version_id=version_id) if version_id is not None else others


def _open_stages(request: ApprovalRequest, stages: Sequence[dict[str, Any]], event: str) -> None:
    """Open the request's stages, the first step active, whose deciders are told of ``event``."""
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
    _activate_step(request, 1, event)


def _activate_step(request: ApprovalRequest, step: int, event: str = Event.STEP_OPENED) -> None:
    now = timezone.now()
    for stage in RequestStage.objects.filter(request=request, step=step):
        stage.state = StageState.ACTIVE
        stage.activated_at = now
        stage.due_at = add_business_days(timezone.localtime(now), stage.sla_business_days, settings.HOLIDAYS)
        stage.save(update_fields=["state", "activated_at", "due_at"])
    request.current_step = step
    request.save(update_fields=["current_step"])
    _tell_deciders(request, event)


def _close(request: ApprovalRequest, state: str, *, actor: Any, reason: str, tell: bool = True) -> None:
    """End the request in ``state``: its unfinished stages close with it, and those concerned
    are told (unless ``tell`` is false: an approval already renewed expires quietly)."""
    workflow.ensure_request_transition(f"Request #{request.pk}", request.state, state)
    before = {"state": request.state}
    request.state = state
    if request.closed_at is None:  # an approval that expires keeps the time and reason of its decision
        request.closed_at = timezone.now()
        request.closed_reason = reason
    request.save(update_fields=["state", "closed_at", "closed_reason"])
    RequestStage.objects.filter(request=request).exclude(state=StageState.COMPLETE).update(state=StageState.CLOSED)
    event = CLOSING_EVENTS.get(state)
    if event is not None and tell:
        _tell(
            event,
            request.model,
            f"{_request_name(request)} is {state.replace('_', ' ')}",
            to=[request.submitted_by, *outbox.owners(request.model)],
            request=request.pk,
            kind=request.kind,
            version=request.version.number if request.version else None,
            state=state,
            reason=reason,
            valid_until=request.valid_until,
        )
    audit_record(
        actor=actor,
        action=f"approval_request.{state}",
        obj=request,
        model_name=request.model.name,
        before=before,
        after={"state": state, "kind": request.kind, "valid_until": request.valid_until, **_pinned(request)},
        reason=reason,
    )


CLOSING_EVENTS: dict[str, str] = {
    RequestState.APPROVED: Event.REQUEST_APPROVED,
    RequestState.REJECTED: Event.REQUEST_REJECTED,
    RequestState.CHANGES_REQUESTED: Event.CHANGES_REQUESTED,
    RequestState.EXPIRED: Event.APPROVAL_EXPIRED,
    RequestState.WITHDRAWN: Event.REQUEST_WITHDRAWN,
}


def _request_name(request: ApprovalRequest) -> str:
    what = f"version {request.version.number} of {request.model.name}" if request.version else request.model.name
    return f"Request #{request.pk} ({request.kind.replace('_', ' ')} of {what})"


def _tell(event: str, model: RegisteredModel, subject: str, *, to: Any, **payload: Any) -> None:
    """Queue a notification in this transaction (``notifications.outbox``)."""
    outbox.enqueue(event, subject=subject, payload={"model": model.name, **payload}, model=model, to=to)


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
    model = _lock_for_tier(model)
    policies.can_assess(actor, model).ensure()
    _ensure_active(model)
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
    model = _lock_for_tier(model)
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
    model = registry_services.model_set_risk_tier(actor=actor, model=model, tier=tier, reason=reason, **source)
    if old is None or old == tier:
        return
    why = f"the model's tier changed from T{old} to T{tier}; submit again under the T{tier} policy"
    stale = ApprovalRequest.objects.filter(model=model, state=RequestState.OPEN)
    if "request" in source:
        stale = stale.exclude(pk=source["request"])
    for pk in stale.order_by("pk").values_list("pk", flat=True):
        request = _lock_request(ApprovalRequest(pk=pk))
        _withdraw(request, actor=actor, reason=why)
        # A check on the model's people (Warden's or a risk officer's) is asked again under the
        # new tier: whoever changed the tier does not make it go away.
        if not (policies.is_check(request) and _applies_still(request, tier)):
            continue
        rationale = f"{request.rationale} (asked again under T{tier})"
        if request.kind == RequestKind.TIER_CHANGE:
            assert request.requested_tier is not None
            _open_tier_change(
                actor=request.submitted_by, model=model, tier=request.requested_tier, rationale=rationale, check=True
            )
        else:
            _open_request(
                actor=request.submitted_by,
                kind=request.kind,
                model=model,
                version=request.version,
                rationale=rationale,
                replacement=request.replacement,
                check=True,
            )


def _applies_still(request: ApprovalRequest, tier: int) -> bool:
    """Whether a check a change to ``tier`` withdrew still applies: a revalidation of a version
    still approved or deployed (suspended since, it comes back only through a reinstatement,
    decided under the new tier; deprecated, it is on its way out); a decommission of what may
    still be decommissioned, its replacement still in force; a tier change to a stricter tier
    than the new one (the new tier overtakes any other). Not a release, which its team submits
    again."""
    version, replacement = request.version, request.replacement
    if request.kind == RequestKind.TIER_CHANGE:
        return request.requested_tier is not None and request.requested_tier < tier
    if request.kind == RequestKind.REVALIDATION:
        return version is not None and version.state in IN_FORCE
    if request.kind == RequestKind.DECOMMISSION:
        decommissionable = version is None or workflow.may_move_version(version.state, VersionState.DECOMMISSIONED)
        return decommissionable and (replacement is None or replacement.state in IN_FORCE)
    return False


def takes_conditions(request: ApprovalRequest) -> bool:
    """Whether a request may be approved with conditions: a release or a revalidation, whose
    conditions the gate holds the version to (``selectors.held_conditions``)."""
    return request.kind in APPROVAL_KINDS


def check_team_change(*, model: RegisteredModel, team: Group) -> None:
    """A model keeps its team while requests about it are open: their independent stages were
    put to people judged against that team (a validator is never on the owning team), and moving
    it would let a colleague of the model's developers sign. Called with the model locked."""
    open_requests = list(
        ApprovalRequest.objects.filter(model=model, state=RequestState.OPEN).order_by("pk").values_list("pk", flat=True)
    )
    if open_requests:
        numbers = ", ".join(f"#{pk}" for pk in open_requests)
        raise Conflict.on(
            "team",
            f"{model.name} has open requests ({numbers}), put to people chosen against its team "
            f"({model.team.name}); decide or withdraw them before it moves to {team.name}",
        )


def _withdraw(request: ApprovalRequest, *, actor: Any, reason: str) -> None:
    """Close an open request as withdrawn; a release's version returns to draft."""
    _close(request, RequestState.WITHDRAWN, actor=actor, reason=reason)
    if request.kind == RequestKind.RELEASE:
        _move_version(request, VersionState.DRAFT, actor=actor, reason=f"request #{request.pk} withdrawn: {reason}")


def _open_tier_change(
    *, actor: Any, model: RegisteredModel, tier: int, rationale: str, check: bool | None = None
) -> ApprovalRequest:
    _ensure_active(model)
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
                opened_as_check=policies.opens_check(actor, RequestKind.TIER_CHANGE) if check is None else check,
            )
    except IntegrityError:
        open_id = ApprovalRequest.objects.filter(model=model, kind=RequestKind.TIER_CHANGE, state=RequestState.OPEN)
        raise Conflict(
            f"A tier change for {model.name} already awaits a decision (#{open_id.values_list('pk', flat=True).first()})."
        ) from None
    _open_stages(request, scorecard.rules["override_stages"], Event.REQUEST_SUBMITTED)
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
            "check": request.opened_as_check,
        },
        reason=rationale,
    )
    return request


# --- submission and withdrawal -----------------------------------------------------------


@transaction.atomic
def request_submit(*, actor: Any, version: ModelVersion, rationale: str = "") -> ApprovalRequest:
    """Submit a draft version for release under the policy published for its model's tier,
    which the request pins to its end."""
    version = _lock_version(version.pk)
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
    _ensure_active(model)
    if model.risk_tier is None:
        raise Conflict(f"Model {model.name} has no risk tier: record its risk assessment before submitting.")
    assessment = selectors.latest_assessment(model)
    if assessment is not None and assessment.prohibited:
        raise Conflict(f"Model {model.name} is assessed as a prohibited practice: it can never be approved.")
    request = _put(actor=actor, kind=RequestKind.RELEASE, model=model, version=version, rationale=rationale)
    _move_version(request, VersionState.SUBMITTED, actor=actor, reason=rationale or "submitted for approval")
    return request


def _tell_deciders(request: ApprovalRequest, event: str) -> None:
    """Tell those who may sign the active step that the request awaits them (read afresh: the
    step has just moved, and ``can_decide`` reads the stages and signatures)."""
    request = (
        ApprovalRequest.objects.select_related("model", "version")
        .prefetch_related("stages", "decisions__stage")
        .get(pk=request.pk)
    )
    roles = sorted({stage.role for stage in request.stages.all() if stage.state == StageState.ACTIVE})
    _tell(
        event,
        request.model,
        f"{_request_name(request)} awaits {' and '.join(roles)}",
        to=[person for person in outbox.people(*roles) if policies.can_decide(person, request)],
        request=request.pk,
        kind=request.kind,
        version=request.version.number if request.version else None,
        tier=request.tier,
    )


@transaction.atomic
def request_withdraw(*, actor: Any, request: ApprovalRequest, reason: str) -> ApprovalRequest:
    """Take an open request back: its version returns to draft, to be submitted again."""
    request = _lock_request(request)
    policies.can_withdraw(actor, request).ensure()
    reason = _text("reason", reason, required=True)
    _withdraw(request, actor=actor, reason=reason)
    return request


# --- decisions ---------------------------------------------------------------------------


MAX_CONDITIONS = 20  # in one decision, from whichever interface


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
    signed = _choose_stage(request, actor, stages, stage)
    if outcome == Outcome.APPROVE_WITH_CONDITIONS and not conditions:
        raise ValidationFailed.on("conditions", "an approval with conditions names at least one condition")
    if conditions and outcome != Outcome.APPROVE_WITH_CONDITIONS:
        raise ValidationFailed.on("conditions", "only an approval with conditions has conditions")
    if len(conditions) > MAX_CONDITIONS:
        raise ValidationFailed.on("conditions", f"at most {MAX_CONDITIONS} conditions in one decision")
    if conditions and not takes_conditions(request):
        raise ValidationFailed.on(
            "conditions", f"a {request.kind} takes no conditions: the gate holds a version to its approval's"
        )
    for index, condition in enumerate(conditions):
        _text(f"conditions[{index}].description", condition.description, required=True)
        owner_may = policies.can_own_task(condition.owner, request.model)
        if not owner_may:
            raise ValidationFailed.on(f"conditions[{index}].owner", owner_may.reason)
        if not timezone.localdate() < condition.due_date <= add_months(timezone.localdate(), 12 * CONDITION_YEARS):
            raise ValidationFailed.on(
                f"conditions[{index}].due_date", f"must be after today and within {CONDITION_YEARS} years"
            )

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
    _tell(
        Event.DECISION_RECORDED,
        request.model,
        f"{actor.get_username()} chose to {outcome.replace('_', ' ')} on {_request_name(request).lower()}",
        to=[request.submitted_by, request.model.owner],
        request=request.pk,
        kind=request.kind,
        stage=signed.name,
        outcome=outcome,
        by=actor.get_username(),
        comment=comment,
    )
    if outcome == Outcome.REJECT:
        _finish(request, RequestState.REJECTED, actor=actor, reason=comment)
    elif outcome == Outcome.REQUEST_CHANGES:
        _finish(request, RequestState.CHANGES_REQUESTED, actor=actor, reason=comment)
    else:
        _count_towards_quorum(request, signed, actor=actor)
    return decision


def _choose_stage(request: ApprovalRequest, actor: Any, stages: list[RequestStage], name: str | None) -> RequestStage:
    """The stage a decision signs: the one named, while it is still open to the actor, or the
    one they may sign. One who holds the roles of several stages of the request names theirs,
    even if only one is open now: the step may have moved on since they read the request, and a
    signature meant for one stage is not counted towards the next."""
    if name:
        for stage in stages:
            if stage.name == name:
                return stage
        named = next((s for s in request.stages.all() if s.name == name), None)
        if named is not None and named.state != StageState.ACTIVE:
            raise Conflict.on("stage", f"{name} is {named.state} now; the request awaits {_awaited(request)}")
        raise ValidationFailed.on("stage", f"you may sign: {', '.join(s.name for s in stages)}")
    held = [s.name for s in request.stages.all() if s.role in roles_of(actor)]
    if len(held) > 1:
        raise ValidationFailed.on(
            "stage",
            f"you hold the roles of more than one stage of this request ({', '.join(held)}); name the one you sign: "
            f"{', '.join(s.name for s in stages)}",
        )
    return stages[0]


def _awaited(request: ApprovalRequest) -> str:
    return " and ".join(s.name for s in request.stages.all() if s.state == StageState.ACTIVE) or "no decision"


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
    """End the request and carry out what it decided: a release moves its version; an approved
    revalidation renews the approval, a rejected one suspends the version (its validators found
    it unfit, so the gate closes at once; changes requested leave the approval to lapse at its
    ``valid_until``); an approved reinstatement lifts the suspension; an approved decommission
    retires everything it names; an approved tier change sets the tier."""
    approved = state == RequestState.APPROVED
    if approved and request.kind in (*APPROVAL_KINDS, RequestKind.REINSTATEMENT):
        assessment = selectors.latest_assessment(request.model)
        if assessment is not None and assessment.prohibited:
            raise Conflict(
                f"Model {request.model.name} is assessed as a prohibited practice: it can never be approved."
            )
    if approved and request.kind in APPROVAL_KINDS:
        assert request.policy is not None
        request.valid_until = add_months(timezone.now(), request.policy.revalidation_months)
        request.save(update_fields=["valid_until"])
    _close(request, state, actor=actor, reason=reason)
    if request.kind == RequestKind.RELEASE:
        _move_version(request, state, actor=actor, reason=reason)
    elif request.kind == RequestKind.REVALIDATION:
        version = request.version
        assert version is not None  # a revalidation is of a version
        if state == RequestState.REJECTED and VersionState.SUSPENDED in workflow.VERSION_TRANSITIONS[version.state]:
            _suspend(version, actor=actor, reason=f"revalidation #{request.pk} rejected: {reason}")
    elif not approved:
        return
    elif request.kind == RequestKind.REINSTATEMENT:
        _reinstate(request, actor=actor)
    elif request.kind == RequestKind.DECOMMISSION:
        _decommission(request, actor=actor)
    else:
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
    # The condition's row alone: its request and model are read, not changed (locking them
    # would hold up every version written to the model meanwhile).
    condition = (
        Condition.objects.select_for_update(of=("self",), no_key=True)
        .select_related("request__model")
        .get(pk=condition.pk)
    )
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
    version = _lock_version(version.pk)  # the gate reads the model's tier, status and findings
    policies.can_deploy(actor, version).ensure()
    endpoint = _text("endpoint", endpoint, required=False, limit=1000)
    gate.ensure(version, environment)
    if Deployment.objects.filter(version=version, environment=environment, retired_at=None).exists():
        raise Conflict(f"{_version_name(version)} is already deployed in {environment.name}.")
    deployment = Deployment.objects.create(
        version=version, environment=environment, endpoint=endpoint, deployed_by=actor
    )
    _tell(
        Event.VERSION_DEPLOYED,
        version.model,
        f"{_version_name(version)} is deployed in {environment.name}",
        to=outbox.owners(version.model),
        version=version.number,
        environment=environment.name,
        endpoint=endpoint,
        by=actor.get_username(),
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
    # The version before the deployment, as a decommission locks them.
    version = (
        ModelVersion.objects.select_for_update(of=("self",), no_key=True)
        .select_related("model__team")
        .get(pk=Deployment.objects.values_list("version_id", flat=True).get(pk=deployment.pk))
    )
    # NO KEY UPDATE: a monitoring batch share-locks the deployments it names, and then their
    # versions (monitoring.services._hold, then _act); a lock that excluded its share would wait
    # for the batch while the batch waits for the version locked here.
    deployment = (
        Deployment.objects.select_for_update(of=("self",), no_key=True)
        .select_related("environment")
        .get(pk=deployment.pk)
    )
    policies.can_deploy(actor, version).ensure()
    reason = _text("reason", reason, required=True)
    if deployment.retired_at is not None:
        raise Conflict(f"Deployment #{deployment.pk} was retired on {deployment.retired_at:%Y-%m-%d}.")
    _retire(deployment, version, actor=actor, reason=reason)
    live = Deployment.objects.filter(version=version, retired_at=None).exists()
    if version.state == VersionState.DEPLOYED and not live:
        workflow.ensure_version_transition(_version_name(version), version.state, VersionState.APPROVED)
        registry_services.version_set_state(
            actor=actor, version=version, state=VersionState.APPROVED, reason="retired from every environment"
        )
    return deployment


def _retire(deployment: Deployment, version: ModelVersion, *, actor: Any, reason: str, **context: Any) -> None:
    deployment.retired_at = timezone.now()
    deployment.retired_by = actor
    deployment.retired_reason = reason
    deployment.save(update_fields=["retired_at", "retired_by", "retired_reason"])
    audit_record(
        actor=actor,
        action="deployment.retired",
        obj=deployment,
        model_name=version.model.name,
        after={"version": version.number, "environment": deployment.environment.name, **context},
        reason=reason,
    )


# --- suspension, revalidation, reinstatement, decommissioning ------------------------------


@transaction.atomic
def version_suspend(*, actor: Any, version: ModelVersion, reason: str) -> ModelVersion:
    """The kill switch: a risk officer suspends a version at once. The gate refuses it from the
    commit on, and its owners and the risk officers are told. Lifting it is a reinstatement
    request, decided under the tier's policy."""
    version = _lock_version(version.pk)
    policies.can_suspend(actor).ensure()
    reason = _text("reason", reason, required=True)
    return _suspend(version, actor=actor, reason=reason)


@transaction.atomic
def version_deprecate(*, actor: Any, version: ModelVersion, reason: str) -> ModelVersion:
    """Take a version out of use for good: from the commit on the gate refuses it (no
    deployment, no protected alias). Only a version no longer deployed anywhere (retire its
    deployments first), so nothing deprecated runs unwatched; an open reinstatement of it is
    withdrawn. The model's owner or a risk officer; decommissioning comes after."""
    reinstatements = ApprovalRequest.objects.filter(
        version_id=version.pk, kind=RequestKind.REINSTATEMENT, state=RequestState.OPEN
    )
    overtaken = list(reinstatements.select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True))
    version = _lock_version(version.pk)  # after the requests, in the services' one order
    policies.can_deprecate(actor, version.model).ensure()
    reason = _text("reason", reason, required=True)
    live = Deployment.objects.filter(version=version, retired_at=None).select_related("environment")
    if live:
        where = ", ".join(sorted(deployment.environment.name for deployment in live))
        raise Conflict(f"{_version_name(version)} is deployed in {where}: retire its deployments first.")
    workflow.ensure_version_transition(_version_name(version), version.state, VersionState.DEPRECATED)
    if set(reinstatements.values_list("pk", flat=True)) - set(overtaken):  # opened while this waited
        raise Conflict(f"A reinstatement of {_version_name(version).lower()} was just asked for: try again.")
    for pk in overtaken:
        _withdraw(_lock_request(ApprovalRequest(pk=pk)), actor=actor, reason=f"version deprecated: {reason}")
    return registry_services.version_set_state(
        actor=actor, version=version, state=VersionState.DEPRECATED, reason=reason
    )


def _suspend(version: ModelVersion, *, actor: Any, reason: str) -> ModelVersion:
    """Suspend ``version`` (locked, with its model): told and audited. The kill switch, or a
    critical monitoring breach under a policy that suspends automatically."""
    workflow.ensure_version_transition(_version_name(version), version.state, VersionState.SUSPENDED)
    live = list(Deployment.objects.filter(version=version, retired_at=None).select_related("environment"))
    _tell(
        Event.VERSION_SUSPENDED,
        version.model,
        f"{_version_name(version)} is suspended: {reason}",
        to=[*outbox.owners(version.model), *outbox.people(Role.RISK_OFFICER)],
        version=version.number,
        reason=reason,
        by=actor.get_username(),
        deployed_in=[deployment.environment.name for deployment in live],
    )
    return registry_services.version_set_state(
        actor=actor, version=version, state=VersionState.SUSPENDED, reason=reason
    )


def impact_of(model: RegisteredModel, version: ModelVersion | None) -> dict[str, Any]:
    """What decommissioning ``version`` (or, with None, the whole model) touches: its live
    deployments, the aliases pointing at it, and the models downstream of it in the lineage."""
    versions = ModelVersion.objects.filter(pk=version.pk) if version else model.versions.all()
    deployments = Deployment.objects.filter(version__in=versions, retired_at=None).select_related(
        "environment", "version"
    )
    aliases = Alias.objects.filter(version__in=versions).select_related("version")
    descendants = RawSQL(
        registry_selectors.descendant_ids_sql("version" if version else "model"), [version.pk if version else model.pk]
    )
    downstream: dict[tuple[str, int], set[int]] = {}
    for name, model_id, number in (
        ModelVersion.objects.filter(pk__in=descendants)
        .exclude(model_id=model.pk)
        .values_list("model__name", "model_id", "number")
    ):
        downstream.setdefault((name, model_id), set()).add(number)
    return {
        "deployments": [
            {"id": d.pk, "version": d.version.number, "environment": d.environment.name, "endpoint": d.endpoint}
            for d in deployments.order_by("pk")
        ],
        "aliases": [{"alias": a.name, "version": a.version.number} for a in aliases.order_by("name")],
        "downstream": [
            {"model": name, "model_id": model_id, "versions": sorted(numbers)}
            for (name, model_id), numbers in sorted(downstream.items())
        ],
    }


@transaction.atomic
def request_open(
    *,
    actor: Any,
    kind: str,
    model: RegisteredModel,
    version: ModelVersion | None = None,
    rationale: str,
    replacement: ModelVersion | None = None,
) -> ApprovalRequest:
    """Ask for a revalidation (of an approved version), a reinstatement (of a suspended one) or
    a decommission (of a version, or with no version of the whole model), decided under the
    policy published for the model's tier, which the request pins."""
    if kind not in (RequestKind.REVALIDATION, RequestKind.REINSTATEMENT, RequestKind.DECOMMISSION):
        raise ValidationFailed.on("kind", "revalidation, reinstatement or decommission")
    if version is not None:
        version = ModelVersion.objects.select_for_update(of=("self",), no_key=True).get(pk=version.pk)
    model = (
        RegisteredModel.objects.select_for_update(of=("self",), no_key=True)
        .select_related("team", "owner")
        .get(pk=model.pk)
    )
    policies.can_open(actor, model, kind).ensure()
    return _open_request(
        actor=actor, kind=kind, model=model, version=version, rationale=rationale, replacement=replacement
    )


def _open_request(
    *,
    actor: Any,
    kind: str,
    model: RegisteredModel,
    version: ModelVersion | None,
    rationale: str,
    replacement: ModelVersion | None = None,
    check: bool | None = None,
) -> ApprovalRequest:
    """``request_open`` once the rows are locked and the actor allowed (the clock opens
    revalidations here directly). ``check``: whether it is a check on the model's people, if
    not decided now (``policies.opens_check``): a check asked again stays one."""
    rationale = _text("rationale", rationale, required=True)
    if version is None and kind != RequestKind.DECOMMISSION:
        raise ValidationFailed.on("version", f"a {kind} names a version")
    _ensure_active(model)
    if version is not None:
        version.model = model
        _check_subject(kind, version)
    if replacement is not None:
        if kind != RequestKind.DECOMMISSION:
            raise ValidationFailed.on("replacement", "only a decommission names a replacement")
        if replacement.model_id == model.pk and (version is None or replacement.pk == version.pk):
            raise ValidationFailed.on("replacement", "a version that is not itself being decommissioned")
        if replacement.state not in IN_FORCE:
            raise ValidationFailed.on("replacement", f"an approved or deployed version (it is {replacement.state})")
    if model.risk_tier is None:
        raise Conflict(f"Model {model.name} has no risk tier: record its risk assessment first.")
    already = ApprovalRequest.objects.filter(model=model, version=version, kind=kind, state=RequestState.OPEN).first()
    if already is not None:
        raise Conflict(f"A {kind} of {model.name} already awaits a decision (#{already.pk}).")
    return _put(
        actor=actor, kind=kind, model=model, version=version, rationale=rationale, replacement=replacement, check=check
    )


def _put(
    *,
    actor: Any,
    kind: str,
    model: RegisteredModel,
    version: ModelVersion | None,
    rationale: str,
    replacement: ModelVersion | None = None,
    check: bool | None = None,
) -> ApprovalRequest:
    """Create a request under the policy published for the model's tier (pinned to its end),
    open its first step, tell its deciders and write its audit event. The caller holds the
    model's row lock, so no tier change commits between reading the tier and pinning it."""
    assert model.risk_tier is not None
    policy = published_policy(model.risk_tier)
    decommission = kind == RequestKind.DECOMMISSION
    try:
        with transaction.atomic():
            request = ApprovalRequest.objects.create(
                kind=kind,
                model=model,
                version=version,
                tier=model.risk_tier,
                policy=policy,
                rationale=rationale,
                replacement=replacement,
                impact=impact_of(model, version) if decommission else {},
                submitted_by=actor,
                opened_as_check=policies.opens_check(actor, kind) if check is None else check,
            )
    except IntegrityError:  # the same request, opened a moment ago by someone else
        raise Conflict(f"A {kind} of {model.name} already awaits a decision.") from None
    _open_stages(
        request, policy.stages, Event.VERSION_SUBMITTED if kind == RequestKind.RELEASE else Event.REQUEST_SUBMITTED
    )
    after = {
        "kind": kind,
        "version": version.number if version else None,
        "tier": request.tier,
        "policy": _policy_ref(policy),
        "stages": policy.stages,
        "check": request.opened_as_check,
    }
    if decommission:
        # As anyone may read it: the trail of a model is shown to those who may see the model.
        after |= {
            "replacement": selectors.version_seen_by(None, replacement),
            "impact": selectors.impact_seen_by(None, request.impact),
        }
    audit_record(
        actor=actor,
        action="approval_request.submitted",
        obj=request,
        model_name=model.name,
        after=after,
        reason=rationale,
    )
    return request


def _check_subject(kind: str, version: ModelVersion) -> None:
    name = _version_name(version)
    if kind == RequestKind.REVALIDATION:
        if version.state not in IN_FORCE:
            raise Conflict(f"{name} is {version.state}: only an approved or deployed version is revalidated.")
    elif kind == RequestKind.REINSTATEMENT:
        if version.state != VersionState.SUSPENDED:
            raise Conflict(f"{name} is {version.state}, not suspended.")
    else:
        workflow.ensure_version_transition(name, version.state, VersionState.DECOMMISSIONED)


def _reinstate(request: ApprovalRequest, *, actor: Any) -> None:
    version = request.version
    assert version is not None
    live = Deployment.objects.filter(version=version, retired_at=None).exists()
    _move_version(
        request,
        VersionState.DEPLOYED if live else VersionState.APPROVED,
        actor=actor,
        reason=f"suspension lifted by request #{request.pk}",
    )
    _tell(
        Event.SUSPENSION_LIFTED,
        request.model,
        f"{_version_name(version)} is reinstated",
        to=[*outbox.owners(request.model), *outbox.people(Role.RISK_OFFICER)],
        request=request.pk,
        version=version.number,
    )


def _decommission(request: ApprovalRequest, *, actor: Any) -> None:
    """Retire the deployments, clear the aliases and mark decommissioned: the version, or every
    version and the model. Nothing is deleted; the request keeps the reason, the replacement
    and, through its decisions, the approvers."""
    model = request.model
    if request.replacement_id is not None:
        # Named when it was asked; it takes over only if it may still serve.
        replacement = ModelVersion.objects.select_for_update(of=("self",), no_key=True).get(pk=request.replacement_id)
        if replacement.state not in IN_FORCE:
            raise Conflict.on(
                "replacement",
                f"{_version_name(replacement)}, named to take over, is {replacement.state} now: reject or "
                "withdraw this request, and ask again with a replacement in force or none",
            )
    why = f"decommissioned by request #{request.pk}: {request.rationale}"
    context = {"request": request.pk, **_pinned(request)}
    others = _withdrawn_by(request.pk, model.pk, request.version_id)
    for other in others.select_related("model__team", "version", "policy", "scorecard").order_by("pk"):
        _withdraw(other, actor=actor, reason=f"decommissioned by request #{request.pk}")
    if request.version is not None:
        versions = [request.version]
    else:
        versions = list(model.versions.exclude(state=VersionState.DECOMMISSIONED).order_by("number"))
    for version in versions:
        version.refresh_from_db(fields=["state"])
        live = Deployment.objects.filter(version=version, retired_at=None).select_related("environment")
        for deployment in live.order_by("pk"):
            _retire(deployment, version, actor=actor, reason=why, **context)
        registry_services.aliases_clear(actor=actor, version=version, reason=why, **context)
        if version.state == VersionState.DRAFT:
            continue  # never submitted: it stays a draft of a model that takes no more versions
        workflow.ensure_version_transition(_version_name(version), version.state, VersionState.DECOMMISSIONED)
        registry_services.version_set_state(
            actor=actor, version=version, state=VersionState.DECOMMISSIONED, reason=why, **context
        )
    if request.version is None:
        registry_services.model_set_status(
            actor=actor, model=model, status=ModelStatus.DECOMMISSIONED, reason=why, **context
        )
    _tell(
        Event.DECOMMISSIONED,
        model,
        f"{_version_name(request.version) if request.version else f'Model {model.name}'} is decommissioned",
        to=[*outbox.owners(model), *outbox.people(Role.RISK_OFFICER)],
        request=request.pk,
        version=request.version.number if request.version else None,
        reason=request.rationale,
        replacement=selectors.version_seen_by(None, request.replacement),
        impact=selectors.impact_seen_by(None, request.impact),
    )


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
    owner_may = policies.can_own_task(owner, model)
    if not owner_may:
        raise ValidationFailed.on("owner", owner_may.reason)
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
    FindingEntry.objects.create(
        finding=finding, action="raised", state=finding.state, severity=severity, note=description, by=actor
    )
    _tell(
        Event.FINDING_OPENED,
        model,
        f"{severity.capitalize()} finding on {model.name}: {title}",
        to=[owner, model.owner],
        finding=finding.pk,
        severity=severity,
        title=title,
        version=version.number if version else None,
        due_date=due_date,
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


FINDING_ACTIONS: dict[str, str] = {
    FindingState.ACKNOWLEDGED: "acknowledged",
    FindingState.REMEDIATED: "remediated",
    FindingState.CLOSED: "closed",
}
# How long the owner has to fix a finding, by severity.
FINDING_DUE_DAYS: dict[str, int] = {Severity.CRITICAL: 7, Severity.HIGH: 14, Severity.MEDIUM: 30, Severity.LOW: 60}
SEVERITY_ORDER: list[str] = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]


@transaction.atomic
def finding_move(*, actor: Any, finding: Finding, state: str, comment: str) -> Finding:
    """Acknowledge, remediate or close a finding, with a comment; each step is in its history."""
    finding = Finding.objects.select_for_update(of=("self",)).select_related("model__team").get(pk=finding.pk)
    if state not in FINDING_ACTIONS:
        raise ValidationFailed.on("state", f"one of: {', '.join(FINDING_ACTIONS)}")
    workflow.ensure_finding_transition(f"Finding #{finding.pk}", finding.state, state)
    policies.can_move_finding(actor, finding, state).ensure()
    comment = _text("comment", comment, required=True)
    before = {"state": finding.state}
    finding.state = state
    finding.save(update_fields=["state"])
    action = (
        "reopened"
        if before["state"] == FindingState.REMEDIATED and state != FindingState.CLOSED
        else FINDING_ACTIONS[state]
    )
    FindingEntry.objects.create(
        finding=finding, action=action, state=state, severity=finding.severity, note=comment, by=actor
    )
    audit_record(
        actor=actor,
        action=f"finding.{action}",
        obj=finding,
        model_name=finding.model.name,
        before=before,
        after={"state": state, "metric": finding.metric},
        reason=comment,
    )
    return finding


def lock_monitoring_findings(versions: Sequence[ModelVersion]) -> None:
    """Lock the monitoring findings of ``versions`` not yet closed, in id order: a batch of
    breaches does this before its first audit event, as ``monitoring_breach`` will update them."""
    live = Finding.objects.filter(version__in=[v.pk for v in versions], source=FindingSource.MONITORING)
    list(live.exclude(state=FindingState.CLOSED).select_for_update().order_by("pk").values_list("pk"))


def monitoring_breach(
    *,
    version: ModelVersion,
    metric: str,
    level: str,
    measure: str,
    value: float,
    detail: str,
    window_end: datetime,
) -> Finding | None:
    """What the tier's policy says a monitoring breach does, called by ``monitoring`` inside its
    transaction. ``level`` is "warn" or "critical". A breach opens a finding on the version's
    ``metric`` (severity by the policy), or raises the severity of the one not yet closed; a
    critical breach also opens a revalidation request where the policy says so, and suspends
    the version where it says ``"suspension": "automatic"`` (otherwise the risk officers, who
    are told of the finding, decide). Where the policy only logs (T4), the breach is an audit
    event and nothing more, once a window and level. Returns the finding, if any.

    A window is judged once: a breach whose window ends no later than the last one a finding
    of this metric judged (closed or not) changes nothing, so the periodic evaluation does not
    reopen, re-tell or re-suspend on data already acted upon; unless it now weighs more than
    the finding still open (its thresholds were tightened since), which it then escalates."""
    version = _lock_version(version.pk)
    model = version.model
    actor = system_actor()
    policy = selectors.published_policy(model.risk_tier) if model.risk_tier else None
    on_critical = (policy.monitoring if policy else {}).get("on_critical", {})
    breach = {"version": version.number, "metric": metric, "measure": measure, "value": value, "level": level}
    if on_critical.get("log_only") or not on_critical:
        # Judged once here too (the periodic evaluation meets the same window every hour), unless
        # the window logged last is this one, now critical (its thresholds were tightened since).
        logged = AuditEvent.objects.filter(
            object_type="registry.modelversion", object_id=str(version.pk), action="monitoring.breach_logged"
        )
        last = logged.filter(after__metric=metric).order_by("-seq").values_list("after", flat=True).first()
        seen = parse_datetime(last["window_end"]) if last and last.get("window_end") else None
        weightier = seen == window_end and (last or {}).get("level") == "warn" and level == "critical"
        if seen is not None and seen >= window_end and not weightier:
            return None
        audit_record(
            actor=actor,
            action="monitoring.breach_logged",
            obj=version,
            model_name=model.name,
            after={**breach, "window_end": window_end},
            reason=detail,
        )
        return None
    severity = on_critical.get("finding_severity", Severity.HIGH)
    if level == "warn":
        severity = SEVERITY_ORDER[max(0, SEVERITY_ORDER.index(severity) - 1)]
    ours = Finding.objects.filter(version=version, metric=metric, source=FindingSource.MONITORING)
    judged = ours.aggregate(last=Max("window_end"))["last"]
    finding = ours.select_for_update(of=("self",)).exclude(state=FindingState.CLOSED).first()
    # Judged already, unless it now weighs more than the open finding (thresholds tightened).
    weightier = finding is not None and SEVERITY_ORDER.index(severity) > SEVERITY_ORDER.index(finding.severity)
    if judged is not None and window_end <= judged and not weightier:
        return ours.order_by("-window_end", "-id").first()
    due = timezone.localdate() + timedelta(days=FINDING_DUE_DAYS[severity])
    title = f"{metric} breached its {level} threshold ({measure} {value:.4g})"
    reason = f"{level} breach of {metric}: {detail}"
    if finding is not None and SEVERITY_ORDER.index(severity) <= SEVERITY_ORDER.index(finding.severity):
        # Already at this severity or above: the new window is recorded; a fix claimed is undone.
        before_window, finding.window_end = finding.window_end, window_end
        fields = ["window_end"]
        if finding.state != FindingState.REMEDIATED:
            audit_record(
                actor=actor,
                action="finding.breached_again",
                obj=finding,
                model_name=model.name,
                before={"window_end": before_window},
                after={**breach, "window_end": window_end},
                reason=detail,
            )
        else:
            finding.state = FindingState.OPEN
            fields.append("state")
            FindingEntry.objects.create(
                finding=finding,
                action="reopened",
                state=finding.state,
                severity=finding.severity,
                note=detail,
                by=actor,
            )
            audit_record(
                actor=actor,
                action="finding.reopened",
                obj=finding,
                model_name=model.name,
                before={"state": FindingState.REMEDIATED, "window_end": before_window},
                after={**breach, "state": FindingState.OPEN, "window_end": window_end},
                reason=detail,
            )
        finding.save(update_fields=fields)
        if level == "critical":
            _act_on_critical(version, on_critical, actor=actor, reason=reason)
        return finding
    if finding is None:
        finding = Finding.objects.create(
            model=model,
            version=version,
            source=FindingSource.MONITORING,
            metric=metric,
            title=title[:200],
            description=detail,
            severity=severity,
            owner=model.owner,
            due_date=due,
            raised_by=actor,
            window_end=window_end,
        )
        action, before = "raised", None
    else:
        before = {"severity": finding.severity, "state": finding.state}
        finding.severity, finding.title, finding.due_date = severity, title[:200], min(finding.due_date, due)
        finding.window_end = max(finding.window_end, window_end) if finding.window_end else window_end
        if finding.state == FindingState.REMEDIATED:
            finding.state = FindingState.OPEN
        finding.save(update_fields=["severity", "title", "due_date", "window_end", "state"])
        action = "escalated"
    FindingEntry.objects.create(
        finding=finding, action=action, state=finding.state, severity=severity, note=detail, by=actor
    )
    _tell(
        Event.FINDING_OPENED,
        model,
        f"{severity.capitalize()} monitoring finding on {_version_name(version).lower()}: {title}",
        to=[*outbox.owners(model), *outbox.people(Role.RISK_OFFICER)],
        finding=finding.pk,
        severity=severity,
        title=title,
        version=version.number,
        metric=metric,
        level=level,
        due_date=finding.due_date,
    )
    audit_record(
        actor=actor,
        action=f"finding.{action}",
        obj=finding,
        model_name=model.name,
        before=before,
        after={**breach, "severity": severity, "due_date": finding.due_date, "source": FindingSource.MONITORING},
        reason=detail,
    )
    if level == "critical":
        _act_on_critical(version, on_critical, actor=actor, reason=reason)
    return finding


def _act_on_critical(version: ModelVersion, on_critical: dict[str, Any], *, actor: Any, reason: str) -> None:
    open_revalidation = ApprovalRequest.objects.filter(
        version=version, kind=RequestKind.REVALIDATION, state=RequestState.OPEN
    ).exists()
    if (
        on_critical.get("revalidation")
        and not open_revalidation
        and version.state
        in (
            VersionState.APPROVED,
            VersionState.DEPLOYED,
        )
    ):
        _open_request(
            actor=actor, kind=RequestKind.REVALIDATION, model=version.model, version=version, rationale=reason
        )
    if (
        on_critical.get("suspension") == "automatic"
        and VersionState.SUSPENDED in workflow.VERSION_TRANSITIONS[version.state]
    ):
        _suspend(version, actor=actor, reason=reason)


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
    version = _lock_version(version.pk)
    policies.can_grant_exception(actor, version).ensure()
    _ensure_active(version.model)
    if version.state == VersionState.DECOMMISSIONED:
        raise Conflict(f"{_version_name(version)} is decommissioned: no exception brings it back.")
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
    # One assignment of a validator at a time, so that two identical ones clicked at once make
    # one change and one event: the second sees the first's once it has committed.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=validator.pk).values_list("pk").first()
    if (codename.split(".")[1] in get_user_perms(validator, target)) == assign:
        return  # already so: nothing changes, and nothing is recorded
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
    # The family first, as drafting locks it: one publish or draft of a tier (or of the scorecard) at a time.
    _lock_documents(
        ApprovalPolicy.objects.filter(tier=document.tier)
        if isinstance(document, ApprovalPolicy)
        else Scorecard.objects.all()
    )
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
    # Published since this draft was made (from an earlier version, or beside it from the same):
    # publishing the draft would undo what that one changed.
    newer = current.filter(published_at__gt=document.created_at).first()
    if newer is not None:
        raise Conflict(f"{newer} was published after {document} was drafted: draft again from it, so its changes stay.")
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


# --- the clock: expiry, revalidation, reminders and escalation ----------------------------


def system_actor() -> Any:
    """The account periodic work acts as: it opens revalidation requests and records expiries.
    It cannot sign in, and as a submitter it never signs."""
    user, _ = get_user_model().objects.get_or_create(
        username=policies.SYSTEM_USERNAME,
        defaults={"is_active": False, "first_name": "Warden", "last_name": "(system)"},
    )
    if user.is_active:  # a person given the name, or the account switched on: it would act as them
        raise Unavailable(
            f"The user {policies.SYSTEM_USERNAME!r} is active, and that name is Warden's own account, which "
            "acts for the clock and never signs in: rename that user, or make it inactive"
        )
    return user


def lifecycle_sweep(now: datetime | None = None) -> dict[str, int]:
    """What the clock does, each item in a transaction of its own: approvals past their
    valid-until expire; approvals within REVALIDATION_LEAD_DAYS of it get a revalidation
    request (and their owners are told); lapsed exceptions are recorded; conditions still open
    past their due date are recorded and told once (the gate refuses their version
    GATE_GRACE_DAYS later); active stages near their due date are reminded, and overdue ones
    escalated to the risk officers."""
    now = now or timezone.now()
    actor = system_actor()
    current = ApprovalRequest.objects.filter(kind__in=APPROVAL_KINDS, state=RequestState.APPROVED)
    granted = ApprovalRequest.objects.filter(
        kind__in=APPROVAL_KINDS, state__in=[RequestState.APPROVED, RequestState.EXPIRED]
    )
    live_version = Q(version__state__in=IN_FORCE)
    superseded = ApprovalRequest.objects.filter(
        version=OuterRef("version"), kind__in=APPROVAL_KINDS, closed_at__gt=OuterRef("closed_at")
    ).exclude(state__in=[RequestState.OPEN, RequestState.WITHDRAWN])
    asked = ApprovalRequest.objects.filter(
        version=OuterRef("version"), kind=RequestKind.REVALIDATION, submitted_at__gt=OuterRef("closed_at")
    ).exclude(state=RequestState.WITHDRAWN)
    expiring = granted.filter(live_version, valid_until__lte=now + timedelta(days=settings.REVALIDATION_LEAD_DAYS))
    expiring = expiring.exclude(Exists(superseded)).exclude(Exists(asked))
    lapsed = PolicyException.objects.filter(expires_at__lte=now, expired_at=None)
    overdue = selectors.held_conditions().filter(overdue_at=None, due_date__lt=timezone.localdate(now))
    active = RequestStage.objects.filter(state=StageState.ACTIVE, request__state=RequestState.OPEN)
    soon = now + timedelta(hours=settings.SLA_REMINDER_HOURS)
    work = [
        ("expired", current.filter(valid_until__lte=now).order_by("valid_until"), _expire_approval),
        ("revalidations", expiring.order_by("valid_until"), _ask_revalidation),
        ("exceptions", lapsed.order_by("expires_at"), _expire_exception),
        ("conditions", overdue.order_by("due_date", "pk"), _condition_overdue),
        ("reminders", active.filter(reminded_at=None, due_at__gt=now, due_at__lte=soon).order_by("due_at"), _remind),
        ("escalations", active.filter(escalated_at=None, due_at__lte=now).order_by("due_at"), _escalate),
    ]
    done = {}
    for name, queryset, step in work:
        done[name] = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                done[name] += step(pk, actor=actor, now=now)
            except DomainError as error:  # one item's refusal must not stop the others
                log.warning("lifecycle sweep: %s #%s skipped: %s", name, pk, error.message)
            except DatabaseError:  # a deadlock or a race: the next run tries again
                log.exception("lifecycle sweep: %s #%s failed", name, pk)
    return done


def _remind(pk: int, *, actor: Any, now: datetime) -> int:
    return _stage_clock(pk, actor=actor, now=now, escalate=False)


def _escalate(pk: int, *, actor: Any, now: datetime) -> int:
    return _stage_clock(pk, actor=actor, now=now, escalate=True)


@transaction.atomic
def _expire_approval(pk: int, *, actor: Any, now: datetime) -> int:
    request = _lock_request(ApprovalRequest(pk=pk))
    if request.state != RequestState.APPROVED or request.valid_until is None or request.valid_until > now:
        return 0  # someone got there first
    renewed = selectors.current_approval(request.version) != request if request.version else False
    _close(
        request,
        RequestState.EXPIRED,
        actor=actor,
        reason=f"valid until {request.valid_until:%Y-%m-%d}" + (" (since renewed)" if renewed else ""),
        tell=not renewed,
    )
    return 1


@transaction.atomic
def _ask_revalidation(pk: int, *, actor: Any, now: datetime) -> int:
    approval = _lock_request(ApprovalRequest(pk=pk))
    version = approval.version
    assert version is not None and approval.valid_until is not None
    if ApprovalRequest.objects.filter(version=version, kind=RequestKind.REVALIDATION, state=RequestState.OPEN).exists():
        return 0
    if approval.model.risk_tier is None or selectors.published_policy(approval.model.risk_tier) is None:
        return 0
    _tell(
        Event.APPROVAL_EXPIRING,
        approval.model,
        f"The approval of {_version_name(version).lower()} expires on {approval.valid_until:%Y-%m-%d}",
        to=[*outbox.owners(approval.model), *outbox.people(Role.RISK_OFFICER)],
        request=approval.pk,
        version=version.number,
        valid_until=approval.valid_until,
    )
    _open_request(
        actor=actor,
        kind=RequestKind.REVALIDATION,
        model=approval.model,
        version=version,
        rationale=f"the approval by request #{approval.pk} expires on {approval.valid_until:%Y-%m-%d}",
    )
    return 1


@transaction.atomic
def _expire_exception(pk: int, *, actor: Any, now: datetime) -> int:
    exception = PolicyException.objects.select_for_update(of=("self",)).select_related("version__model").get(pk=pk)
    if exception.expired_at is not None:
        return 0
    exception.expired_at = now
    exception.save(update_fields=["expired_at"])
    model = exception.version.model
    _tell(
        Event.EXCEPTION_EXPIRED,
        model,
        f"Exception #{exception.pk} for {_version_name(exception.version).lower()} has expired",
        to=[*outbox.owners(model), exception.approver],
        exception=exception.pk,
        version=exception.version.number,
        scope=exception.scope,
        expires_at=exception.expires_at,
    )
    audit_record(
        actor=actor,
        action="exception.expired",
        obj=exception,
        model_name=model.name,
        after={"version": exception.version.number, "expires_at": exception.expires_at},
    )
    return 1


@transaction.atomic
def _condition_overdue(pk: int, *, actor: Any, now: datetime) -> int:
    condition = (
        Condition.objects.select_for_update(of=("self",))
        .select_related("request__model", "request__version")
        .get(pk=pk)
    )
    if condition.state != ConditionState.OPEN or condition.overdue_at is not None:
        return 0
    condition.overdue_at = now
    condition.save(update_fields=["overdue_at"])
    request, model = condition.request, condition.request.model
    closes = gate.condition_closes_on(condition.due_date)
    _tell(
        Event.CONDITION_OVERDUE,
        model,
        f"Condition #{condition.pk} of request #{request.pk} on {model.name} is overdue",
        to=[condition.owner, *outbox.owners(model), *outbox.people(Role.RISK_OFFICER)],
        condition=condition.pk,
        request=request.pk,
        version=request.version.number if request.version else None,
        description=condition.description,
        due_date=condition.due_date,
        gate_closes_on=closes,
    )
    audit_record(
        actor=actor,
        action="condition.overdue",
        obj=condition,
        model_name=model.name,
        after={"request": request.pk, "due_date": condition.due_date, "gate_closes_on": closes},
    )
    return 1


@transaction.atomic
def _stage_clock(pk: int, *, actor: Any, now: datetime, escalate: bool) -> int:
    """Remind a stage's signers that it is nearly due, or escalate an overdue one to the risk
    officers; each at most once per stage, each recorded and told."""
    request = _lock_request(ApprovalRequest(pk=RequestStage.objects.values_list("request_id", flat=True).get(pk=pk)))
    stage = RequestStage.objects.select_for_update(of=("self",)).get(pk=pk)
    mark = "escalated_at" if escalate else "reminded_at"
    if stage.state != StageState.ACTIVE or getattr(stage, mark) is not None:
        return 0
    setattr(stage, mark, now)
    stage.save(update_fields=[mark])
    if escalate:
        event, to = Event.SLA_BREACHED, outbox.people(Role.RISK_OFFICER)
        subject = f"Overdue since {stage.due_at:%Y-%m-%d}: {stage.name} of {_request_name(request).lower()}"
    else:
        event = Event.SLA_REMINDER
        to = [p for p in outbox.people(stage.role) if stage in policies.signable_stages(p, request)[1]]
        subject = f"Due {stage.due_at:%Y-%m-%d %H:%M}: {stage.name} of {_request_name(request).lower()}"
    _tell(
        event,
        request.model,
        subject,
        to=[person for person in to if person.pk != request.submitted_by_id],
        request=request.pk,
        stage=stage.name,
        role=stage.role,
        due_at=stage.due_at,
    )
    audit_record(
        actor=actor,
        action="approval_stage.escalated" if escalate else "approval_stage.reminded",
        obj=stage,
        model_name=request.model.name,
        after={"request": request.pk, "stage": stage.name, "role": stage.role, "due_at": stage.due_at},
    )
    return 1
