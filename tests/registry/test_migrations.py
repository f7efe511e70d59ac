from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from registry import services
from registry.models import RegisteredModel
from tests.factories import make_model, make_version


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    connection.close()  # statements prepared against the table as it was


@pytest.mark.django_db(transaction=True)
def test_models_registered_before_they_counted_their_versions_go_on_from_their_newest(developer):
    counted = make_model(developer, name="counted")
    make_model(developer, name="empty")
    for _ in range(3):
        make_version(developer, counted)

    _migrate(("registry", "0009_permission_guard"))  # the count's column goes
    _migrate(("registry", "0010_model_last_number"))  # and comes back, counted from the versions

    assert dict(RegisteredModel.objects.values_list("name", "last_number")) == {"counted": 3, "empty": 0}
    assert make_version(developer, RegisteredModel.objects.get(name="counted")).number == 4
    assert services.version_create(actor=developer, model="empty", artifact_uri="s3://m/1").number == 1
