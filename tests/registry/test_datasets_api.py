from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from audit.models import AuditEvent
from registry import services
from registry.models import Dataset, DatasetVersion
from tests.factories import digest, make_dataset_version


def _add_version(client, dataset, **data):
    data.setdefault("uri", f"s3://data/{dataset}")
    data.setdefault("digest", digest())
    return client.post(f"/api/v1/datasets/{dataset}/versions/", data, format="json")


def test_developer_registers_a_dataset_for_their_team_and_it_is_audited(api, developer):
    response = api(developer).post(
        "/api/v1/datasets/", {"name": "loans", "team": "credit-risk", "description": "retail book"}, format="json"
    )
    assert response.status_code == 201, response.data
    assert (response.data["name"], response.data["team"], response.data["created_by"]) == (
        "loans",
        "credit-risk",
        "dev",
    )
    event = AuditEvent.objects.get(action="dataset.created")
    assert (event.actor, event.after) == (developer, {"name": "loans", "team": "credit-risk"})


def test_cannot_register_a_dataset_for_a_team_you_are_not_on(api, outsider):
    response = api(outsider).post("/api/v1/datasets/", {"name": "loans", "team": "credit-risk"}, format="json")
    assert response.status_code == 403
    assert response.data == {
        "code": "permission_denied",
        "message": "You can only register datasets for a team you belong to.",
        "fields": {},
    }
    assert not Dataset.objects.exists()


def test_governance_roles_do_not_register_datasets(api, validator):
    response = api(validator).post("/api/v1/datasets/", {"name": "loans", "team": "credit-risk"}, format="json")
    assert response.status_code == 403
    assert response.data["message"] == "Only model developers and model owners register datasets."


def test_duplicate_dataset_name_is_a_conflict(api, developer, outsider):
    services.dataset_create(actor=developer, name="loans", team=Group.objects.get(name="credit-risk"))
    response = api(outsider).post("/api/v1/datasets/", {"name": "loans", "team": "pricing"}, format="json")
    assert response.status_code == 409
    assert response.data["fields"] == {"name": ["a dataset named 'loans' already exists"]}
    assert Dataset.objects.count() == 1


@pytest.mark.parametrize("name", ["no spaces", "ünïcode", "", "a" * 101])
def test_bad_dataset_name_is_refused_naming_the_field(api, developer, name):
    response = api(developer).post("/api/v1/datasets/", {"name": name, "team": "credit-risk"}, format="json")
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["name"]
    assert not Dataset.objects.exists()


def test_unknown_team_is_refused_naming_the_field(api, developer):
    response = api(developer).post("/api/v1/datasets/", {"name": "loans", "team": "nobody"}, format="json")
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["team"]


def test_dataset_is_read_by_name(api, developer, outsider):
    make_dataset_version(developer, name="loans")
    response = api(outsider).get("/api/v1/datasets/loans/")
    assert response.status_code == 200
    assert response.data["team"] == "credit-risk"
    assert api(outsider).get("/api/v1/datasets/nothing/").data == {
        "code": "not_found",
        "message": "No dataset named 'nothing'.",
        "fields": {},
    }


def test_dataset_versions_are_numbered_1_2_and_audited(api, developer):
    services.dataset_create(actor=developer, name="loans", team=Group.objects.get(name="credit-risk"))
    client = api(developer)
    first = _add_version(client, "loans", row_count=10, schema_summary={"columns": ["amount"]})
    second = _add_version(client, "loans")
    assert (first.status_code, second.status_code) == (201, 201)
    assert (first.data["number"], second.data["number"]) == (1, 2)
    assert (first.data["row_count"], first.data["schema_summary"]) == (10, {"columns": ["amount"]})
    events = AuditEvent.objects.filter(action="dataset_version.created").order_by("id")
    assert [e.after["number"] for e in events] == [1, 2]


@pytest.mark.parametrize("bad", ["abc", "z" * 64, "a" * 63, ""])
def test_bad_dataset_digest_is_refused_naming_the_field(api, developer, bad):
    services.dataset_create(actor=developer, name="loans", team=Group.objects.get(name="credit-risk"))
    response = _add_version(api(developer), "loans", digest=bad)
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["digest"]
    assert not DatasetVersion.objects.exists()


def test_the_same_digest_twice_in_one_dataset_is_a_conflict(api, developer):
    first = make_dataset_version(developer, name="loans")
    response = _add_version(api(developer), "loans", digest=first.digest.upper())
    assert response.status_code == 409
    assert response.data["fields"] == {"digest": ["version 1 of dataset loans already has this digest"]}
    assert DatasetVersion.objects.count() == 1


def test_the_same_digest_in_another_dataset_is_allowed(api, developer):
    first = make_dataset_version(developer, name="loans")
    make_dataset_version(developer, name="cards")
    response = _add_version(api(developer), "cards", digest=first.digest)
    assert response.status_code == 201
    assert response.data["number"] == 2


def test_outsider_cannot_add_a_version_to_another_teams_dataset(api, developer, outsider):
    make_dataset_version(developer, name="loans")
    response = _add_version(api(outsider), "loans")
    assert response.status_code == 403
    assert response.data["message"] == "Only the owning team (credit-risk) adds versions to dataset loans."
    assert DatasetVersion.objects.count() == 1


@pytest.mark.parametrize("row_count", [-1, 2**62 + 1, "many", 1.5])
def test_bad_row_count_is_refused_naming_the_field(api, developer, row_count):
    services.dataset_create(actor=developer, name="loans", team=Group.objects.get(name="credit-risk"))
    response = _add_version(api(developer), "loans", row_count=row_count)
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["row_count"]
    assert not DatasetVersion.objects.exists()


def test_versions_of_an_unknown_dataset_are_a_404(api, developer):
    assert api(developer).get("/api/v1/datasets/nothing/versions/").status_code == 404
    assert _add_version(api(developer), "nothing").status_code == 404


def test_dataset_version_is_read_by_id(api, developer, outsider):
    dataset_version = make_dataset_version(developer, name="loans")
    response = api(outsider).get(f"/api/v1/dataset-versions/{dataset_version.pk}/")
    assert response.status_code == 200
    assert (response.data["dataset"], response.data["number"], response.data["digest"]) == (
        "loans",
        1,
        dataset_version.digest,
    )
    assert api(outsider).get(f"/api/v1/dataset-versions/{dataset_version.pk + 1}/").status_code == 404


def test_dataset_versions_are_found_by_digest(api, developer):
    make_dataset_version(developer, name="loans")
    second = make_dataset_version(developer, name="loans")
    response = api(developer).get("/api/v1/dataset-versions/", {"digest": second.digest.upper()})
    assert [v["id"] for v in response.data["results"]] == [second.pk]


def test_anonymous_users_see_no_datasets(api, developer):
    make_dataset_version(developer, name="loans")
    response = api().get("/api/v1/datasets/")
    assert response.status_code == 401
    assert response.data["code"] == "not_authenticated"


@pytest.fixture
def many_datasets(developer, outsider):
    for i in range(60):
        make_dataset_version(developer, name=f"d{i:03}")
        make_dataset_version(outsider, team="pricing", name=f"p{i:03}")
    for _ in range(99):
        make_dataset_version(developer, name="d000")


@pytest.mark.parametrize(
    "path, queries",
    [("/api/v1/datasets/", 1), ("/api/v1/datasets/d000/versions/", 2), ("/api/v1/dataset-versions/", 1)],
)
def test_listing_datasets_costs_the_same_queries_at_10_and_100_rows(
    api, developer, many_datasets, django_assert_num_queries, path, queries
):
    client = api(developer)
    for size in (10, 100):
        with django_assert_num_queries(queries):
            response = client.get(path, {"page_size": size})
        assert len(response.data["results"]) == size
