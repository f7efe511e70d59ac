"""The MLflow registry endpoints over HTTP with Django's client: MLflow's wire conventions,
its error codes, and Warden's rules underneath."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from common.errors import TRY_AGAIN, NotFound
from governance import services as governance
from registry import services
from registry.mlflow import views
from registry.models import ModelVersion, RegisteredModel
from tests.concurrency import a_deadlock
from tests.conftest import on_postgres
from tests.factories import assessed_model, digest, make_model

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
        {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Registered Model (name=churn) already exists."},
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
    assert Mlflow(basic=("d\x00ev", "wrong")).call("GET", "registered-models/get", {"name": "churn"})[0] == 401


@pytest.fixture
def churn(mlflow) -> None:
    mlflow.call("POST", "registered-models/create", {"name": "churn", "tags": [{"key": "area", "value": "retail"}]})
    for n in (1, 2, 3):
        tags = [{"key": "framework", "value": "xgboost" if n < 3 else "torch"}]
        mlflow.call(
            "POST",
            "model-versions/create",
            {"name": "churn", "source": f"s3://m/churn/{n}", "run_id": f"run-{n}", "tags": tags},
        )
    mlflow.call("POST", "registered-models/create", {"name": "fraud-score"})
    mlflow.call("POST", "model-versions/create", {"name": "fraud-score", "source": "s3://m/fraud/1"})


def versions(mlflow, **params) -> list[tuple[str, str]]:
    status, body = mlflow.call("GET", "model-versions/search", params)
    assert status == 200, body
    return [(v["name"], v["version"]) for v in body.get("model_versions", [])]


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("name='churn'", [("churn", "1"), ("churn", "2"), ("churn", "3")]),
        ('name = "churn" AND version_number >= 2', [("churn", "2"), ("churn", "3")]),
        ("name != 'churn'", [("fraud-score", "1")]),
        ("name LIKE 'fraud%'", [("fraud-score", "1")]),
        ("name LIKE 'CHURN'", []),
        ("name ILIKE 'CH_RN'", [("churn", "1"), ("churn", "2"), ("churn", "3")]),
        ("run_id IN ('run-1', 'run-3')", [("churn", "1"), ("churn", "3")]),
        ("tags.framework = 'torch'", [("churn", "3")]),
        ("tag.`framework` != 'xgboost'", [("churn", "3")]),  # a version without the tag matches no clause on it
        (
            "tags.`mlflow.prompt.is_prompt` != 'true'",
            [("churn", "1"), ("churn", "2"), ("churn", "3"), ("fraud-score", "1")],
        ),
        ("tags.\"framework\" = 'torch'", [("churn", "3")]),
        ("tags.'framework' LIKE 'xg%'", [("churn", "1"), ("churn", "2")]),
        ("name NOT IN ('churn')", [("fraud-score", "1")]),
        ("run_id not in ('run-1', 'run-3') AND name = 'churn'", [("churn", "2")]),
        ("attribute.name = 'fraud-score'", [("fraud-score", "1")]),
        ("version_number IN (1, 3) AND name = 'churn'", [("churn", "1"), ("churn", "3")]),
        ("source_path LIKE 's3://m/churn/%' and version_number < 2", [("churn", "1")]),
    ],
)
def test_search_takes_mlflows_filter_grammar(mlflow, churn, filter_, expected):
    assert sorted(versions(mlflow, filter=filter_)) == expected


def test_a_tag_key_made_of_digits_is_a_key(mlflow, churn):
    """A key such as ``2024`` names a tag, in a search by MLflow's grammar and by the native API's
    ``tag`` filter alike (a JSON key lookup would read it as an array index)."""
    mlflow.call("POST", "model-versions/set-tag", {"name": "churn", "version": "2", "key": "2024", "value": "audited"})
    mlflow.call("POST", "registered-models/set-tag", {"name": "fraud-score", "key": "7", "value": "x"})
    assert versions(mlflow, filter="tags.`2024` = 'audited'") == [("churn", "2")]
    assert versions(mlflow, filter="tags.'2024' != 'pending'") == [("churn", "2")]
    _, body = mlflow.call("GET", "registered-models/search", {"filter": "tags.`7` = 'x'"})
    assert [m["name"] for m in body["registered_models"]] == ["fraud-score"]
    response = mlflow.client.get("/api/v1/models/churn/versions/", {"tag": "2024=audited"}, **mlflow.headers)
    assert [v["number"] for v in response.json()["results"]] == [2]
    models = mlflow.client.get("/api/v1/models/", {"tag": "7"}, **mlflow.headers).json()["results"]
    assert [m["name"] for m in models] == ["fraud-score"]


@pytest.mark.parametrize(
    ("filter_", "message"),
    [
        ("name = churn", "filter: name compares with a quoted string, found 'churn'"),
        ("owner = 'dev'", "filter: unknown key 'owner'; use name, run_id, source_path, version_number or tags.<key>"),
        ("name > 'a'", "filter: name takes !=, =, ILIKE, IN, LIKE, NOT IN, not >"),
        ("name NOT 'a'", "filter: expected a comparator after name, found 'NOT'"),
        ("name NOT IN 'a'", "filter: NOT IN takes a parenthesised list, after name"),
        ("name = 'a' OR name = 'b'", "filter: clauses are joined by AND, found 'OR'"),
        ("version_number = 'x'", "filter: version_number compares with a whole number of 1 to 9 digits, found \"'x'\""),
        (
            "version_number IN (99999999999999999999)",
            "filter: version_number compares with a whole number of 1 to 9 digits, found '99999999999999999999'",
        ),
        ("name = 'a\x00b'", "filter: a value holds a NUL character"),
        ("name IN 'a'", "filter: IN takes a parenthesised list, after name"),
        ("name =", "filter: expected a value at the end"),
        (
            "tags.`warden.state` = 'draft'",
            "filter: tags.warden.state is one of Warden's facts, shown as a tag but not stored as one: it cannot be "
            "searched here; the native API's lists filter on team, tier, state and status",
        ),
    ],
)
def test_a_bad_filter_is_refused_saying_where(mlflow, churn, filter_, message):
    assert mlflow.call("GET", "model-versions/search", {"filter": filter_}) == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": message},
    )


def test_a_search_by_name_alone_answers_as_the_general_search_does(mlflow, churn, outsider):
    """``name='…'`` in the default order is read by a prepared statement; ``name IN ('…')`` by
    the general search. Version 1 was updated last, so it comes first in the default order."""
    mlflow.call("PATCH", "model-versions/update", {"name": "churn", "version": "1", "description": "again"})
    mlflow.call("POST", "registered-models/alias", {"name": "churn", "alias": "candidate", "version": "2"})

    def pages(filter_: str) -> list[dict[str, Any]]:
        out, token = [], ""
        while True:
            query = {"filter": filter_, "max_results": 2, **({"page_token": token} if token else {})}
            status, body = mlflow.call("GET", "model-versions/search", query)
            assert status == 200, body
            out.append(body)
            if "next_page_token" not in body:
                return out
            token = body["next_page_token"]

    fast, general = pages("name='churn'"), pages("name IN ('churn')")
    assert [[v["version"] for v in page["model_versions"]] for page in fast] == [["1", "3"], ["2"]]
    assert fast == general and fast[1]["model_versions"][0]["aliases"] == ["candidate"]
    assert versions(Mlflow(outsider), filter="name='churn'") == [("churn", "1"), ("churn", "3"), ("churn", "2")]
    assert versions(mlflow, filter="name='nobody'") == []


def test_search_orders_and_pages_with_an_opaque_token(mlflow, churn):
    status, first = mlflow.call(
        "GET", "model-versions/search", {"filter": "name='churn'", "order_by": "version_number DESC", "max_results": 2}
    )
    assert status == 200 and [v["version"] for v in first["model_versions"]] == ["3", "2"]
    _, rest = mlflow.call(
        "GET",
        "model-versions/search",
        {
            "filter": "name='churn'",
            "order_by": "version_number DESC",
            "max_results": 2,
            "page_token": first["next_page_token"],
        },
    )
    assert [v["version"] for v in rest["model_versions"]] == ["1"] and "next_page_token" not in rest
    _, body = mlflow.call("GET", "registered-models/search", {"order_by": "name DESC"})
    assert [m["name"] for m in body["registered_models"]] == ["fraud-score", "churn"]
    assert [v["version"] for v in body["registered_models"][1]["latest_versions"]] == ["3"]
    assert mlflow.call("GET", "model-versions/search", {"page_token": "garbage"})[1]["message"] == (
        "page_token: not a page token this server returned"
    )
    assert mlflow.call("GET", "registered-models/search", {"max_results": 1001})[0] == 400
    # Ties come out as from MLflow: by name, then the newest version first, after what was asked.
    ModelVersion.objects.filter(model__name="churn").update(created_at=timezone.now())  # all at one moment
    _, body = mlflow.call(
        "GET", "model-versions/search", {"filter": "name='churn'", "order_by": ["creation_timestamp ASC"]}
    )
    assert [v["version"] for v in body["model_versions"]] == ["3", "2", "1"]
    status, body = mlflow.call("GET", "model-versions/search", {"order_by": ["name ASC", "name DESC"]})
    assert (status, body["message"]) == (400, "order_by: name: its field is named twice")
    status, body = mlflow.call(
        "GET", "model-versions/search", {"order_by": ["timestamp ASC", "creation_timestamp DESC"]}
    )
    assert (status, body["message"]) == (400, "order_by: creation_timestamp: its field is named twice")


def test_search_costs_the_same_queries_whatever_the_page(mlflow, churn, django_assert_max_num_queries):
    for n in range(4, 30):
        services.version_create(
            actor=ModelVersion.objects.first().created_by,
            model=RegisteredModel.objects.get(name="churn"),
            artifact_uri=f"s3://m/{n}",
        )
    with django_assert_max_num_queries(5):  # token, groups, grants, versions, aliases
        assert len(versions(mlflow, filter="name='churn'", max_results=100)) == 29
    with django_assert_max_num_queries(6):  # token, groups, grants, models, latest versions, aliases
        assert mlflow.call("GET", "registered-models/search", {"max_results": 100})[0] == 200


def test_tags_update_and_aliases(mlflow, churn):
    assert mlflow.call(
        "POST", "model-versions/set-tag", {"name": "churn", "version": "2", "key": "qa", "value": "passed"}
    ) == (200, {})
    assert mlflow.call("POST", "registered-models/set-tag", {"name": "churn", "key": "owner-note", "value": "x"}) == (
        200,
        {},
    )
    status, body = mlflow.call(
        "POST", "registered-models/set-tag", {"name": "churn", "key": "warden.team", "value": "pricing"}
    )
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE") and "read-only" in body["message"]
    assert mlflow.call("DELETE", "model-versions/delete-tag", {"name": "churn", "version": "2", "key": "qa"}) == (
        200,
        {},
    )
    # Deleting what is not there is done, as in MLflow: nothing changes, nothing is audited.
    assert mlflow.call("DELETE", "model-versions/delete-tag", {"name": "churn", "version": "2", "key": "qa"}) == (
        200,
        {},
    )
    assert mlflow.call("DELETE", "registered-models/delete-tag", {"name": "churn", "key": "never"}) == (200, {})
    status, body = mlflow.call(
        "PATCH", "model-versions/update", {"name": "churn", "version": "2", "description": "better"}
    )
    assert body["model_version"]["description"] == "better"
    status, body = mlflow.call("PATCH", "registered-models/update", {"name": "churn", "description": "who leaves"})
    assert body["registered_model"]["description"] == "who leaves"

    assert mlflow.call("POST", "registered-models/alias", {"name": "churn", "alias": "candidate", "version": "2"}) == (
        200,
        {},
    )
    status, body = mlflow.call("GET", "registered-models/alias", {"name": "churn", "alias": "candidate"})
    assert body["model_version"]["version"] == "2" and body["model_version"]["aliases"] == ["candidate"]
    assert body == mlflow.call("GET", "model-versions/get", {"name": "churn", "version": "2"})[1]
    status, body = mlflow.call("GET", "registered-models/alias", {"name": "churn", "alias": "nobody"})
    assert (status, body["message"]) == (404, "Registered model alias nobody not found.")
    status, body = mlflow.call("GET", "registered-models/alias", {"name": "nothing", "alias": "candidate"})
    assert (status, body["message"]) == (404, "Registered Model with name=nothing not found")
    status, body = mlflow.call("GET", "registered-models/get", {"name": "churn"})
    assert body["registered_model"]["aliases"] == [{"alias": "candidate", "version": "2"}]
    assert mlflow.call("DELETE", "registered-models/alias", {"name": "churn", "alias": "candidate"}) == (200, {})
    status, body = mlflow.call("GET", "registered-models/alias", {"name": "churn", "alias": "candidate"})
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert mlflow.call("DELETE", "registered-models/alias", {"name": "churn", "alias": "candidate"}) == (200, {})
    assert mlflow.call("POST", "registered-models/alias", {"name": "churn", "alias": "candidate", "version": "9"}) == (
        404,
        {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Model Version (name=churn, version=9) not found"},
    )
    actions = list(AuditEvent.objects.filter(model_name="churn").values_list("action", flat=True))
    assert (
        actions.count("alias.set") == 1
        and actions.count("alias.deleted") == 1
        and actions.count("version.updated") == 3
    )


def test_governance_holds(mlflow, churn, owner, risk_officer, developer):
    status, body = mlflow.call(
        "POST", "registered-models/alias", {"name": "churn", "alias": "production", "version": "1"}
    )
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")
    assert body["message"].startswith("Version 1 of churn may not enter production:")
    status, body = mlflow.call("DELETE", "model-versions/delete", {"name": "churn", "version": "1"})
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")
    assert "POST /api/v1/models/churn/versions/1/decommission/" in body["message"]
    status, body = mlflow.call("DELETE", "registered-models/delete", {"name": "churn"})
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED") and "decommission" in body["message"]
    status, body = mlflow.call(
        "POST", "model-versions/transition-stage", {"name": "churn", "version": "1", "stage": "Production"}
    )
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE") and "/submit/" in body["message"]
    assert ModelVersion.objects.filter(model__name="churn").count() == 3
    assert RegisteredModel.objects.filter(name="churn").exists()
    status, body = mlflow.call(
        "POST", "registered-models/get-latest-versions", {"name": "churn", "stages": ["Production"]}
    )
    assert body == {"model_versions": []}
    status, body = mlflow.call("POST", "registered-models/get-latest-versions", {"name": "churn"})
    assert [(v["version"], v["current_stage"]) for v in body["model_versions"]] == [("3", "None")]


def test_a_restricted_model_does_not_exist_for_outsiders(mlflow, churn, outsider, developer):
    services.model_update(
        actor=developer, model=RegisteredModel.objects.get(name="churn"), changes={"restricted": True}
    )
    other = Mlflow(outsider)
    status, body = other.call("GET", "registered-models/get", {"name": "churn"})
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert other.call("GET", "model-versions/get", {"name": "churn", "version": "1"})[0] == 404
    written = ModelVersion.objects.count()
    for name in ("churn", "no-such-model"):  # hidden and missing answer alike, and nothing is written
        status, body = other.call("POST", "model-versions/create", {"name": name, "source": "s3://x"})
        assert (status, body) == (
            404,
            {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Registered Model with name={name} not found"},
        )
    assert ModelVersion.objects.count() == written
    mlflow.call("POST", "registered-models/alias", {"name": "churn", "alias": "candidate", "version": "1"})
    assert other.call("GET", "registered-models/alias", {"name": "churn", "alias": "candidate"})[0] == 404
    assert [m["name"] for m in other.call("GET", "registered-models/search", {})[1]["registered_models"]] == [
        "fraud-score"
    ]
    assert all(name != "churn" for name, _ in versions(other))
    assert versions(other, filter="name='churn'") == []


def test_a_model_is_renamed_while_its_versions_are_drafts_and_its_history_follows(mlflow, churn, api, developer):
    status, body = mlflow.call("POST", "registered-models/rename", {"name": "churn", "new_name": "attrition"})
    assert (status, body["registered_model"]["name"]) == (200, "attrition")
    assert mlflow.call("GET", "model-versions/get", {"name": "attrition", "version": "3"})[0] == 200
    history = api(developer).get("/api/v1/models/attrition/history/").json()["results"]
    actions = [event["action"] for event in history]
    assert actions[0] == "model.renamed" and actions.count("version.created") == 3 and "model.registered" in actions
    # A new model may take the freed name; its history starts afresh.
    mlflow.call("POST", "registered-models/create", {"name": "churn"})
    assert [e["action"] for e in api(developer).get("/api/v1/models/churn/history/").json()["results"]] == [
        "model.registered"
    ]


def test_renaming_stops_once_a_version_is_submitted(mlflow, developer, owner, risk_officer):
    model = assessed_model(owner, 4, name="scorecard")
    version = services.version_create(actor=developer, model=model, artifact_uri="s3://x", artifact_sha256=digest("s"))
    governance.request_submit(actor=owner, version=version, rationale="ready")
    status, body = Mlflow(owner).call(
        "POST", "registered-models/rename", {"name": "scorecard", "new_name": "scorecard-2"}
    )
    assert (status, body["error_code"]) == (400, "INVALID_STATE")
    assert body["message"].startswith("Model scorecard cannot be renamed: version 1 is submitted")
    status, body = mlflow.call("POST", "registered-models/rename", {"name": "scorecard", "new_name": "x"})
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")


def test_the_ajax_prefix_and_wrong_methods(mlflow, churn):
    response = mlflow.client.get("/ajax-api/2.0/mlflow/registered-models/get", {"name": "churn"}, **mlflow.headers)
    assert response.status_code == 200
    status, body = mlflow.call("GET", "registered-models/create")
    assert (status, body["error_code"]) == (405, "ENDPOINT_NOT_FOUND")
    response = mlflow.client.post(
        f"{API}/registered-models/create", "not json", content_type="application/json", **mlflow.headers
    )
    assert (response.status_code, response.json()["error_code"]) == (400, "MALFORMED_REQUEST")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_write_in_a_form_a_browser_would_post_from_another_site_is_refused(developer, content_type):
    """A browser remembers basic credentials and sends them with a form another site posts: the
    form's body types cannot carry a write, nor can its query string."""
    developer.set_password("s3cret-pass")
    developer.save()
    browser = Mlflow(basic=("dev", "s3cret-pass"))
    for body, query in (('{"name": "planted"}', ""), ("", "?name=planted")):
        response = browser.client.post(
            f"{API}/registered-models/create{query}", body, content_type=content_type, **browser.headers
        )
        assert (response.status_code, response.json()["error_code"]) == (400, "MALFORMED_REQUEST")
        assert "Content-Type: application/json" in response.json()["message"]
    assert not RegisteredModel.objects.filter(name="planted").exists()
    assert browser.call("POST", "registered-models/create", {"name": "planted"})[0] == 200


def test_a_name_or_key_with_a_line_break_at_its_end_is_refused(mlflow, churn):
    """``production\n`` would look like ``production`` everywhere it is shown, without the gate."""
    status, body = mlflow.call(
        "POST", "registered-models/alias", {"name": "churn", "alias": "production\n", "version": "1"}
    )
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    status, body = mlflow.call(
        "POST", "model-versions/set-tag", {"name": "churn", "version": "1", "key": "k\n", "value": "v"}
    )
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert (
        mlflow.call("GET", "registered-models/get", {"name": "churn"})[1]["registered_model"].get("aliases", []) == []
    )


def test_warden_tags_on_create_are_its_facts_taken_back_or_refused(mlflow, churn):
    copied = [{"key": "warden.state", "value": "approved"}, {"key": "framework", "value": "xgboost"}]
    status, body = mlflow.call("POST", "model-versions/create", {"name": "churn", "source": "s3://m/4", "tags": copied})
    assert status == 200
    assert {t["key"]: t["value"] for t in body["model_version"]["tags"]}["warden.state"] == "draft"
    for path, params in (
        (
            "model-versions/create",
            {"name": "churn", "source": "s3://m/5", "tags": [{"key": "warden.sate", "value": "x"}]},
        ),
        ("registered-models/create", {"name": "other", "tags": [{"key": "warden.artifact_sha256", "value": "0" * 64}]}),
    ):
        status, body = mlflow.call("POST", path, params)
        assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), path
        assert "keys starting with 'warden.' are Warden's" in body["message"]
    assert mlflow.call("GET", "registered-models/get", {"name": "other"})[0] == 404


def test_latest_versions_are_the_newest_of_each_stage_with_their_aliases(mlflow, churn, developer):
    # Version 1 of churn retired (Archived) and version 2 deployed (Production); 3 is a draft.
    for number, state in ((1, "deprecated"), (2, "deployed")):
        with transaction.atomic():  # a state change with its audit event, as the bypass guard requires
            version = ModelVersion.objects.get(model__name="churn", number=number)
            ModelVersion.objects.filter(pk=version.pk).update(state=state)
            audit_record(actor=developer, action="version.state_changed", obj=version, after={"state": state})
    for alias, number in (("champion-b", "2"), ("a-candidate", "3")):
        assert (
            mlflow.call("POST", "registered-models/alias", {"name": "churn", "alias": alias, "version": number})[0]
            == 200
        )

    _, body = mlflow.call("POST", "registered-models/get-latest-versions", {"name": "churn"})
    shown = [(v["version"], v["current_stage"], v["aliases"], v["user_id"]) for v in body["model_versions"]]
    assert shown == [
        ("1", "Archived", [], developer.username),
        ("2", "Production", ["champion-b"], developer.username),
        ("3", "None", ["a-candidate"], developer.username),
    ]
    _, body = mlflow.call("POST", "registered-models/get-latest-versions", {"name": "churn", "stages": ["Production"]})
    assert [v["version"] for v in body["model_versions"]] == ["2"]
    _, body = mlflow.call("GET", "registered-models/search", {"filter": "name = 'churn'"})
    (model,) = body["registered_models"]
    assert [(v["version"], v["current_stage"]) for v in model["latest_versions"]] == [
        ("1", "Archived"),
        ("2", "Production"),
        ("3", "None"),
    ]
    assert model["aliases"] == [{"alias": "a-candidate", "version": "3"}, {"alias": "champion-b", "version": "2"}]
    assert model["latest_versions"][2]["tags"][0] == {"key": "framework", "value": "torch"}


def test_a_taken_name_is_answered_first_so_register_model_goes_on(mlflow, churn, developer, teams):
    """``mlflow.register_model`` creates the model, takes RESOURCE_ALREADY_EXISTS as "it is
    there", and creates the version; so a taken name is the answer even to one who, in two
    teams, would have to name the owning team to register a new model."""
    developer.groups.add(teams["pricing"])
    assert mlflow.call("POST", "registered-models/create", {"name": "churn"}) == (
        400,
        {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Registered Model (name=churn) already exists."},
    )
    status, body = mlflow.call("POST", "registered-models/create", {"name": "fresh"})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "you belong to several teams (credit-risk, pricing)" in body["message"]
    assert not RegisteredModel.objects.filter(name="fresh").exists()


def test_a_restricted_models_name_is_not_told_to_one_who_may_not_see_it(owner, outsider):
    """One in two teams must name the team to register a model; of a restricted model they may
    not see, they get that refusal, as for a name no model has, so the answer tells nothing."""
    make_model(owner, name="secret", restricted=True)
    outsider.groups.add(Group.objects.create(name="fraud"))
    client = Mlflow(outsider)
    answers = [client.call("POST", "registered-models/create", {"name": name}) for name in ("secret", "fresh")]
    assert [(status, body["error_code"]) for status, body in answers] == [(400, "INVALID_PARAMETER_VALUE")] * 2
    assert answers[0][1]["message"].replace("secret", "fresh") == answers[1][1]["message"]


def test_a_hidden_models_taken_name_is_answered_in_the_same_words_as_a_visible_ones(mlflow, churn, outsider):
    make_model(outsider, team="pricing", name="secret", restricted=True)
    hidden = mlflow.call("POST", "registered-models/create", {"name": "secret"})
    seen = mlflow.call("POST", "registered-models/create", {"name": "churn"})
    assert hidden[0] == seen[0] == 400
    assert hidden[1] == {k: v.replace("churn", "secret") for k, v in seen[1].items()}
    renamed = mlflow.call("POST", "registered-models/rename", {"name": "churn", "new_name": "secret"})
    assert renamed == (
        400,
        {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Registered Model (name=secret) already exists."},
    )


def test_malformed_parameters_are_refused_not_failed_on(mlflow, churn):
    huge = base64.urlsafe_b64encode(json.dumps({"offset": 10**20}).encode()).decode()
    deep = base64.urlsafe_b64encode(b"[" * 5000).decode()
    for path in ("model-versions/search", "registered-models/search"):
        for token in (huge, deep):
            status, body = mlflow.call("GET", path, {"page_token": token})
            assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), path
    assert mlflow.call("GET", "registered-models/get", {"name": "churn\x00"}) == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Parameter 'name' must not hold a NUL character."},
    )
    for stages in (5, True, {"Production": 1}, [1]):
        status, body = mlflow.call("POST", "registered-models/get-latest-versions", {"name": "churn", "stages": stages})
        assert (status, body) == (
            400,
            {"error_code": "INVALID_PARAMETER_VALUE", "message": "Parameter 'stages' must be a list of stage names."},
        ), stages


def test_stage_names_are_read_in_any_case(mlflow, churn):
    """As MLflow reads them: loading ``models:/churn/none`` asks for stage 'none'."""
    status, body = mlflow.call("POST", "registered-models/get-latest-versions", {"name": "churn", "stages": ["none"]})
    assert status == 200, body
    assert [(v["version"], v["current_stage"]) for v in body["model_versions"]] == [("3", "None")]


def test_the_alias_latest_is_the_highest_version(mlflow, churn):
    """``models:/churn@latest``: MLflow's server answers the highest version, in any case."""
    for alias in ("latest", "LATEST"):
        status, body = mlflow.call("GET", "registered-models/alias", {"name": "churn", "alias": alias})
        assert (status, body["model_version"]["version"]) == (200, "3"), body
    mlflow.call("POST", "registered-models/create", {"name": "empty"})
    assert mlflow.call("GET", "registered-models/alias", {"name": "empty", "alias": "latest"})[1]["error_code"] == (
        "RESOURCE_DOES_NOT_EXIST"
    )


def test_a_version_search_answers_up_to_ten_thousand_in_a_page(mlflow, developer):
    """MlflowClient.search_model_versions reads one page (its max_results is 10,000 by default):
    a model's 1,001 versions come in it, not the first 1,000."""
    model = make_model(developer, name="many")
    for _ in range(1001):
        services.version_create(actor=developer, model=model, artifact_uri="s3://m/many")
    for filter_ in ("name='many'", "name LIKE 'many'"):
        status, body = mlflow.call("GET", "model-versions/search", {"filter": filter_})
        assert status == 200 and len(body["model_versions"]) == 1001 and "next_page_token" not in body, filter_


def test_timestamp_orders_models_by_their_last_update_and_the_prompt_filter_reads_false(mlflow, churn):
    mlflow.call("PATCH", "registered-models/update", {"name": "churn", "description": "touched last"})
    _, body = mlflow.call("GET", "registered-models/search", {"order_by": ["timestamp DESC"]})
    assert [m["name"] for m in body["registered_models"]] == ["churn", "fraud-score"]
    _, body = mlflow.call("GET", "registered-models/search", {"filter": "tags.`mlflow.prompt.is_prompt` = 'false'"})
    assert [m["name"] for m in body["registered_models"]] == ["churn", "fraud-score"]


def test_text_that_is_no_text_is_refused_not_failed_on(mlflow, churn, api, developer):
    """A lone UTF-16 surrogate is valid JSON but no text (PostgreSQL refuses it); a NUL in a tag
    key of a filter likewise."""
    for path, body, field in (
        ("registered-models/create", {"name": "\ud800"}, "name"),
        ("registered-models/set-tag", {"name": "churn", "key": "k", "value": "a\udc00"}, "value"),
        ("model-versions/create", {"name": "churn", "source": "s3://b/\ud800"}, "source"),
    ):
        assert mlflow.call("POST", path, body) == (
            400,
            {
                "error_code": "INVALID_PARAMETER_VALUE",
                "message": f"Parameter '{field}' must be valid Unicode (no lone surrogates).",
            },
        ), path
    assert mlflow.call("POST", "registered-models/set-tag", {"name": "churn", "key": "k", "value": "😀"})[0] == 200
    body = b'{"name": "x", "team": "credit-risk", "description": "\\udc00"}'
    response = api(developer).post("/api/v1/models/", body, content_type="application/json")
    assert response.status_code == 400, response.data
    assert response.data["fields"] == {"description": ["must be valid Unicode (no lone surrogates)"]}
    status, body = mlflow.call("GET", "model-versions/search", {"filter": "tags.`a\x00b` = 'x'"})
    assert (status, body["message"]) == (400, "filter: a tag key holds a NUL character")


def test_an_alias_deleted_meanwhile_is_not_found_not_a_server_error(mlflow, churn, developer):
    model = RegisteredModel.objects.get(name="churn")
    services.alias_set(actor=developer, model=model, name="candidate", number=2)
    stale = model.aliases.get(name="candidate")
    services.alias_delete(actor=developer, alias=stale)
    with pytest.raises(NotFound, match="No alias 'candidate' on model churn"):
        services.alias_delete(actor=developer, alias=stale)


def test_deleting_a_tag_someone_deleted_meanwhile_is_done_as_mlflow_answers(mlflow, churn, developer, monkeypatch):
    """Two clients delete the same tag at once: both read it, the second deletes after the
    first committed, and is answered 200 as for any tag that is not there."""
    model = RegisteredModel.objects.get(name="churn")
    version = ModelVersion.objects.get(model=model, number=1)
    services.version_update(actor=developer, version=version, set_tags={"k": "v"})
    stale_model, stale_version = RegisteredModel.objects.get(pk=model.pk), ModelVersion.objects.get(pk=version.pk)
    services.model_update(actor=developer, model=model, delete_tags=["area"])
    services.version_update(actor=developer, version=version, delete_tags=["k"])
    monkeypatch.setattr(views, "_model", lambda actor, name: stale_model)
    monkeypatch.setattr(views, "_version", lambda actor, name, number: stale_version)
    deleted = mlflow.call("DELETE", "registered-models/delete-tag", {"name": "churn", "key": "area"})
    assert deleted == (200, {})
    deleted = mlflow.call("DELETE", "model-versions/delete-tag", {"name": "churn", "version": "1", "key": "k"})
    assert deleted == (200, {})


def test_renaming_a_name_someone_renamed_meanwhile_is_not_found(mlflow, churn, developer, monkeypatch):
    """Both found churn by its name; the first renamed it; the second's name is gone, and it does
    not rename the model under another name it never gave."""
    stale = RegisteredModel.objects.get(name="churn")
    services.model_rename(actor=developer, model=RegisteredModel.objects.get(pk=stale.pk), new_name="attrition")
    monkeypatch.setattr(views, "_model", lambda actor, name: stale)
    status, body = mlflow.call("POST", "registered-models/rename", {"name": "churn", "new_name": "x"})
    message = "No model 'churn': it was renamed to 'attrition' a moment ago."
    assert (status, body) == (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message})
    assert RegisteredModel.objects.get(pk=stale.pk).name == "attrition"


def test_a_new_version_marks_its_model_updated(mlflow, churn):
    """As in MLflow: the model's last_updated_timestamp is its newest version's creation time, so
    ordering by it puts the model that just took a version first."""
    _, created = mlflow.call("POST", "model-versions/create", {"name": "fraud-score", "source": "s3://m/fraud/2"})
    _, model = mlflow.call("GET", "registered-models/get", {"name": "fraud-score"})
    stamp = created["model_version"]["creation_timestamp"]
    assert model["registered_model"]["last_updated_timestamp"] == stamp
    _, body = mlflow.call("GET", "registered-models/search", {"order_by": ["last_updated_timestamp DESC"]})
    assert [m["name"] for m in body["registered_models"]] == ["fraud-score", "churn"]
    mlflow.call("POST", "model-versions/create", {"name": "churn", "source": "s3://m/churn/4"})
    _, body = mlflow.call("GET", "registered-models/search", {"order_by": ["timestamp DESC"]})
    assert [m["name"] for m in body["registered_models"]] == ["churn", "fraud-score"]


def test_a_request_past_djangos_limits_is_answered_in_mlflows_shape(mlflow, settings):
    many = {f"p{n}": "x" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    response = mlflow.client.get(f"{API}/registered-models/search", many, **mlflow.headers)
    assert (response.status_code, response.json()["error_code"]) == (400, "MALFORMED_REQUEST")
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["message"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    status, body = mlflow.call("POST", "registered-models/create", {"name": "x" * 200})
    assert (status, body["error_code"]) == (400, "MALFORMED_REQUEST")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in body["message"]


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's deadlock detection")
@pytest.mark.django_db(transaction=True)
def test_a_change_rolled_back_for_a_deadlock_is_temporarily_unavailable_to_send_again(
    mlflow, developer, owner, monkeypatch
):
    """Nothing of the change was saved, and the answer is one MLflow's client sends again by itself."""
    deadlock = a_deadlock(developer, owner)

    def rolled_back(**kwargs: Any) -> None:
        raise deadlock

    monkeypatch.setattr(services, "model_register", rolled_back)
    status, body = mlflow.call("POST", "registered-models/create", {"name": "churn"})
    assert (status, body) == (429, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": TRY_AGAIN})
    assert not RegisteredModel.objects.exists()
