"""Personas: real users in real groups, as PRODUCT.md describes them.

Two teams: credit-risk (developer, owner) and pricing (outsider). Governance roles belong
to no team."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.db.backends.base.operations import BaseDatabaseOperations
from rest_framework.test import APIClient

from audit import signing, triggers
from common.roles import Role
from governance import services as governance
from governance.models import Scorecard
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def _local_receivers(settings: Any) -> None:
    """The tests' webhook receivers listen on 127.0.0.1, which webhooks reach only when allowed."""
    settings.NOTIFY_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    """Personas get real passwords; hashing them with production's cost would make each
    persona take a second of the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _flush_past_the_ledger_protection() -> Any:
    """Transactional tests end with a flush (TRUNCATE / DELETE of every table), which the
    ledger's triggers refuse. The suite's database owner lifts them for the flush only."""
    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: Any) -> None:
        with triggers.suspended(self.connection):
            original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]
    yield
    BaseDatabaseOperations.execute_sql_flush = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _chain_now_unless_the_test_commits(request: Any, settings: Any) -> None:
    """On PostgreSQL audit events are chained when their transaction commits. A test that runs
    inside a transaction rolled back at its end never commits, so its events are chained at
    once (the same database function, called directly); transactional tests commit, and chain
    at commit as in production."""
    marker = request.node.get_closest_marker("django_db")
    settings.AUDIT_CHAIN_AT_COMMIT = bool(marker and marker.kwargs.get("transaction"))


@pytest.fixture(autouse=True)
def _default_rules(request: Any) -> None:
    """Transactional tests end by flushing every table, data migrations' rows included: a
    transactional test gets the default rules back when one before it flushed them."""
    marker = request.node.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction"):
        request.getfixturevalue("transactional_db")
        if not Scorecard.objects.exists():
            for migration in ("0002_default_rules", "0007_environments"):
                import_module(f"governance.migrations.{migration}").seed(apps, None)


@pytest.fixture
def signing_key(settings: Any, tmp_path: Any) -> str:
    """A fresh Ed25519 key pair for checkpoints and exports; returns the public half."""
    settings.AUDIT_SIGNING_KEY, public = signing.generate()
    settings.AUDIT_VERIFY_KEYS = [public]
    settings.AUDIT_WITNESS_DIR = str(tmp_path / "witness")
    return public


@pytest.fixture
def teams(db: Any) -> dict[str, Group]:
    return {name: Group.objects.get_or_create(name=name)[0] for name in ("credit-risk", "pricing")}


@pytest.fixture
def developer(teams: Any) -> Any:
    return UserFactory(username="dev", groups=[Role.MODEL_DEVELOPER, "credit-risk"])


@pytest.fixture
def owner(teams: Any) -> Any:
    return UserFactory(username="owner", groups=[Role.MODEL_OWNER, "credit-risk"])


@pytest.fixture
def outsider(teams: Any) -> Any:
    """A model developer on another team."""
    return UserFactory(username="outsider", groups=[Role.MODEL_DEVELOPER, "pricing"])


@pytest.fixture
def validator(teams: Any) -> Any:
    return UserFactory(username="validator", groups=[Role.VALIDATOR], is_staff=True)


@pytest.fixture
def risk_officer(teams: Any) -> Any:
    return UserFactory(username="risk", groups=[Role.RISK_OFFICER], is_staff=True)


@pytest.fixture
def committee_member(teams: Any) -> Any:
    return UserFactory(username="committee", groups=[Role.COMMITTEE_MEMBER], is_staff=True)


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
    governance.validator_assign(actor=risk_officer, validator=validator, team=teams["credit-risk"])
    return validator


@pytest.fixture
def auditor(teams: Any) -> Any:
    return UserFactory(username="auditor", groups=[Role.AUDITOR], is_staff=True)


@pytest.fixture
def api() -> Any:
    """``api(user)`` → an API client signed in as ``user``; ``api()`` → anonymous."""

    def client(user: Any = None) -> APIClient:
        c = APIClient()
        if user is not None:
            c.force_authenticate(user)
        return c

    return client


def on_postgres() -> bool:
    return connection.vendor == "postgresql"
