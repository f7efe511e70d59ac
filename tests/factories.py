"""Test data. Users come from factory_boy; everything governed is made through services."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from governance import services as governance
from governance.management.commands.demo_seed import ASSESSMENTS
from governance.models import ApprovalRequest
from registry import services
from registry.models import Dataset, DatasetVersion, ModelVersion, RegisteredModel

_counter = itertools.count(1)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery staple")

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        """The user by that name, as it stood before the test: one already there, else one
        written straight to the table, as its groups are below, so that the test's trail has no
        ``user.created`` of it. Creating users, which the trail records (``audit.accounts``), is
        tested apart."""
        user = model_class.objects.filter(username=kwargs["username"]).first()
        if user is None:
            with _unguarded(model_class._meta.db_table, "audit_user_created_audited"):
                [user] = model_class.objects.bulk_create([model_class(*args, **kwargs)])
        return user

    @factory.post_generation
    def groups(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        """The user's roles and teams, as they stood before the test: written straight to the
        membership table, so that a test's trail begins with what the test does. Joining and
        leaving groups, which the trail records (``audit.accounts``), is tested apart."""
        if create and extracted:
            through = type(self).groups.through
            groups = [Group.objects.get_or_create(name=name)[0] for name in extracted]
            with _unguarded(through._meta.db_table, "audit_membership_audited"):
                through.objects.bulk_create([through(user=self, group=g) for g in groups], ignore_conflicts=True)
        self.save()


@contextmanager
def _unguarded(table: str, trigger: str) -> Iterator[None]:
    """Seed rows past a bypass guard (PostgreSQL), with the power of the tables' owner, which
    the tests' database user has and Warden's runtime role has not (``manage.py audit_grants``):
    the guard is switched off for this transaction's writes, and on again before it ends."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        # A table with checks still due at commit cannot be altered: those on its rows (its
        # foreign keys', the keys' that point at it, the guards') are made now, and deferred
        # again after.
        cursor.execute(
            "SELECT DISTINCT conname FROM pg_constraint WHERE condeferrable AND %s::regclass IN (conrelid, confrelid)",
            [table],
        )
        due = ", ".join(connection.ops.quote_name(name) for (name,) in cursor.fetchall())
        cursor.execute(f"SET CONSTRAINTS {due} IMMEDIATE")
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        yield
        cursor.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
        cursor.execute(f"SET CONSTRAINTS {due} DEFERRED")


def digest(seed: str | None = None) -> str:
    return hashlib.sha256((seed or f"artifact-{next(_counter)}").encode()).hexdigest()


def make_model(actor: Any, *, team: str = "credit-risk", name: str | None = None, **kwargs: Any) -> RegisteredModel:
    return services.model_register(
        actor=actor,
        name=name or f"model-{next(_counter)}",
        team=Group.objects.get(name=team),
        **kwargs,
    )


def make_version(actor: Any, model: RegisteredModel, **kwargs: Any) -> ModelVersion:
    kwargs.setdefault("artifact_uri", f"s3://models/{model.name}/{next(_counter)}")
    kwargs.setdefault("artifact_sha256", digest())
    return services.version_create(actor=actor, model=model, **kwargs)


def make_dataset_version(actor: Any, *, team: str = "credit-risk", name: str | None = None) -> DatasetVersion:
    dataset = Dataset.objects.filter(name=name).first() if name else None
    if dataset is None:
        dataset = services.dataset_create(
            actor=actor, name=name or f"dataset-{next(_counter)}", team=Group.objects.get(name=team)
        )
    return services.dataset_version_create(
        actor=actor,
        dataset=dataset,
        uri=f"s3://data/{dataset.name}/{next(_counter)}",
        digest=digest(),
        row_count=1000,
    )


def assessed_model(owner: Any, tier: int, **kwargs: Any) -> RegisteredModel:
    """A model its owner has risk-assessed into ``tier`` (with the demo's answers)."""
    model = make_model(owner, **kwargs)
    answers, flags = ASSESSMENTS[tier]
    governance.assessment_record(actor=owner, model=model, answers=answers, flags=flags)
    model.refresh_from_db()
    assert model.risk_tier == tier
    return model


def submitted(developer: Any, owner: Any, tier: int) -> tuple[ModelVersion, ApprovalRequest]:
    """A version the developer built and the owner submitted, on a new model of ``tier``."""
    version = make_version(developer, assessed_model(owner, tier))
    return version, governance.request_submit(actor=owner, version=version, rationale="ready for release")


def approved(developer: Any, owner: Any, risk_officer: Any, tier: int = 4) -> tuple[ModelVersion, ApprovalRequest]:
    """A version of a new T4 (or ``tier``, if one risk officer suffices there) model, approved."""
    version, request = submitted(developer, owner, tier)
    governance.decision_record(actor=risk_officer, request=request, outcome="approve")
    version.refresh_from_db()
    request.refresh_from_db()
    return version, request


def approve_with_condition(
    person: Any, request: Any, owner: Any, days: int = 30, what: str = "Report PSI monthly"
) -> Any:
    """``person`` signs ``request``, approving it with one condition, owned by ``owner`` and due
    in ``days``; the condition."""
    governance.decision_record(
        actor=person,
        request=request,
        outcome="approve_with_conditions",
        comment="approved with a condition",
        conditions=[governance.ConditionIn(what, owner, timezone.localdate() + timedelta(days=days))],
    )
    return request.conditions.latest("pk")
