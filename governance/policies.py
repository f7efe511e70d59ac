"""Who may do what in governance, segregation of duties included. The only place these rules
live: the API, the admin and the services ask here, and every refusal carries its reason, the
same text wherever it is shown ("You cannot approve: you submitted this version.").

``can_decide`` answers for one request; ``decidable_requests`` is the same rule as a query (the
queue), and a test holds the two to each other.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db.models import BigIntegerField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from guardian.models import UserObjectPermission

from common.policy import ALLOW, Decision, deny
from common.roles import GOVERNANCE_ROLES, Role, has_role, roles_of
from governance.models import (
    ApprovalRequest,
    Condition,
    ConditionState,
    FindingState,
    Outcome,
    RequestKind,
    RequestStage,
    StageState,
)
from governance.models import Decision as Signature
from registry import policies as registry_policies
from registry.models import ModelVersion, RegisteredModel, RegisteredModelUserObjectPermission

VALIDATE_MODEL = "validate_registeredmodel"  # on a RegisteredModel
VALIDATE_TEAM = "validate_team_models"  # on a team (auth.Group): every model of the team
VERBS: dict[str, str] = {
    Outcome.APPROVE: "approve",
    Outcome.APPROVE_WITH_CONDITIONS: "approve",
    Outcome.REQUEST_CHANGES: "request changes",
    Outcome.REJECT: "reject",
}


# --- validator assignment (django-guardian) ----------------------------------------------


def _team_assignments(user: Any) -> QuerySet:
    return (
        UserObjectPermission.objects.filter(
            user=user,
            permission__codename=VALIDATE_TEAM,
            content_type=ContentType.objects.get_for_model(Group),
        )
        .annotate(team_id=Cast("object_pk", BigIntegerField()))
        .values("team_id")
    )


def assigned_models(user: Any) -> Q:
    """A ``RegisteredModel`` filter: the models ``user`` is assigned to validate, one by one or
    through their team."""
    direct = RegisteredModelUserObjectPermission.objects.filter(user=user, permission__codename=VALIDATE_MODEL).values(
        "content_object_id"
    )
    return Q(pk__in=direct) | Q(team_id__in=_team_assignments(user))


def is_assigned_validator(user: Any, model: RegisteredModel) -> bool:
    return RegisteredModel.objects.filter(assigned_models(user), pk=model.pk).exists()


def can_assign_validators(user: Any) -> Decision:
    if has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny("Only a risk officer assigns validators.")


# --- deciding ----------------------------------------------------------------------------


def _stage_refusal(user: Any, request: ApprovalRequest, stage: RequestStage, on_team: bool) -> str:
    """Why ``user``, who holds the stage's role, still may not sign it ('' if they may)."""
    validator = stage.role == Role.VALIDATOR
    if (stage.independent or validator) and on_team:
        who = "a validator" if validator else f"the {stage.name.lower()} stage's signer"
        return f"{who} is never a member of the owning team ({request.model.team.name})."
    if validator and not is_assigned_validator(user, request.model):
        return f"you are not assigned to validate {request.model.name} or its team's models."
    return ""


def signable_stages(
    user: Any, request: ApprovalRequest, outcome: str = Outcome.APPROVE
) -> tuple[Decision, list[RequestStage]]:
    """The active stages ``user`` may sign on ``request``, or the reason there are none.

    Expects ``request.stages`` and ``request.decisions`` prefetched (the request page does)."""
    refuse = f"You cannot {VERBS.get(outcome, 'decide')}: "
    if not getattr(user, "is_authenticated", False):
        return deny(refuse + "sign in first."), []
    if user.pk == request.submitted_by_id:
        asked: dict[str, str] = {
            RequestKind.RELEASE: "submitted this version",
            RequestKind.TIER_CHANGE: "asked for this tier change",
        }
        what = asked.get(request.kind, f"asked for this {request.kind}")
        return deny(f"{refuse}you {what}."), []
    if request.version is not None and user.pk == request.version.created_by_id:
        return deny(refuse + "you created this version."), []
    signed = next((d for d in request.decisions.all() if d.person_id == user.pk), None)
    if signed is not None:
        return deny(f"{refuse}you already signed this request ({signed.stage.name})."), []
    active = [stage for stage in request.stages.all() if stage.state == StageState.ACTIVE]
    if not active:
        return deny(f"{refuse}the request is {request.state}; it awaits no decision."), []
    mine = [stage for stage in active if stage.role in roles_of(user)]
    if not mine:
        needed = " or ".join(sorted({f"{stage.name} ({stage.role})" for stage in active}))
        return deny(f"{refuse}the current stage needs {needed}, a role you do not hold."), []
    on_team = registry_policies.is_team_member(user, request.model.team_id)
    reasons = [_stage_refusal(user, request, stage, on_team) for stage in mine]
    allowed = [stage for stage, reason in zip(mine, reasons, strict=True) if not reason]
    if not allowed:
        return deny(refuse + reasons[0]), []
    return ALLOW, allowed


def can_decide(user: Any, request: ApprovalRequest, outcome: str = Outcome.APPROVE) -> Decision:
    return signable_stages(user, request, outcome)[0]


def decidable_requests(user: Any, queryset: QuerySet[ApprovalRequest]) -> QuerySet[ApprovalRequest]:
    """``can_decide`` as a query: the requests awaiting ``user``'s signature."""
    roles = roles_of(user)
    if not roles:
        return queryset.none()
    teams = registry_policies.teams_of(user).values("pk")
    stage = RequestStage.objects.filter(request=OuterRef("pk"), state=StageState.ACTIVE, role__in=roles)
    # Independent stages and validators' stages: only for those off the owning team; validators'
    # stages also only where assigned.
    stage = stage.filter(
        (Q(independent=False) & ~Q(role=Role.VALIDATOR))
        | (
            ~Q(request__model__team_id__in=teams)
            & (~Q(role=Role.VALIDATOR) | Q(request__model__in=RegisteredModel.objects.filter(assigned_models(user))))
        )
    )
    return (
        queryset.filter(Exists(stage))
        .exclude(submitted_by=user)
        .exclude(version__created_by=user)
        .exclude(Exists(Signature.objects.filter(request=OuterRef("pk"), person=user)))
    )


# --- the rest ----------------------------------------------------------------------------


def visible_requests(user: Any, queryset: QuerySet[ApprovalRequest]) -> QuerySet[ApprovalRequest]:
    """Requests about models the user may see."""
    return queryset.filter(model__in=registry_policies.visible_models(user))


def can_submit(user: Any, version: ModelVersion) -> Decision:
    if registry_policies.is_team_member(user, version.model.team_id):
        return ALLOW
    return deny(f"Only the owning team ({version.model.team.name}) submits versions of {version.model.name}.")


# The account Warden's own work acts as (``services.system_actor``).
SYSTEM_USERNAME = "warden"


CHECK_KINDS = frozenset({RequestKind.REVALIDATION, RequestKind.TIER_CHANGE, RequestKind.DECOMMISSION})


def opens_check(actor: Any, kind: str) -> bool:
    """Whether a request ``actor`` opens now is a check on the model's people: a revalidation,
    a tier change or a decommission that Warden opens itself (on a critical breach, an
    approval's expiry) or a risk officer does. Decided as it opens and kept with it
    (``ApprovalRequest.opened_as_check``), whatever becomes of the opener's roles."""
    return kind in CHECK_KINDS and (is_system(actor) or has_role(actor, Role.RISK_OFFICER))


def is_system(user: Any) -> bool:
    """Warden's own account: its name, and never able to sign in (``services.system_actor``
    refuses to act while a user of that name is active)."""
    return user.get_username() == SYSTEM_USERNAME and not user.is_active


def is_check(request: ApprovalRequest) -> bool:
    return request.opened_as_check


def can_withdraw(user: Any, request: ApprovalRequest) -> Decision:
    """A check on the model's people (``is_check``) is taken back only by a risk officer
    independent of the model (``_independent``), as any other way of letting it off a check."""
    if is_check(request):
        if has_role(user, Role.RISK_OFFICER):
            return _independent(user, request.model, request.version, "withdraw this request")
        opener = (
            "Warden opened this request itself"
            if is_system(request.submitted_by)
            else "A risk officer opened this request"
        )
        return deny(f"{opener}: only a risk officer independent of the model withdraws it.")
    if user.pk in (request.submitted_by_id, request.model.owner_id):
        return ALLOW
    return deny("Only the submitter or the model's owner withdraws a request.")


def can_assess(user: Any, model: RegisteredModel) -> Decision:
    if user.pk == model.owner_id or has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny(f"Only the owner of {model.name} or a risk officer records its risk assessment.")


def can_lift_prohibition(user: Any, model: RegisteredModel) -> Decision:
    """A risk officer independent of the model (``_independent``): lifting the ruling lets the
    model be approved again."""
    if has_role(user, Role.RISK_OFFICER):
        return _independent(user, model, None, "lift the prohibited-practice ruling")
    return deny(f"Only a risk officer lifts the prohibited-practice ruling on {model.name}.")


def can_request_tier_override(user: Any, model: RegisteredModel) -> Decision:
    if user.pk == model.owner_id or has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny(f"Only the owner of {model.name} or a risk officer asks for a tier override.")


def can_edit_rules(user: Any) -> Decision:
    if has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny("Only a risk officer edits and publishes policies and the scorecard.")


def _independent(user: Any, model: RegisteredModel, version: ModelVersion | None, act: str) -> Decision:
    """Whoever lets a model off a check is independent of it: not the version's creator, not on
    the owning team (an exception, a waived condition, a closed finding)."""
    if version is not None and user.pk == version.created_by_id:
        return deny(f"You cannot {act}: you created this version.")
    if registry_policies.is_team_member(user, model.team_id):
        return deny(f"You cannot {act}: you are on the owning team ({model.team.name}).")
    return ALLOW


def can_close_condition(user: Any, condition: Condition, state: str) -> Decision:
    """Its owner says a condition is met; otherwise only a risk officer independent of the model
    (``_independent``) waives one or marks it met: either way the gate stops holding the version
    to it."""
    if state == ConditionState.MET and user.pk == condition.owner_id:
        return ALLOW
    if has_role(user, Role.RISK_OFFICER):
        act = "waive this condition" if state == ConditionState.WAIVED else "mark this condition met"
        return _independent(user, condition.request.model, condition.request.version, act)
    if state == ConditionState.MET:
        return deny("Only the condition's owner or a risk officer marks it met.")
    return deny("Only a risk officer waives a condition.")


def can_raise_finding(user: Any) -> Decision:
    if roles_of(user) & GOVERNANCE_ROLES:
        return ALLOW
    return deny("Only validators, risk officers, compliance officers and committee members raise findings.")


def can_own_task(user: Any, model: RegisteredModel) -> Decision:
    """A finding or a condition is owned by someone who can act on it: an active user who may
    see its model (who would otherwise be told of a restricted model, and could not open it)."""
    if user.is_active and registry_policies.can_view_model(user, model):
        return ALLOW
    return deny(f"{user.get_username()} cannot see {model.name}, so cannot act on it.")


def can_deploy(user: Any, version: ModelVersion) -> Decision:
    """Deployers, and the owning team, record deployments and retire them."""
    if has_role(user, Role.DEPLOYER) or registry_policies.is_team_member(user, version.model.team_id):
        return ALLOW
    return deny(f"Only deployers and the owning team ({version.model.team.name}) deploy {version.model.name}.")


def can_grant_exception(user: Any, version: ModelVersion) -> Decision:
    if not has_role(user, Role.RISK_OFFICER):
        return deny("Only a risk officer grants an exception.")
    return _independent(user, version.model, version, "grant this exception")


def can_suspend(user: Any) -> Decision:
    if has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny("Only a risk officer suspends a version.")


def can_deprecate(user: Any, model: RegisteredModel) -> Decision:
    if user.pk == model.owner_id or has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny(f"Only the owner of {model.name} or a risk officer deprecates its versions.")


def can_open(user: Any, model: RegisteredModel, kind: str) -> Decision:
    """Revalidation and reinstatement requests come from the owning team or a risk officer; a
    decommission request from the model's owner or a risk officer."""
    if has_role(user, Role.RISK_OFFICER):
        return ALLOW
    if kind == RequestKind.DECOMMISSION:
        if user.pk == model.owner_id:
            return ALLOW
        return deny(f"Only the owner of {model.name} or a risk officer asks to decommission it.")
    if registry_policies.is_team_member(user, model.team_id):
        return ALLOW
    return deny(f"Only the owning team ({model.team.name}) or a risk officer asks for a {kind} of {model.name}.")


def can_move_finding(user: Any, finding: Any, state: str) -> Decision:
    """The finding's owner or the model's team acknowledge and remediate it; governance roles
    close it (or send a remediation back), the fix confirmed by someone independent of it."""
    governance = bool(roles_of(user) & GOVERNANCE_ROLES)
    if state == FindingState.CLOSED or (
        state == FindingState.ACKNOWLEDGED and finding.state == FindingState.REMEDIATED
    ):
        if not governance:
            return deny("Only validators, risk officers, compliance officers and committee members close a finding.")
        remediated_by = (
            finding.entries.filter(action="remediated").order_by("-at", "-id").values_list("by_id", flat=True).first()
        )
        if state == FindingState.CLOSED and remediated_by == user.pk:
            return deny("You cannot close this finding: you said it was remediated; someone else confirms it.")
        if state == FindingState.CLOSED:
            return _independent(user, finding.model, finding.version, "close this finding")
        return ALLOW
    if governance or user.pk in (finding.owner_id, finding.model.owner_id):
        return ALLOW
    if registry_policies.is_team_member(user, finding.model.team_id):
        return ALLOW
    return deny(f"Only the finding's owner, the team of {finding.model.name} or governance roles work on it.")
