from __future__ import annotations

import pytest

from audit.models import AuditEvent
from registry import services
from registry.models import Alias
from tests.factories import make_model, make_version


@pytest.fixture
def m1(developer):
    """Model m1 of credit-risk with versions 1, 2 and 3."""
    model = make_model(developer, name="m1")
    for _ in range(3):
        make_version(developer, model)
    return model


def test_alias_is_set_read_and_audited(api, developer, m1):
    client = api(developer)
    response = client.put("/api/v1/models/m1/aliases/candidate/", {"version": 2}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["name"] == "candidate"
    assert (response.data["model"], response.data["version"], response.data["updated_by"]) == ("m1", 2, "dev")
    assert response.data["version_id"] == m1.versions.get(number=2).pk
    assert client.get("/api/v1/models/m1/aliases/candidate/").data == response.data
    event = AuditEvent.objects.get(action="alias.set")
    assert (event.object_id, event.model_name, event.before, event.after) == (
        "m1@candidate",
        "m1",
        None,
        {"version": 2},
    )


def test_moving_an_alias_audits_before_and_after(api, developer, owner, m1):
    services.alias_set(actor=developer, model=m1, name="candidate", number=1)
    response = api(owner).put("/api/v1/models/m1/aliases/candidate/", {"version": 3}, format="json")
    assert response.status_code == 200
    assert (response.data["version"], response.data["updated_by"]) == (3, "owner")
    assert api(owner).get("/api/v1/models/m1/aliases/candidate/").data == response.data
    event = AuditEvent.objects.filter(action="alias.set").first()
    assert (event.actor, event.before, event.after) == (owner, {"version": 1}, {"version": 3})
    assert Alias.objects.get().version.number == 3


def test_setting_an_alias_to_where_it_already_points_writes_nothing(
    api, developer, owner, m1, django_assert_num_queries
):
    services.alias_set(actor=developer, model=m1, name="candidate", number=2)
    api(owner).put("/api/v1/models/m1/aliases/candidate/", {"version": 2}, format="json")  # a warm connection
    # the model; a savepoint (the test's transaction), the model's lock, the user's groups, the
    # version and where the alias points, the alias with who moved it last, the release
    with django_assert_num_queries(7):
        response = api(owner).put("/api/v1/models/m1/aliases/candidate/", {"version": 2}, format="json")
    assert response.status_code == 200
    assert (response.data["version"], response.data["updated_by"]) == (2, "dev")
    assert api(owner).get("/api/v1/models/m1/aliases/candidate/").data == response.data
    assert AuditEvent.objects.filter(action="alias.set").count() == 1


def test_aliases_of_a_model_are_listed_by_name(api, developer, m1):
    client = api(developer)
    client.put("/api/v1/models/m1/aliases/shadow/", {"version": 1}, format="json")
    client.put("/api/v1/models/m1/aliases/candidate/", {"version": 3}, format="json")
    response = client.get("/api/v1/models/m1/aliases/")
    assert response.status_code == 200
    assert [(a["name"], a["version"]) for a in response.data] == [("candidate", 3), ("shadow", 1)]


def test_deleting_an_alias_is_audited_and_returns_204(api, developer, m1):
    services.alias_set(actor=developer, model=m1, name="candidate", number=2)
    client = api(developer)
    response = client.delete("/api/v1/models/m1/aliases/candidate/")
    assert response.status_code == 204
    assert not Alias.objects.exists()
    event = AuditEvent.objects.get(action="alias.deleted")
    assert (event.actor, event.object_id, event.before, event.after) == (
        developer,
        "m1@candidate",
        {"version": 2},
        None,
    )
    assert client.get("/api/v1/models/m1/aliases/candidate/").status_code == 404


def test_alias_to_a_version_that_does_not_exist_is_refused_naming_the_version(api, developer, m1):
    response = api(developer).put("/api/v1/models/m1/aliases/candidate/", {"version": 4}, format="json")
    assert response.status_code == 400
    assert response.data == {
        "code": "invalid",
        "message": "version: model m1 has no version 4",
        "fields": {"version": ["model m1 has no version 4"]},
    }
    assert not Alias.objects.exists()


@pytest.mark.parametrize("body", [{}, {"version": 0}, {"version": "two"}])
def test_alias_needs_a_version_number(api, developer, m1, body):
    response = api(developer).put("/api/v1/models/m1/aliases/candidate/", body, format="json")
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["version"]


@pytest.mark.parametrize("name", ["latest", "LATEST", "v3", "V12"])
def test_reserved_alias_names_are_refused(api, developer, m1, name):
    response = api(developer).put(f"/api/v1/models/m1/aliases/{name}/", {"version": 1}, format="json")
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["alias"]
    assert "reserved" in response.data["fields"]["alias"][0]
    assert not Alias.objects.exists()
    assert not AuditEvent.objects.filter(action="alias.set").exists()


def test_outsider_cannot_set_or_delete_an_alias(api, developer, outsider, m1):
    services.alias_set(actor=developer, model=m1, name="candidate", number=1)
    client = api(outsider)
    response = client.put("/api/v1/models/m1/aliases/candidate/", {"version": 2}, format="json")
    assert response.status_code == 403
    assert response.data == {
        "code": "permission_denied",
        "message": "Only the owning team (credit-risk) may change versions of model m1.",
        "fields": {},
    }
    assert client.delete("/api/v1/models/m1/aliases/candidate/").status_code == 403
    assert Alias.objects.get().version.number == 1
    assert AuditEvent.objects.filter(action__startswith="alias.").count() == 1


def test_unknown_alias_is_a_404(api, developer, m1):
    client = api(developer)
    response = client.get("/api/v1/models/m1/aliases/candidate/")
    assert response.status_code == 404
    assert response.data == {"code": "not_found", "message": "Model m1 has no alias 'candidate'.", "fields": {}}
    assert client.delete("/api/v1/models/m1/aliases/candidate/").status_code == 404


def test_aliases_of_a_restricted_model_are_404_to_those_who_cannot_see_it(api, owner, outsider):
    model = make_model(owner, name="secret", restricted=True)
    services.alias_set(actor=owner, model=model, name="candidate", number=make_version(owner, model).number)
    client = api(outsider)
    assert client.get("/api/v1/models/secret/aliases/").status_code == 404
    assert client.get("/api/v1/models/secret/aliases/candidate/").status_code == 404
    assert client.put("/api/v1/models/secret/aliases/candidate/", {"version": 1}, format="json").status_code == 404


@pytest.mark.parametrize("name", ["a%00b", "x" * 101, "é"])
def test_an_alias_no_alias_could_be_named_is_not_found(api, developer, m1, name):
    for method in ("get", "delete"):
        response = getattr(api(developer), method)(f"/api/v1/models/m1/aliases/{name}/")
        assert response.status_code == 404, (method, response.data)
