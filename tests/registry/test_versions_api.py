from __future__ import annotations

import pytest

from audit.models import AuditEvent
from common import statements
from registry.models import ModelVersion
from tests.conftest import on_postgres
from tests.factories import digest, make_dataset_version, make_model, make_version


def test_versions_are_numbered_1_2_3_and_each_is_audited(api, developer):
    make_model(developer, name="m1")
    client = api(developer)
    numbers = [
        client.post("/api/v1/models/m1/versions/", {"artifact_uri": f"s3://m1/{i}"}, format="json").data["number"]
        for i in range(3)
    ]
    assert numbers == [1, 2, 3]
    events = AuditEvent.objects.filter(action="version.created").order_by("id")
    assert [(e.model_name, e.after["number"], e.actor) for e in events] == [
        ("m1", 1, developer),
        ("m1", 2, developer),
        ("m1", 3, developer),
    ]


def test_created_version_is_a_draft_with_what_was_given(api, developer):
    make_model(developer, name="m1")
    sha = digest("weights")
    response = api(developer).post(
        "/api/v1/models/m1/versions/",
        {"artifact_uri": "s3://m1/1", "artifact_sha256": sha.upper(), "metrics": {"auc": 0.81}, "tags": {"k": "v"}},
        format="json",
    )
    assert response.status_code == 201, response.data
    assert (response.data["state"], response.data["artifact_sha256"]) == ("draft", sha)
    assert (response.data["metrics"], response.data["tags"], response.data["created_by"]) == (
        {"auc": 0.81},
        {"k": "v"},
        "dev",
    )


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "a" * 63, "a" * 65])
def test_bad_artifact_digest_is_refused_naming_the_field(api, developer, bad):
    make_model(developer, name="m1")
    response = api(developer).post(
        "/api/v1/models/m1/versions/", {"artifact_uri": "s3://m1/1", "artifact_sha256": bad}, format="json"
    )
    assert response.status_code == 400
    assert response.data == {
        "code": "invalid",
        "message": "artifact_sha256: must be a SHA-256 digest: 64 hexadecimal characters",
        "fields": {"artifact_sha256": ["must be a SHA-256 digest: 64 hexadecimal characters"]},
    }
    assert not ModelVersion.objects.exists()
    assert not AuditEvent.objects.filter(action="version.created").exists()


def test_a_draft_may_have_no_digest_yet(api, developer):
    make_model(developer, name="m1")
    response = api(developer).post("/api/v1/models/m1/versions/", {"artifact_uri": "s3://m1/1"}, format="json")
    assert response.status_code == 201
    assert response.data["artifact_sha256"] == ""
    second = api(developer).post("/api/v1/models/m1/versions/", {"artifact_uri": "s3://m1/2"}, format="json")
    assert second.status_code == 201


def test_the_same_digest_twice_in_one_model_is_a_conflict(api, developer):
    m1 = make_model(developer, name="m1")
    sha = digest("weights")
    make_version(developer, m1, artifact_sha256=sha)
    response = api(developer).post(
        "/api/v1/models/m1/versions/", {"artifact_uri": "s3://m1/2", "artifact_sha256": sha}, format="json"
    )
    assert response.status_code == 409
    assert response.data["code"] == "conflict"
    assert response.data["fields"] == {"artifact_sha256": ["version 1 of m1 already has this digest"]}
    assert m1.versions.count() == 1


def test_the_same_digest_on_another_model_is_allowed(api, developer):
    make_version(developer, make_model(developer, name="m1"), artifact_sha256=digest("weights"))
    make_model(developer, name="m2")
    response = api(developer).post(
        "/api/v1/models/m2/versions/",
        {"artifact_uri": "s3://m2/1", "artifact_sha256": digest("weights")},
        format="json",
    )
    assert response.status_code == 201
    assert (response.data["model"], response.data["number"]) == ("m2", 1)


def test_outsider_cannot_add_a_version_to_another_teams_model(api, owner, outsider):
    make_model(owner, name="m1")
    response = api(outsider).post("/api/v1/models/m1/versions/", {"artifact_uri": "s3://m1/1"}, format="json")
    assert response.status_code == 403
    assert response.data == {
        "code": "permission_denied",
        "message": "Only the owning team (credit-risk) adds versions to model m1.",
        "fields": {},
    }
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("value", ["high", "0.9", True, None, [0.9], {"x": 1}])
def test_non_numeric_metric_value_is_refused(api, developer, value):
    make_model(developer, name="m1")
    response = api(developer).post(
        "/api/v1/models/m1/versions/", {"artifact_uri": "s3://m1/1", "metrics": {"auc": value}}, format="json"
    )
    assert response.status_code == 400
    assert response.data["fields"] == {"metrics.auc": ["metric values must be numbers"]}
    assert not ModelVersion.objects.exists()


def test_version_is_read_by_number_and_by_id(api, developer):
    version = make_version(developer, make_model(developer, name="m1"))
    by_number = api(developer).get("/api/v1/models/m1/versions/1/")
    by_id = api(developer).get(f"/api/v1/versions/{version.pk}/")
    assert by_number.status_code == by_id.status_code == 200
    assert by_number.data == by_id.data
    assert (by_id.data["id"], by_id.data["model"], by_id.data["number"]) == (version.pk, "m1", 1)


def test_unknown_version_number_is_a_404(api, developer):
    make_version(developer, make_model(developer, name="m1"))
    response = api(developer).get("/api/v1/models/m1/versions/2/")
    assert response.status_code == 404
    assert response.data == {"code": "not_found", "message": "Model 'm1' has no version 2.", "fields": {}}


def test_versions_of_a_restricted_model_are_404_to_those_who_cannot_see_it(api, owner, outsider):
    version = make_version(owner, make_model(owner, name="secret", restricted=True))
    client = api(outsider)
    assert client.get("/api/v1/models/secret/versions/").status_code == 404
    assert client.get("/api/v1/models/secret/versions/1/").status_code == 404
    assert client.get(f"/api/v1/versions/{version.pk}/").status_code == 404
    assert client.patch(f"/api/v1/versions/{version.pk}/", {"description": "x"}, format="json").status_code == 404
    assert client.post("/api/v1/models/secret/versions/", {"artifact_uri": "s3://x"}, format="json").status_code == 404
    assert version.pk not in [v["id"] for v in client.get("/api/v1/versions/").data["results"]]


def test_description_and_tags_change_with_before_and_after_audited(api, developer):
    make_version(developer, make_model(developer, name="m1"), description="old", tags={"a": "1"})
    response = api(developer).patch(
        "/api/v1/models/m1/versions/1/", {"description": "new", "tags": {"b": "2"}}, format="json"
    )
    assert response.status_code == 200, response.data
    assert (response.data["description"], response.data["tags"]) == ("new", {"b": "2"})
    event = AuditEvent.objects.get(action="version.updated")
    assert (event.model_name, event.before, event.after) == (
        "m1",
        {"description": "old", "tags": {"a": "1"}},
        {"description": "new", "tags": {"b": "2"}},
    )


def test_patch_by_id_changes_the_description(api, developer):
    version = make_version(developer, make_model(developer, name="m1"))
    response = api(developer).patch(f"/api/v1/versions/{version.pk}/", {"description": "by id"}, format="json")
    assert response.status_code == 200
    version.refresh_from_db()
    assert version.description == "by id"


def test_patch_that_changes_nothing_writes_no_audit_event(api, developer):
    make_version(developer, make_model(developer, name="m1"), description="same")
    response = api(developer).patch("/api/v1/models/m1/versions/1/", {"description": "same"}, format="json")
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="version.updated").exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("artifact_uri", "s3://elsewhere"),
        ("metrics", {"auc": 0.99}),
        ("artifact_sha256", "a" * 64),
        ("state", "approved"),
    ],
)
def test_frozen_fields_cannot_be_patched(api, developer, field, value):
    version = make_version(developer, make_model(developer, name="m1"), metrics={"auc": 0.5})
    before = ModelVersion.objects.filter(pk=version.pk).values().get()
    response = api(developer).patch(
        "/api/v1/models/m1/versions/1/", {field: value, "description": "sneaked in"}, format="json"
    )
    assert response.status_code == 400
    assert list(response.data["fields"]) == [field]
    assert "frozen" in response.data["fields"][field][0]
    assert ModelVersion.objects.filter(pk=version.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="version.updated").exists()


def test_outsider_cannot_patch_a_version(api, owner, outsider):
    make_version(owner, make_model(owner, name="m1"))
    response = api(outsider).patch("/api/v1/models/m1/versions/1/", {"description": "x"}, format="json")
    assert response.status_code == 403
    assert response.data["message"] == "Only the owning team (credit-risk) may change versions of model m1."


def test_version_tags_are_set_and_deleted_one_by_one(api, developer):
    version = make_version(developer, make_model(developer, name="m1"))
    client = api(developer)
    response = client.put("/api/v1/models/m1/versions/1/tags/stage/", {"value": "candidate"}, format="json")
    assert response.status_code == 200
    assert response.data["tags"] == {"stage": "candidate"}
    response = client.put(f"/api/v1/versions/{version.pk}/tags/owner note/", {"value": "x"}, format="json")
    assert response.data["tags"] == {"stage": "candidate", "owner note": "x"}
    assert client.delete("/api/v1/models/m1/versions/1/tags/stage/").data["tags"] == {"owner note": "x"}
    assert client.delete(f"/api/v1/versions/{version.pk}/tags/owner note/").data["tags"] == {}
    missing = client.delete("/api/v1/models/m1/versions/1/tags/stage/")
    assert missing.status_code == 404
    assert missing.data["message"] == "Version 1 of m1 has no tag 'stage'."
    assert AuditEvent.objects.filter(action="version.updated").count() == 4


def test_tags_under_wardens_prefix_are_refused_on_the_native_api_as_on_mlflows(api, developer):
    """They are the facts the MLflow API shows (team, tier, state, digest): stored, they would
    show there as Warden's word, and twice."""
    make_version(developer, make_model(developer, name="m1"))
    client = api(developer)
    rule = "tag keys starting with 'warden.' are Warden's and read-only"
    for response in (
        client.put("/api/v1/models/m1/tags/warden.risk_tier/", {"value": "T4"}, format="json"),
        client.put("/api/v1/models/m1/versions/1/tags/warden.state/", {"value": "approved"}, format="json"),
        client.patch("/api/v1/models/m1/", {"tags": {"warden.team": "pricing"}}, format="json"),
        client.post("/api/v1/models/", {"name": "m2", "team": "credit-risk", "tags": {"warden.x": "y"}}, format="json"),
    ):
        assert (response.status_code, response.data["fields"]) == (400, {"tags": [rule]})
    assert not AuditEvent.objects.filter(action__in=["model.updated", "version.updated"]).exists()


def test_outsider_cannot_tag_a_version(api, owner, outsider):
    make_version(owner, make_model(owner, name="m1"))
    response = api(outsider).put("/api/v1/models/m1/versions/1/tags/stage/", {"value": "x"}, format="json")
    assert response.status_code == 403
    assert ModelVersion.objects.get().tags == {}


@pytest.fixture
def catalogue(developer):
    """m1 v1 (trained on `loans`, tagged stage=prod), v2 (tagged stage=dev), v3 (no tags)."""
    m1 = make_model(developer, name="m1")
    loans = make_dataset_version(developer, name="loans")
    v1 = make_version(developer, m1, tags={"stage": "prod"}, datasets=[(loans, "training")])
    v2 = make_version(developer, m1, tags={"stage": "dev"})
    v3 = make_version(developer, m1)
    return {"v1": v1, "v2": v2, "v3": v3, "loans": loans}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("state=draft", [3, 2, 1]),
        ("state=approved", []),
        ("tag=stage", [2, 1]),
        ("tag=stage=prod", [1]),
        ("uses_dataset=loans", [1]),
        ("uses_dataset=nothing", []),
    ],
)
def test_versions_of_a_model_are_filtered(api, developer, catalogue, query, expected):
    response = api(developer).get(f"/api/v1/models/m1/versions/?{query}")
    assert response.status_code == 200, response.data
    assert [v["number"] for v in response.data["results"]] == expected


def test_versions_are_filtered_by_dataset_version_digest_and_creation_time(api, developer, catalogue):
    client = api(developer)

    def numbers(**params):
        response = client.get("/api/v1/models/m1/versions/", params)
        assert response.status_code == 200, response.data
        return [v["number"] for v in response.data["results"]]

    assert numbers(uses_dataset_version=catalogue["loans"].pk) == [1]
    assert numbers(artifact_sha256=catalogue["v2"].artifact_sha256.upper()) == [2]
    assert numbers(created_after=client.get("/api/v1/models/m1/versions/2/").data["created_at"]) == [3, 2]


@pytest.mark.parametrize("query", ["state=flying", "created_after=yesterday", "uses_dataset_version=1.5"])
def test_bad_version_filter_is_a_400_naming_the_filter(api, developer, catalogue, query):
    response = api(developer).get(f"/api/v1/models/m1/versions/?{query}")
    assert response.status_code == 400
    assert list(response.data["fields"]) == [query.partition("=")[0]]


def test_all_versions_list_filters_by_model(api, developer):
    make_version(developer, make_model(developer, name="m1"))
    make_version(developer, make_model(developer, name="m2"))
    response = api(developer).get("/api/v1/versions/?model=m2")
    assert [(v["model"], v["number"]) for v in response.data["results"]] == [("m2", 1)]


def _many_versions_with_lineage(developer, count):
    """``count`` versions of m1, each with a parent, a dataset and tags, so that every related
    field a list row shows has something in it."""
    m1 = make_model(developer, name="m1")
    base = make_version(developer, make_model(developer, name="base"))
    data = make_dataset_version(developer, name="loans")
    for i in range(count):
        make_version(
            developer,
            m1,
            tags={"i": str(i)},
            parents=[(base, "retrained_from")],
            datasets=[(data, "training")],
        )


def test_listing_versions_of_a_model_costs_the_same_queries_at_10_and_100_rows(
    api, developer, django_assert_num_queries
):
    _many_versions_with_lineage(developer, 100)
    client = api(developer)
    client.get("/api/v1/models/m1/versions/")  # a warm connection: its statements are prepared (common.statements)
    # the model, the page, which of its versions have lineage, their parents and their datasets
    with django_assert_num_queries(5) as small:
        response = client.get("/api/v1/models/m1/versions/?page_size=10")
    assert len(response.data["results"]) == 10
    assert response.data["results"][0]["parents"][0]["model"] == "base"
    assert response.data["results"][0]["datasets"][0]["dataset"] == "loans"
    with django_assert_num_queries(5) as large:
        response = client.get("/api/v1/models/m1/versions/?page_size=100")
    assert len(response.data["results"]) == 100
    assert len(small.captured_queries) == len(large.captured_queries)


def test_a_page_of_versions_without_lineage_reads_only_that_they_have_none(api, developer, django_assert_num_queries):
    model = make_model(developer, name="plain")
    for _ in range(3):
        make_version(developer, model)
    api(developer).get("/api/v1/models/plain/versions/")  # a warm connection, as above
    with django_assert_num_queries(3):  # the model, the page, and which of its versions have lineage
        response = api(developer).get("/api/v1/models/plain/versions/")
    assert [(v["number"], v["parents"], v["datasets"]) for v in response.data["results"]] == [
        (3, [], []),
        (2, [], []),
        (1, [], []),
    ]


def test_listing_all_versions_costs_the_same_queries_at_10_and_100_rows(api, developer, django_assert_num_queries):
    _many_versions_with_lineage(developer, 100)
    client = api(developer)
    client.get("/api/v1/versions/")  # a warm connection, as above
    with django_assert_num_queries(6):
        response = client.get("/api/v1/versions/?page_size=10")
    assert len(response.data["results"]) == 10
    with django_assert_num_queries(6):
        response = client.get("/api/v1/versions/?page_size=100")
    assert len(response.data["results"]) == 100


def test_json_documents_with_lone_surrogates_are_refused_naming_the_field(api, developer):
    make_model(developer, name="m-unicode")
    response = api(developer).generic(
        "POST",
        "/api/v1/models/m-unicode/versions/",
        '{"artifact_uri": "s3://x", "parameters": {"k": "a\\ud800"}}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.data["fields"] == {"parameters": ["must be valid Unicode (no lone surrogates)"]}


def test_a_point_read_reads_lineage_only_for_a_version_that_has_some(api, developer, django_assert_num_queries):
    model = make_model(developer, name="churn")
    plain = make_version(developer, model)
    loans = make_dataset_version(developer, name="loans")
    make_version(developer, model, parents=[(plain, "retrained_from")], datasets=[(loans, "training")])
    client = api(developer)
    client.get("/api/v1/models/churn/versions/2/")  # a warm connection, as above
    with django_assert_num_queries(1):
        response = client.get("/api/v1/models/churn/versions/1/")
    assert (response.data["parents"], response.data["datasets"]) == ([], [])
    with django_assert_num_queries(3):
        response = client.get("/api/v1/models/churn/versions/2/")
    assert [(p["model"], p["number"], p["relation"]) for p in response.data["parents"]] == [
        ("churn", 1, "retrained_from")
    ]
    assert [(d["dataset"], d["role"]) for d in response.data["datasets"]] == [("loans", "training")]


def test_the_first_page_in_the_default_order_is_the_page_the_orm_reads(api, developer, owner):
    """A model's first page without a cursor, filter or ordering is read by a prepared statement
    (``common.api.FirstPage``); asking for the same order explicitly goes through the ORM."""
    _many_versions_with_lineage(developer, 5)
    make_version(owner, ModelVersion.objects.get(number=1, model__name="m1").model, description="by the owner")
    client = api(developer)
    fast = client.get("/api/v1/models/m1/versions/?page_size=4").json()
    built = client.get("/api/v1/models/m1/versions/?page_size=4&ordering=-number").json()
    assert [v["number"] for v in fast["results"]] == [6, 5, 4, 3]
    assert fast["results"] == built["results"]
    assert (fast["results"][0]["created_by"], fast["results"][1]["parents"][0]["model"]) == ("owner", "base")
    following = client.get(fast["next"]).json()
    assert [v["number"] for v in following["results"]] == [2, 1] and following["next"] is None
    assert following["results"] == client.get(built["next"]).json()["results"]
    assert client.get("/api/v1/models/m1/versions/?page_size=4").json() == fast


def test_creating_a_version_reads_and_locks_its_model_in_one_statement(api, developer, django_assert_num_queries):
    make_model(developer, name="plain")
    client = api(developer)
    client.post("/api/v1/models/plain/versions/", {"artifact_uri": "s3://m/1"}, format="json")  # a warm connection
    # the savepoint of the service's transaction (the test's own is around it), the model by name
    # and locked (with the version's id, on PostgreSQL), the user's groups (a token would have
    # brought them), the audit event (on SQLite: the chain head read, the event, the head's
    # update), the release; the version's insert, which also counts it on the model, travels with
    # the next statement on PostgreSQL; on SQLite it is a statement of its own, and the model's
    # update another
    with django_assert_num_queries(5 if on_postgres() else 9) as created:
        response = client.post("/api/v1/models/plain/versions/", {"artifact_uri": "s3://m/2"}, format="json")
    assert response.status_code == 201 and response.data["number"] == 2
    texts = [statements.prepared_text(q["sql"]) for q in created.captured_queries]
    models = [sql for sql in texts if sql.startswith("SELECT") and "registry_registeredmodel" in sql]
    assert len(models) == 1
    if on_postgres():
        assert "FOR NO KEY UPDATE" in models[0]
