"""Governance personas beside the shared ones, and a model assessed into each tier."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from django.apps import apps

from common.roles import Role
from governance import services
from governance.models import ApprovalRequest, Scorecard
from registry.models import ModelVersion, RegisteredModel
from tests.factories import UserFactory, make_model, make_version

# Questionnaire answers that give each tier under the default scorecard.
ZERO = {
    "financial_exposure": "under_1m",
    "decision_impact": "informs",
    "regulatory_use": "none",
    "scale": "under_1k",
    "method": "rules_or_scorecard",
    "data": "internal_structured",
    "interpretability": "transparent",
    "dynamism": "static",
    "dependencies": "none",
}
ANSWERS = {
    1: (ZERO, ["regulatory_capital"]),
    2: (ZERO, ["eu_ai_act_high_risk"]),
    3: (
        {**ZERO, "financial_exposure": "1m_to_10m", "decision_impact": "automated_with_review", "scale": "1k_to_100k"},
        [],
    ),
    4: (ZERO, []),
}


@pytest.fixture(autouse=True)
def _default_rules(db: Any) -> None:
    """Transactional tests end by flushing every table, data migrations' rows included: put
    the default rules back when one did."""
    if not Scorecard.objects.exists():
        import_module("governance.migrations.0002_default_rules").seed(apps, None)


@pytest.fixture
def compliance(teams: Any) -> Any:
    return UserFactory(username="compliance", groups=[Role.COMPLIANCE_OFFICER], is_staff=True)


@pytest.fixture
def risk_officer_2(teams: Any) -> Any:
    return UserFactory(username="risk2", groups=[Role.RISK_OFFICER], is_staff=True)


@pytest.fixture
def committee(teams: Any) -> list[Any]:
    """Eight committee members."""
    return [UserFactory(username=f"committee{i}", groups=[Role.COMMITTEE_MEMBER], is_staff=True) for i in range(8)]


@pytest.fixture
def assigned_validator(validator: Any, risk_officer: Any, teams: Any) -> Any:
    """The validator, assigned to every credit-risk model."""
    services.validator_assign(actor=risk_officer, validator=validator, team=teams["credit-risk"])
    return validator


def assessed_model(owner: Any, tier: int, **kwargs: Any) -> RegisteredModel:
    model = make_model(owner, **kwargs)
    answers, flags = ANSWERS[tier]
    services.assessment_record(actor=owner, model=model, answers=answers, flags=flags)
    model.refresh_from_db()
    assert model.risk_tier == tier
    return model


def submitted(developer: Any, owner: Any, tier: int) -> tuple[ModelVersion, ApprovalRequest]:
    """A version the developer built and the owner submitted, on a model of ``tier``."""
    model = assessed_model(owner, tier)
    version = make_version(developer, model)
    request = services.request_submit(actor=owner, version=version, rationale="ready for release")
    return version, request
