from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from audit.models import AuditEvent
from common.errors import Duplicate
from registry import services
from registry.models import ModelVersion, RegisteredModel
from tests.concurrency import run_at_once
from tests.factories import digest, make_model

CLIENTS = 8


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("by_name", [False, True], ids=["model", "name"])  # services; the APIs
def test_eight_clients_creating_versions_at_once_get_1_to_8_with_no_gap_and_no_error(developer, by_name):
    model = make_model(developer, name="contended")

    def create(i: int) -> None:
        services.version_create(
            actor=developer,
            model="contended" if by_name else model,
            artifact_uri=f"s3://m/{i}",
            artifact_sha256=digest(f"c{i}"),
        )

    assert run_at_once(CLIENTS, create) == []
    numbers = sorted(ModelVersion.objects.filter(model=model).values_list("number", flat=True))
    assert numbers == list(range(1, CLIENTS + 1))
    assert AuditEvent.objects.filter(action="version.created", model_name="contended").count() == CLIENTS


@pytest.mark.django_db(transaction=True)
def test_eight_clients_registering_one_name_at_once_give_one_model_and_seven_conflicts(developer):
    team = Group.objects.get(name="credit-risk")

    def register(i: int) -> None:
        services.model_register(actor=developer, name="taken", team=team, description=f"client {i}")

    errors = run_at_once(CLIENTS, register)
    assert [type(e) for e in errors] == [Duplicate] * (CLIENTS - 1)
    assert {str(e) for e in errors} == {"name: a model named 'taken' already exists"}
    assert RegisteredModel.objects.filter(name="taken").count() == 1
    assert AuditEvent.objects.filter(action="model.registered", model_name="taken").count() == 1
