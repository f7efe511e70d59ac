"""Governance reads, always limited to what the user may see, fetched so that a list or a
request page costs a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Count, Exists, OuterRef, Prefetch, QuerySet, Subquery, When
from django.utils import timezone

from common import validation
from common.errors import NotFound, ValidationFailed
from governance import policies, workflow
from governance.models import (
    APPROVAL_KINDS,
    ApprovalPolicy,
    ApprovalRequest,
    Condition,
    ConditionState,
    Decision,
    Deployment,
    DocumentStatus,
    Finding,
    FindingEntry,
    FindingState,
    PolicyException,
    RequestStage,
    RequestState,
    RiskAssessment,
    Scorecard,
    Severity,
    StageState,
)
from registry import policies as registry_policies
from registry.models import (
    DatasetUsage,
    ModelVersion,
    RegisteredModel,
    RiskTier,
    VersionParent,
    VersionState,
)

EARLIER_REQUESTS = 20
DASHBOARD_ROWS = 50


def requests_for(user: Any) -> QuerySet[ApprovalRequest]:
    return policies.visible_requests(
        user,
        ApprovalRequest.objects.select_related(
            "model__team", "version__created_by", "policy", "scorecard", "submitted_by", "replacement__model"
        ).prefetch_related(
            "stages",
            Prefetch("decisions", Decision.objects.select_related("person", "stage")),
            "conditions__owner",
        ),
    )


def awaiting(user: Any, queryset: QuerySet[ApprovalRequest]) -> QuerySet[ApprovalRequest]:
    """The requests awaiting ``user``'s decision, oldest first."""
    return policies.decidable_requests(user, queryset.filter(state="open")).order_by("submitted_at", "id")


def request_get(user: Any, pk: int) -> ApprovalRequest:
    request = requests_for(user).filter(pk=pk).first()
    if request is None:
        raise NotFound(f"No approval request #{pk} that you may see.")
    return request


def condition_get(user: Any, pk: int) -> Condition:
    condition = (
        Condition.objects.filter(pk=pk, request__in=requests_for(user).values("pk")).select_related("owner").first()
    )
    if condition is None:
        raise NotFound(f"No condition #{pk} that you may see.")
    return condition


def exceptions_of(version: ModelVersion) -> QuerySet[PolicyException]:
    return PolicyException.objects.filter(version=version).select_related("version__model", "approver", "policy")


def policies_for(user: Any, *, status: str | None = DocumentStatus.PUBLISHED) -> QuerySet[ApprovalPolicy]:
    queryset = ApprovalPolicy.objects.select_related("published_by", "created_by")
    return queryset.filter(status=status) if status else queryset


def policy_get(pk: int) -> ApprovalPolicy:
    policy = policies_for(None, status=None).filter(pk=pk).first()
    if policy is None:
        raise NotFound(f"No approval policy #{pk}.")
    return policy


def published_policy(tier: int) -> ApprovalPolicy | None:
    """The approval policy in force for ``tier``."""
    return ApprovalPolicy.objects.filter(tier=tier, status=DocumentStatus.PUBLISHED).first()


def published_scorecard() -> Scorecard | None:
    return Scorecard.objects.filter(status=DocumentStatus.PUBLISHED).first()


def approvals(version: Any) -> QuerySet[ApprovalRequest]:
    """A version's approvals (releases and revalidations approved, expired since or not), the
    latest first. ``version``: one, or an ``OuterRef`` to one."""
    return ApprovalRequest.objects.filter(
        version=version, kind__in=APPROVAL_KINDS, state__in=[RequestState.APPROVED, RequestState.EXPIRED]
    ).order_by("-closed_at", "-id")


def current_approval(version: ModelVersion) -> ApprovalRequest | None:
    """The version's latest approval, which the gate weighs, its open conditions included."""
    return approvals(version).first()


def held_conditions() -> QuerySet[Condition]:
    """The open conditions the gate holds versions to: those of each version's current approval
    (not of an approval since superseded, nor of a request that was not approved)."""
    current = approvals(OuterRef("request__version")).values("pk")[:1]
    return Condition.objects.filter(state=ConditionState.OPEN, request=Subquery(current))


def latest_assessment(model: RegisteredModel) -> RiskAssessment | None:
    """The model's current assessment: its latest."""
    return (
        RiskAssessment.objects.filter(model=model)
        .select_related("scorecard", "assessed_by")
        .order_by("-created_at", "-id")
        .first()
    )


def scorecard_current() -> Scorecard:
    scorecard = published_scorecard()
    if scorecard is None:
        raise NotFound("No scorecard is published.")
    return scorecard


def assessment_current(model: RegisteredModel) -> RiskAssessment:
    assessment = latest_assessment(model)
    if assessment is None:
        raise NotFound(f"Model {model.name} has no risk assessment yet.")
    return assessment


@dataclass
class RequestPage:
    """Everything a decider reads before signing, fetched in a fixed number of queries."""

    request: ApprovalRequest
    assessment: RiskAssessment | None
    parents: list[VersionParent]
    datasets: list[DatasetUsage]
    earlier: list[ApprovalRequest]
    findings: list[Finding]


def impact_seen_by(user: Any, impact: dict[str, Any]) -> dict[str, Any]:
    """A decommission's impact as ``user`` may see it (with None, as anyone may): a downstream
    model they may not see keeps its id and versions but not its name, so the impact still
    counts it without naming it."""
    downstream = impact.get("downstream")
    if not downstream:
        return impact
    # An impact recorded before entries held the model's id names the model only.
    named = dict(
        RegisteredModel.objects.filter(name__in=[e["model"] for e in downstream if "model_id" not in e]).values_list(
            "name", "pk"
        )
    )
    downstream = [
        entry if "model_id" in entry else entry | {"model_id": named.get(entry["model"])} for entry in downstream
    ]
    models = RegisteredModel.objects.filter(pk__in={entry["model_id"] for entry in downstream})
    models = models.filter(restricted=False) if user is None else registry_policies.visible_models(user, models)
    seen = set(models.values_list("pk", flat=True))
    return impact | {
        "downstream": [entry | {"model": entry["model"] if entry["model_id"] in seen else None} for entry in downstream]
    }


def version_seen_by(user: Any, version: ModelVersion | None) -> dict[str, Any] | None:
    """A version a request names (a decommission's replacement) as ``user`` may see it (with
    None, as anyone may): of a model they may not see, its number without the model's name, as
    ``impact_seen_by`` has it."""
    if version is None:
        return None
    seen = not version.model.restricted if user is None else registry_policies.can_view_model(user, version.model)
    return {"model": version.model.name if seen else None, "version": version.number}


def request_page(user: Any, pk: int) -> RequestPage:
    request = request_get(user, pk)
    version = request.version
    earlier = (
        requests_for(user)
        .filter(model=request.model)
        .exclude(pk=request.pk)
        .order_by("-submitted_at", "-id")[:EARLIER_REQUESTS]
    )
    return RequestPage(
        request=request,
        assessment=latest_assessment(request.model),
        parents=list(
            VersionParent.objects.filter(child=version, parent__model__in=registry_policies.visible_models(user))
            .select_related("parent__model")
            .order_by("id")
        )
        if version
        else [],
        datasets=list(DatasetUsage.objects.filter(version=version).select_related("dataset_version__dataset"))
        if version
        else [],
        earlier=list(earlier),
        findings=list(findings_of(request.model)[:EARLIER_REQUESTS]),
    )


def findings_of(model: RegisteredModel) -> QuerySet[Finding]:
    """Findings not yet closed first, then the closed ones, newest first."""
    return (
        Finding.objects.filter(model=model)
        .select_related("model", "version", "owner", "raised_by")
        .prefetch_related(Prefetch("entries", FindingEntry.objects.select_related("by")))
        .order_by(Case(When(state=FindingState.CLOSED, then=1), default=0), "-created_at", "-id")
    )


def finding_get(user: Any, pk: int) -> Finding:
    finding = (
        Finding.objects.filter(pk=pk, model__in=registry_policies.visible_models(user))
        .select_related("model", "version", "owner", "raised_by")
        .prefetch_related(Prefetch("entries", FindingEntry.objects.select_related("by")))
        .first()
    )
    if finding is None:
        raise NotFound(f"No finding #{pk} that you may see.")
    return finding


@dataclass
class Dashboard:
    tiers: list[dict[str, Any]]
    states: list[str]
    in_flight: list[Any]
    overdue: list[RequestStage]
    revalidation_due: list[ApprovalRequest]
    findings: list[dict[str, Any]]


def dashboard(user: Any, *, now: datetime | None = None) -> Dashboard:
    """Models by tier and their versions by state; approvals in flight; overdue stages;
    approvals whose revalidation falls due within 30 days. Counts are over what ``user`` sees."""
    now = now or timezone.now()
    models = registry_policies.visible_models(user)
    states = list(VersionState.values)
    counts = {
        (row["model__risk_tier"], row["state"]): row["n"]
        for row in ModelVersion.objects.filter(model__in=models)
        .values("model__risk_tier", "state")
        .annotate(n=Count("id"))
    }
    model_counts = dict(models.values_list("risk_tier").annotate(n=Count("id")).values_list("risk_tier", "n"))
    tiers = [
        {
            "tier": tier,
            "label": label,
            "models": model_counts.get(tier, 0),
            "states": [counts.get((tier, state), 0) for state in states],
        }
        for tier, label in [*RiskTier.choices, (None, "Not assessed")]
    ]
    visible = ApprovalRequest.objects.filter(model__in=models)
    in_flight = list(
        visible.filter(state=RequestState.OPEN).values("tier", "kind").annotate(n=Count("id")).order_by("tier", "kind")
    )
    overdue = list(
        RequestStage.objects.filter(request__in=visible, state=StageState.ACTIVE, due_at__lt=now)
        .select_related("request__model", "request__version")
        .order_by("due_at")[:DASHBOARD_ROWS]
    )
    renewed = ApprovalRequest.objects.filter(
        version=OuterRef("version"),
        kind__in=APPROVAL_KINDS,
        state__in=[RequestState.APPROVED, RequestState.EXPIRED],
        closed_at__gt=OuterRef("closed_at"),
    )
    revalidation_due = list(
        visible.exclude(Exists(renewed))
        .filter(
            state__in=[RequestState.APPROVED, RequestState.EXPIRED],
            kind__in=APPROVAL_KINDS,
            valid_until__lt=now + timedelta(days=30),
            version__state__in=workflow.IN_FORCE,
        )
        .select_related("model", "version")
        .order_by("valid_until")[:DASHBOARD_ROWS]
    )
    open_findings = {
        (row["model__risk_tier"], row["severity"]): row["n"]
        for row in Finding.objects.filter(model__in=models)
        .exclude(state=FindingState.CLOSED)
        .values("model__risk_tier", "severity")
        .annotate(n=Count("id"))
    }
    severities = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW]
    findings = [
        {"tier": tier, "label": label, "severities": [open_findings.get((tier, sev), 0) for sev in severities]}
        for tier, label in RiskTier.choices
    ]
    return Dashboard(
        tiers=tiers,
        states=states,
        in_flight=in_flight,
        overdue=overdue,
        revalidation_due=revalidation_due,
        findings=findings,
    )


def deployments_for(user: Any) -> QuerySet[Deployment]:
    return Deployment.objects.filter(version__model__in=registry_policies.visible_models(user)).select_related(
        "version__model", "environment", "deployed_by", "retired_by"
    )


def deployment_get(user: Any, pk: int) -> Deployment:
    deployment = deployments_for(user).filter(pk=pk).first()
    if deployment is None:
        raise NotFound(f"No deployment #{pk} that you may see.")
    return deployment


def version_for_gate(user: Any, *, model: str, number: str, digest: str) -> ModelVersion:
    """The version a gate question names: by model and version number, or by artifact digest."""
    visible = ModelVersion.objects.filter(model__in=registry_policies.visible_models(user)).select_related("model")
    if digest:
        digest = validation.sha256_digest("digest", digest)
        if model or number:
            raise ValidationFailed.on("digest", "give either digest or model and version, not both")
        matches = list(visible.filter(artifact_sha256=digest)[:2])
        if len(matches) > 1:
            raise ValidationFailed.on("digest", "versions of several models have this digest: give model and version")
        if not matches:
            raise NotFound(f"No version with digest {digest[:12]}… that you may see.")
        return matches[0]
    if not model or not number:
        raise ValidationFailed.on("model", "give model and version, or digest")
    if not validation.is_number(number, 9):
        raise ValidationFailed.on("version", "a version number")
    version = visible.filter(model__name=model, number=int(number)).first()
    if version is None:
        raise NotFound(f"No version {number} of a model {model!r} that you may see.")
    return version
