"""The deployment gate: may this version enter this environment now? One question, asked by
CI/CD (``GET /api/v1/gate``), by ``deployment_record`` and by protected aliases, and answered
with every reason it may not, so a pipeline log says what to fix.

A version passes when:
- its model is not decommissioned and the version is not suspended, deprecated or decommissioned;
- where the published policy of the model's tier gates the environment, the version holds an
  approval (its latest approved release or revalidation), not past its valid-until date (plus ``GATE_GRACE_DAYS``), granted under a
  tier as strict as the model's current one, and none of its conditions is still open past its
  due date (plus ``GATE_GRACE_DAYS``);
- its model is not assessed as a prohibited practice;
- no exception granted for it since its last approval has lapsed;
- no critical finding is open (not yet closed) on it or on its model as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from common.errors import Conflict, ValidationFailed
from governance import selectors
from governance.models import (
    ApprovalPolicy,
    ApprovalRequest,
    Condition,
    ConditionState,
    DocumentStatus,
    Environment,
    Finding,
    FindingState,
    PolicyException,
    Severity,
)
from registry.models import ModelStatus, ModelVersion, VersionState

CLOSED_STATES = {VersionState.SUSPENDED, VersionState.DEPRECATED, VersionState.DECOMMISSIONED}


@dataclass(frozen=True)
class Answer:
    allowed: bool
    reasons: list[str] = field(default_factory=list)


class GateRefused(Conflict):
    code = "gate_refused"

    def __init__(self, subject: str, environment: Environment, reasons: list[str]):
        super().__init__(
            f"{subject} may not enter {environment.name}: {'; '.join(reasons)}.", fields={"gate": list(reasons)}
        )


def environment_named(name: str) -> Environment:
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        known = ", ".join(Environment.objects.values_list("name", flat=True))
        raise ValidationFailed.on("environment", f"no environment {name[:50]!r} (known: {known})")
    return environment


def evaluate(version: ModelVersion, environment: Environment, *, now: datetime | None = None) -> Answer:
    now = now or timezone.now()
    model = version.model
    subject = f"version {version.number} of {model.name}"
    reasons: list[str] = []
    if model.status == ModelStatus.DECOMMISSIONED:
        reasons.append(f"model {model.name} is decommissioned")
    if version.state in CLOSED_STATES:
        reasons.append(f"{subject} is {version.state}")
    approval = selectors.current_approval(version)
    if model.risk_tier is None:
        if _gated_anywhere(environment):
            reasons.append(f"model {model.name} has no risk tier, and {environment.name} needs an approval")
    elif _gated(model.risk_tier, environment):
        reasons += _approval_reasons(subject, approval, model.risk_tier, environment, now)
        reasons += _condition_reasons(approval, now)
    assessment = selectors.latest_assessment(model)
    if assessment is not None and assessment.prohibited:
        reasons.append(f"model {model.name} is assessed as a prohibited practice")
    # An exception granted before the approval was the approval's to weigh; one granted since
    # stops counting when it lapses.
    lapsed = PolicyException.objects.filter(version=version, expires_at__lt=now)
    if approval is not None and approval.closed_at is not None:
        lapsed = lapsed.filter(created_at__gt=approval.closed_at)
    for exception in lapsed.order_by("expires_at"):
        reasons.append(f"exception #{exception.pk} ({exception.scope}) lapsed on {exception.expires_at:%Y-%m-%d}")
    critical = (
        Finding.objects.filter(model=model, severity=Severity.CRITICAL)
        .exclude(state=FindingState.CLOSED)
        .filter(Q(version=version) | Q(version=None))
    )
    for finding in critical.order_by("id"):
        reasons.append(f"critical finding #{finding.pk} is open: {finding.title}")
    return Answer(not reasons, reasons)


def _gated(tier: int, environment: Environment) -> bool:
    policy = selectors.published_policy(tier)
    return policy is None or environment.name in policy.approval_required_in


def _gated_anywhere(environment: Environment) -> bool:
    published = ApprovalPolicy.objects.filter(status=DocumentStatus.PUBLISHED)
    return any(environment.name in policy.approval_required_in for policy in published)


def _approval_reasons(
    subject: str, approval: ApprovalRequest | None, tier: int, environment: Environment, now: datetime
) -> list[str]:
    if approval is None:
        return [f"{subject} has no approval, which T{tier} needs in {environment.name}"]
    if approval.tier > tier:
        return [f"{subject} was approved as T{approval.tier} (request #{approval.pk}); the model is now T{tier}"]
    grace = timedelta(days=settings.GATE_GRACE_DAYS)
    if approval.valid_until is not None and approval.valid_until + grace < now:
        return [f"{subject}'s approval (request #{approval.pk}) expired on {approval.valid_until:%Y-%m-%d}"]
    return []


def condition_closes_on(due_date: date) -> date:
    """The first day the gate refuses a version whose approval's condition, due on ``due_date``,
    is still open: ``GATE_GRACE_DAYS`` after the day it was due."""
    return due_date + timedelta(days=settings.GATE_GRACE_DAYS + 1)


def _condition_reasons(approval: ApprovalRequest | None, now: datetime) -> list[str]:
    if approval is None:
        return []
    today = timezone.localdate(now)
    open_conditions = Condition.objects.filter(request=approval, state=ConditionState.OPEN).order_by("due_date", "id")
    return [
        f"condition #{condition.pk} of its approval (request #{approval.pk}) was due on "
        f"{condition.due_date:%Y-%m-%d} and is still open: {condition.description[:80]}"
        for condition in open_conditions
        if condition_closes_on(condition.due_date) <= today
    ]


def ensure(version: ModelVersion, environment: Environment, **kwargs: Any) -> None:
    answer = evaluate(version, environment, **kwargs)
    if not answer.allowed:
        raise GateRefused(f"Version {version.number} of {version.model.name}", environment, answer.reasons)


def check_alias(*, actor: Any, version: ModelVersion, alias: str) -> None:
    """The registry's alias hook: a protected alias points only at a version the gate lets into
    the alias's environment."""
    environment_name = settings.PROTECTED_ALIASES.get(alias)
    if environment_name is not None:
        ensure(version, environment_named(environment_name))
