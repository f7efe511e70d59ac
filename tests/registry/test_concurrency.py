from __future__ import annotations

import pytest

from audit.models import AuditEvent
from registry import services
from registry.models import ModelVersion
from tests.concurrency import run_at_once
from tests.factories import digest, make_model

CLIENTS = 8


@pytest.mark.django_db(transaction=True)
def test_eight_clients_creating_versions_at_once_get_1_to_8_with_no_gap_and_no_error(developer):
    model = make_model(developer, name="contended")

    def create(i: int) -> None:
        services.version_create(
            actor=developer, model=model, artifact_uri=f"s3://m/{i}", artifact_sha256=digest(f"c{i}")
        )

    assert run_at_once(CLIENTS, create) == []
    numbers = sorted(ModelVersion.objects.filter(model=model).values_list("number", flat=True))
    assert numbers == list(range(1, CLIENTS + 1))
    assert AuditEvent.objects.filter(action="version.created", model_name="contended").count() == CLIENTS
