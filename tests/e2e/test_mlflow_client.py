"""The engineer's story with the stock ``mlflow`` client against a live Warden: register a model
and three versions, search them, tag one, be refused ``production`` for an unapproved version,
get it approved through Warden's workflow, move the alias, load ``models:/churn@production``,
and be refused a delete."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from audit.models import AuditEvent
from governance import services as governance
from governance.management.commands.demo_seed import ASSESSMENTS
from governance.models import ApprovalRequest
from registry import services
from registry.models import Alias, ModelVersion, RegisteredModel
from tests.concurrency import a_deadlock
from tests.conftest import on_postgres

pytestmark = pytest.mark.django_db(transaction=True)


def artifact(tmp_path: Path, n: int) -> tuple[str, str]:
    """A model directory for version ``n``; returns its URI and the SHA-256 of its one file."""
    folder = tmp_path / f"churn-{n}"
    folder.mkdir()
    content = f"weights of churn v{n}".encode()
    (folder / "model.bin").write_bytes(content)
    return folder.as_uri(), hashlib.sha256(content).hexdigest()


@pytest.fixture
def client(live_server: Any, owner: Any, monkeypatch: Any) -> MlflowClient:
    _, secret = services.token_create(actor=owner, name="laptop")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", secret)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(live_server.url)
    mlflow.set_registry_uri(live_server.url)
    yield MlflowClient()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_the_mlflow_client_meets_warden_governance(client, owner, risk_officer, tmp_path):
    sources = [artifact(tmp_path, n) for n in (1, 2, 3)]
    registered = mlflow.register_model(sources[0][0], "churn", tags={"warden.artifact_sha256": sources[0][1]})
    assert (registered.name, registered.version) == ("churn", "1")
    for uri, sha in sources[1:]:
        client.create_model_version("churn", uri, tags={"warden.artifact_sha256": sha}, description="retrained")

    found = client.search_model_versions("name='churn'", order_by=["version_number ASC"])
    assert [v.version for v in found] == ["1", "2", "3"]
    assert sorted(v.version for v in client.search_model_versions("name = 'churn' AND version_number > 1")) == [
        "2",
        "3",
    ]
    assert [m.name for m in client.search_registered_models(filter_string="name LIKE 'chu%'")] == ["churn"]
    client.set_model_version_tag("churn", "1", "validated_by", "qa-team")
    assert client.get_model_version("churn", "1").tags["validated_by"] == "qa-team"
    assert ModelVersion.objects.get(model__name="churn", number=1).state == "draft"

    with pytest.raises(MlflowException) as refused:
        client.set_registered_model_alias("churn", "production", "1")
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert "Version 1 of churn may not enter production" in refused.value.message
    assert not Alias.objects.exists()

    # Warden's workflow: the owner assesses the model and submits version 1; a risk officer approves.
    model = RegisteredModel.objects.get(name="churn")
    answers, flags = ASSESSMENTS[4]
    governance.assessment_record(actor=owner, model=model, answers=answers, flags=flags)
    version = ModelVersion.objects.get(model=model, number=1)
    request = governance.request_submit(actor=owner, version=version, rationale="ready")
    governance.decision_record(actor=risk_officer, request=request, outcome="approve")
    assert ApprovalRequest.objects.get(pk=request.pk).state == "approved"

    client.set_registered_model_alias("churn", "production", "1")
    assert client.get_model_version_by_alias("churn", "production").version == "1"
    loaded = Path(mlflow.artifacts.download_artifacts("models:/churn@production", dst_path=str(tmp_path / "out")))
    assert (loaded / "model.bin").read_bytes() == b"weights of churn v1"

    with pytest.raises(MlflowException) as refused:
        client.delete_model_version("churn", "1")
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert "decommission" in refused.value.message
    with pytest.raises(MlflowException) as refused:
        client.delete_registered_model("churn")
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert ModelVersion.objects.filter(model__name="churn").count() == 3

    trail = list(AuditEvent.objects.filter(model_name="churn").order_by("seq").values_list("action", "actor_name"))
    assert ("alias.set", "owner") in trail
    assert trail[:2] == [("model.registered", "owner"), ("version.created", "owner")]
    assert ("version.updated", "owner") in trail


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's deadlock detection")
def test_the_client_sends_a_registration_rolled_back_for_a_deadlock_again(client, owner, risk_officer, monkeypatch):
    deadlock = a_deadlock(owner, risk_officer)
    register, calls = services.model_register, []

    def rolled_back_once(**kwargs: Any) -> Any:
        calls.append(kwargs["name"])
        if len(calls) == 1:
            raise deadlock
        return register(**kwargs)

    monkeypatch.setattr(services, "model_register", rolled_back_once)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    assert client.create_registered_model("churn").name == "churn"
    assert calls == ["churn", "churn"]
    assert RegisteredModel.objects.filter(name="churn").count() == 1
