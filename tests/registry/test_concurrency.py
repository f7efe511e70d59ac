from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent
from registry.models import ModelVersion
from tests.factories import digest, make_model

CLIENTS = 8


@pytest.mark.django_db(transaction=True)
def test_eight_clients_creating_versions_at_once_get_1_to_8_with_no_gap_and_no_error(developer):
    """Real threads, each with its own database connection, released together."""
    model = make_model(developer, name="contended")
    barrier = threading.Barrier(CLIENTS)
    errors: list[BaseException] = []

    def create(i: int) -> None:
        from registry import services

        try:
            barrier.wait(timeout=30)
            services.version_create(
                actor=developer, model=model, artifact_uri=f"s3://m/{i}", artifact_sha256=digest(f"c{i}")
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    numbers = sorted(ModelVersion.objects.filter(model=model).values_list("number", flat=True))
    assert numbers == list(range(1, CLIENTS + 1))
    assert AuditEvent.objects.filter(action="version.created", model_name="contended").count() == CLIENTS
