"""The MLflow registry endpoints over HTTP with Django's client: MLflow's wire conventions,
its error codes, and Warden's rules underneath."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEvent
from registry import services
from registry.models import ModelVersion
from tests.factories import digest

API = "/api/2.0/mlflow"


class Mlflow:
    """Speaks as MLflow's REST client does: GET in the query string, JSON bodies otherwise."""

    def __init__(self, user: Any = None, *, basic: tuple[str, str] | None = None, token: str | None = None):
        self.client = Client()
        if user is not None and token is None and basic is None:
            _, token = services.token_create(actor=user, name="mlflow")
        if token:
            self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        elif basic:
            raw = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            self.headers = {"HTTP_AUTHORIZATION": f"Basic {raw}"}
        else:
            self.headers = {}

    def call(self, method: str, path: str, params: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        if method == "GET":
            response = self.client.get(f"{API}/{path}", params or {}, **self.headers)
        else:
            response = self.client.generic(
                method, f"{API}/{path}", json.dumps(params or {}), content_type="application/json", **self.headers
            )
        return response.status_code, response.json()


@pytest.fixture
def mlflow(developer: Any) -> Mlflow:
    return Mlflow(developer)


def test_a_model_and_versions_round_trip_in_mlflow_shape(mlflow, developer):
    status, body = mlflow.call(
        "POST",
        "registered-models/create",
        {"name": "churn", "description": "who leaves", "tags": [{"key": "area", "value": "retail"}]},
    )
    assert status == 200, body
    model = body["registered_model"]
    assert model["name"] == "churn" and model["user_id"] == "dev" and model["description"] == "who leaves"
    assert {"key": "area", "value": "retail"} in model["tags"]
    assert {"key": "warden.team", "value": "credit-risk"} in model["tags"]
    assert isinstance(model["creation_timestamp"], int) and model["creation_timestamp"] > 1_600_000_000_000

    sha = digest("churn-1")
    status, body = mlflow.call(
        "POST",
        "model-versions/create",
        {
            "name": "churn",
            "source": "s3://models/churn/1",
            "run_id": "r1",
            "tags": [{"key": "warden.artifact_sha256", "value": sha}],
        },
    )
    assert status == 200, body
    version = body["model_version"]
    assert (version["name"], version["version"], version["source"], version["run_id"]) == (
        "churn",
        "1",
        "s3://models/churn/1",
        "r1",
    )
    assert version["current_stage"] == "None" and version["status"] == "READY"
    assert version["status_message"] == "Warden state: draft"
    stored = ModelVersion.objects.get(model__name="churn", number=1)
    assert (stored.state, stored.artifact_sha256, stored.artifact_uri) == ("draft", sha, "s3://models/churn/1")
    assert "warden.artifact_sha256" not in stored.tags

    status, body = mlflow.call("GET", "model-versions/get", {"name": "churn", "version": "1"})
    assert status == 200 and body["model_version"]["version"] == "1"
    status, body = mlflow.call("GET", "model-versions/get-download-uri", {"name": "churn", "version": "1"})
    assert body == {"artifact_uri": "s3://models/churn/1"}
    assert (
        AuditEvent.objects.filter(model_name="churn", action__in=["model.registered", "version.created"]).count() == 2
    )


def test_errors_use_mlflow_codes_and_statuses(mlflow, outsider):
    mlflow.call("POST", "registered-models/create", {"name": "churn"})
    assert mlflow.call("POST", "registered-models/create", {"name": "churn"}) == (
        400,
        {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "name: a model named 'churn' already exists"},
    )
    status, body = mlflow.call("GET", "registered-models/get", {"name": "nope"})
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, body = mlflow.call("GET", "model-versions/get", {"name": "churn", "version": "x"})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    status, body = mlflow.call("POST", "registered-models/create", {"name": "has spaces"})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE") and body["message"].startswith("name:")
    status, body = Mlflow(outsider).call("POST", "model-versions/create", {"name": "churn", "source": "s3://x"})
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")
    assert "Only the owning team (credit-risk)" in body["message"]
    status, body = Mlflow().call("GET", "registered-models/get", {"name": "churn"})
    assert (status, body["error_code"]) == (401, "UNAUTHENTICATED")
    status, body = mlflow.call("GET", "runs/get", {"run_id": "1"})
    assert (status, body["error_code"]) == (404, "ENDPOINT_NOT_FOUND")


def test_basic_auth_with_a_token_or_a_password(developer):
    mlflow = Mlflow(developer)
    mlflow.call("POST", "registered-models/create", {"name": "churn"})
    _, secret = services.token_create(actor=developer, name="basic")
    assert Mlflow(basic=("dev", secret)).call("GET", "registered-models/get", {"name": "churn"})[0] == 200
    assert Mlflow(basic=("someone-else", secret)).call("GET", "registered-models/get", {"name": "churn"})[0] == 401
    developer.set_password("s3cret-pass")
    developer.save()
    assert Mlflow(basic=("dev", "s3cret-pass")).call("GET", "registered-models/get", {"name": "churn"})[0] == 200
    assert Mlflow(basic=("dev", "wrong")).call("GET", "registered-models/get", {"name": "churn"})[0] == 401
