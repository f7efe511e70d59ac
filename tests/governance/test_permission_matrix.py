"""Every persona against every governance action: who may, and that everyone else is refused
with a reason (a 403 carrying text), never a silent no-op."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from common.errors import PermissionDenied
from common.roles import Role
from governance import policies, selectors, services
from governance.management.commands.demo_seed import ASSESSMENTS as ANSWERS
from governance.models import ApprovalRequest
from tests.factories import UserFactory, assessed_model, make_version, submitted

PERSONAS = [
    "creator",  # model developer on the owning team who built the version
    "submitter",  # the model's owner, who submitted it
    "teammate",  # another model developer on the owning team
    "outsider",  # a model developer on another team
    "validator",  # assigned to the owning team's models
    "unassigned_validator",
    "risk_officer",
    "compliance",
    "committee",
    "auditor",
]


@pytest.fixture
def people(developer, owner, outsider, assigned_validator, risk_officer, compliance, committee_member, auditor):
    return {
        "creator": developer,
        "submitter": owner,
        "teammate": UserFactory(username="teammate", groups=[Role.MODEL_DEVELOPER, "credit-risk"]),
        "outsider": outsider,
        "validator": assigned_validator,
        "unassigned_validator": UserFactory(username="validator2", groups=[Role.VALIDATOR], is_staff=True),
        "risk_officer": risk_officer,
        "compliance": compliance,
        "committee": committee_member,
        "auditor": auditor,
    }


def _decide_on(tier: int) -> Callable[[dict[str, Any], Any], Any]:
    def act(p: dict[str, Any], actor: Any) -> Any:
        _, request = submitted(p["creator"], p["submitter"], tier)
        return services.decision_record(actor=actor, request=request, outcome="approve")

    return act


def _t1_at(step: int) -> Callable[[dict[str, Any], Any], Any]:
    """Decide on a T1 request whose earlier steps have signed."""

    def act(p: dict[str, Any], actor: Any) -> Any:
        _, request = submitted(p["creator"], p["submitter"], 1)
        signers = [["validator"], ["compliance", "risk_officer"]][: step - 1]
        for names in signers:
            for name in names:
                services.decision_record(actor=p[name], request=request, outcome="approve")
        return services.decision_record(actor=actor, request=request, outcome="approve")

    return act


def _submit(p: dict[str, Any], actor: Any) -> Any:
    version = make_version(p["creator"], assessed_model(p["submitter"], 4))
    return services.request_submit(actor=actor, version=version)


def _withdraw(p: dict[str, Any], actor: Any) -> Any:
    _, request = submitted(p["creator"], p["submitter"], 3)
    return services.request_withdraw(actor=actor, request=request, reason="not now")


def _assess(p: dict[str, Any], actor: Any) -> Any:
    answers, flags = ANSWERS[1]
    return services.assessment_record(
        actor=actor, model=assessed_model(p["submitter"], 4), answers=answers, flags=flags
    )


def _override(p: dict[str, Any], actor: Any) -> Any:
    return services.tier_override_request(actor=actor, model=assessed_model(p["submitter"], 2), tier=1, rationale="r")


def _decide_override(p: dict[str, Any], actor: Any) -> Any:
    model = assessed_model(p["submitter"], 2)
    request = services.tier_override_request(actor=p["submitter"], model=model, tier=3, rationale="r")
    return services.decision_record(actor=actor, request=request, outcome="approve")


def _publish_policy(p: dict[str, Any], actor: Any) -> Any:
    draft = services.policy_draft(actor=p["risk_officer"], tier=3)
    return services.document_publish(actor=actor, document=draft)


def _grant_exception(p: dict[str, Any], actor: Any) -> Any:
    version = make_version(p["creator"], assessed_model(p["submitter"], 2))
    return services.exception_grant(
        actor=actor,
        version=version,
        scope="shadow mode in production",
        compensating_control="human review of every decision",
        reason="regulator deadline",
        expires_at=timezone.now() + timedelta(days=10),
    )


def _assign_validator(p: dict[str, Any], actor: Any) -> Any:
    model = assessed_model(p["submitter"], 4)
    return services.validator_assign(actor=actor, validator=p["unassigned_validator"], model=model)


def _raise_finding(p: dict[str, Any], actor: Any) -> Any:
    return services.finding_raise(
        actor=actor,
        model=assessed_model(p["submitter"], 3),
        title="Drift in the thin-file segment",
        severity="medium",
        owner=p["submitter"],
        due_date=timezone.localdate() + timedelta(days=30),
    )


def _approved(p: dict[str, Any]) -> Any:
    version, request = submitted(p["creator"], p["submitter"], 4)
    services.decision_record(actor=p["risk_officer"], request=request, outcome="approve")
    version.refresh_from_db()
    return version


def _suspend(p: dict[str, Any], actor: Any) -> Any:
    return services.version_suspend(actor=actor, version=_approved(p), reason="kill switch")


def _ask(kind: str) -> Callable[[dict[str, Any], Any], Any]:
    def act(p: dict[str, Any], actor: Any) -> Any:
        version = _approved(p)
        if kind == "reinstatement":
            version = services.version_suspend(actor=p["risk_officer"], version=version, reason="kill switch")
        return services.request_open(actor=actor, kind=kind, model=version.model, version=version, rationale="r")

    return act


def _decide_decommission(p: dict[str, Any], actor: Any) -> Any:
    version = _approved(p)
    request = services.request_open(
        actor=p["submitter"], kind="decommission", model=version.model, version=version, rationale="r"
    )
    return services.decision_record(actor=actor, request=request, outcome="approve")


TEAM = {"creator", "submitter", "teammate"}
MATRIX: dict[str, tuple[Callable[[dict[str, Any], Any], Any], set[str]]] = {
    "submit a version": (_submit, TEAM),
    "withdraw a request": (_withdraw, {"submitter"}),
    "sign T2 independent validation": (_decide_on(2), {"validator"}),
    "sign T1 compliance or risk officer": (_t1_at(2), {"compliance", "risk_officer"}),
    "sign T1 committee": (_t1_at(3), {"committee"}),
    "sign T3 independent review": (_decide_on(3), {"outsider"}),
    "sign T4 acknowledgement": (_decide_on(4), {"risk_officer"}),
    "record a risk assessment": (_assess, {"submitter", "risk_officer"}),
    "ask for a tier override": (_override, {"submitter", "risk_officer"}),
    "decide a tier override": (_decide_override, {"risk_officer"}),
    "publish a policy": (_publish_policy, {"risk_officer"}),
    "grant an exception": (_grant_exception, {"risk_officer"}),
    "assign a validator": (_assign_validator, {"risk_officer"}),
    "suspend a version": (_suspend, {"risk_officer"}),
    "ask for a revalidation": (_ask("revalidation"), TEAM | {"risk_officer"}),
    "ask for a reinstatement": (_ask("reinstatement"), TEAM | {"risk_officer"}),
    "ask for a decommission": (_ask("decommission"), {"submitter", "risk_officer"}),
    "sign a T4 decommission": (_decide_decommission, {"risk_officer"}),
    "raise a finding": (
        _raise_finding,
        {"validator", "unassigned_validator", "risk_officer", "compliance", "committee"},
    ),
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("action", list(MATRIX))
def test_permission_matrix(people, action, persona):
    act, allowed = MATRIX[action]
    if persona in allowed:
        assert act(people, people[persona]) is not None or action == "assign a validator"
        return
    with pytest.raises(PermissionDenied) as refused:
        act(people, people[persona])
    assert refused.value.status == 403
    assert len(refused.value.message) > 20


def test_the_queue_query_and_the_per_request_rule_agree_for_everyone(people):
    """``decidable_requests`` (the queue) is ``can_decide`` written as SQL: for every persona
    and every request, one lists it exactly when the other allows it."""
    p = people
    for tier in (1, 2, 3, 4):
        submitted(p["creator"], p["submitter"], tier)
    _, t1_later = submitted(p["creator"], p["submitter"], 1)
    services.decision_record(actor=p["validator"], request=t1_later, outcome="approve")
    services.tier_override_request(actor=p["submitter"], model=assessed_model(p["submitter"], 2), tier=3, rationale="r")
    requests = list(selectors.requests_for(p["risk_officer"]))
    assert len(requests) == 6
    for persona, user in p.items():
        queue = set(selectors.awaiting(user, ApprovalRequest.objects.all()).values_list("pk", flat=True))
        allowed = {r.pk for r in requests if policies.can_decide(user, r)}
        assert queue == allowed, persona
    assert any(selectors.awaiting(user, ApprovalRequest.objects.all()).exists() for user in p.values())
