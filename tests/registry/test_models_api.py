from __future__ import annotations

import pytest

from audit.models import AuditEvent
from common.errors import ValidationFailed
from registry import services
from tests.factories import make_model


def test_developer_registers_a_model_for_their_team_and_it_is_audited(api, developer):
    response = api(developer).post(
        "/api/v1/models/",
        {
            "name": "credit-scorecard",
            "team": "credit-risk",
            "business_purpose": "retail lending",
            "tags": {"a": "b"},
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    assert response.data["name"] == "credit-scorecard"
    assert response.data["owner"] == "dev"
    assert response.data["risk_tier"] is None
    event = AuditEvent.objects.get(action="model.registered")
    assert (event.actor, event.model_name, event.after["business_purpose"]) == (
        developer,
        "credit-scorecard",
        "retail lending",
    )
    assert event.request_id


def test_bad_model_name_is_refused_naming_the_field(api, developer):
    response = api(developer).post("/api/v1/models/", {"name": "no spaces!", "team": "credit-risk"}, format="json")
    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert "name" in response.data["fields"]
    assert not AuditEvent.objects.exists()


def test_duplicate_model_name_is_a_conflict(api, developer):
    make_model(developer, name="dup")
    response = api(developer).post("/api/v1/models/", {"name": "dup", "team": "credit-risk"}, format="json")
    assert response.status_code == 409
    assert response.data["fields"] == {"name": ["a model named 'dup' already exists"]}


def test_cannot_register_a_model_for_a_team_you_are_not_on(api, outsider):
    response = api(outsider).post("/api/v1/models/", {"name": "sneaky", "team": "credit-risk"}, format="json")
    assert response.status_code == 403
    assert response.data == {
        "code": "permission_denied",
        "message": "You can only register models for a team you belong to.",
        "fields": {},
    }


def test_anonymous_requests_are_refused_with_401(api):
    response = api().get("/api/v1/models/")
    assert response.status_code == 401
    assert response.data["code"] == "not_authenticated"


def test_restricted_model_is_hidden_from_other_teams_until_access_is_granted(api, developer, owner, outsider):
    make_model(owner, name="secret", restricted=True)
    make_model(owner, name="open")
    assert [m["name"] for m in api(outsider).get("/api/v1/models/").data["results"]] == ["open"]
    assert api(outsider).get("/api/v1/models/secret/").status_code == 404

    response = api(owner).post("/api/v1/models/secret/access/", {"user": "outsider"}, format="json")
    assert response.status_code == 204
    assert api(outsider).get("/api/v1/models/secret/").status_code == 200
    assert AuditEvent.objects.filter(action="model.access_granted", model_name="secret").count() == 1

    api(owner).post("/api/v1/models/secret/access/revoke/", {"user": "outsider"}, format="json")
    assert api(outsider).get("/api/v1/models/secret/").status_code == 404


def test_governance_roles_and_auditors_see_restricted_models(api, owner, validator, auditor, risk_officer):
    make_model(owner, name="secret", restricted=True)
    for user in (validator, auditor, risk_officer):
        assert api(user).get("/api/v1/models/secret/").status_code == 200


def test_only_owner_or_risk_officer_grants_access(api, developer, owner):
    make_model(owner, name="secret", restricted=True)
    response = api(developer).post("/api/v1/models/secret/access/", {"user": "dev"}, format="json")
    assert response.status_code == 403
    assert "grant or revoke access" in response.data["message"]


def test_team_member_updates_description_and_tags_with_before_and_after_audited(api, developer, owner):
    make_model(owner, name="m1")
    response = api(developer).patch("/api/v1/models/m1/", {"description": "new", "tags": {"k": "v"}}, format="json")
    assert response.status_code == 200
    assert response.data["description"] == "new"
    event = AuditEvent.objects.get(action="model.updated")
    assert event.before == {"description": "", "tags": {}}
    assert event.after == {"description": "new", "tags": {"k": "v"}}


def test_outsider_cannot_update_a_model(api, owner, outsider):
    make_model(owner, name="m1")
    response = api(outsider).patch("/api/v1/models/m1/", {"description": "x"}, format="json")
    assert response.status_code == 403
    assert response.data["message"] == "Only the owner or the owning team (credit-risk) may change model m1."


def test_developer_cannot_reassign_ownership_but_owner_can(api, developer, owner):
    make_model(owner, name="m1")
    assert api(developer).patch("/api/v1/models/m1/", {"restricted": True}, format="json").status_code == 403
    response = api(owner).patch("/api/v1/models/m1/", {"owner": "dev"}, format="json")
    assert response.status_code == 200
    assert response.data["owner"] == "dev"


def test_owner_must_belong_to_the_owning_team(api, owner, outsider):
    make_model(owner, name="m1")
    response = api(owner).patch("/api/v1/models/m1/", {"owner": "outsider"}, format="json")
    assert response.status_code == 400
    assert "owner" in response.data["fields"]


def test_owner_must_be_an_active_user(api, owner, developer):
    """Notifications and sign-offs go to the owner: a deactivated account cannot be one."""
    make_model(owner, name="m1")
    developer.is_active = False
    developer.save(update_fields=["is_active"])
    model = make_model(owner, name="m2")
    with pytest.raises(ValidationFailed) as refused:  # as the admin's form calls it
        services.model_update(actor=owner, model=model, changes={"owner": developer})
    assert refused.value.fields == {"owner": ["the owner must be an active user"]}
    assert api(owner).patch("/api/v1/models/m1/", {"owner": "dev"}, format="json").status_code == 400


def test_model_tags_are_set_and_deleted_one_by_one(api, developer):
    make_model(developer, name="m1")
    response = api(developer).put("/api/v1/models/m1/tags/domain/", {"value": "credit"}, format="json")
    assert response.status_code == 200
    assert response.data["tags"] == {"domain": "credit"}
    assert api(developer).delete("/api/v1/models/m1/tags/domain/").data["tags"] == {}
    assert api(developer).delete("/api/v1/models/m1/tags/domain/").status_code == 404
    assert AuditEvent.objects.filter(action="model.updated").count() == 2


@pytest.mark.parametrize(
    "query, expected",
    [
        ("team=pricing", ["p1"]),
        ("owner=dev", ["c1", "c2"]),
        ("tag=domain", ["c1", "p1"]),
        ("tag=domain=credit", ["c1"]),
        ("search=C", ["c1", "c2"]),
        ("restricted=true", ["c2"]),
        ("status=active", ["c1", "c2", "p1"]),
    ],
)
def test_models_are_filtered(api, developer, outsider, risk_officer, query, expected):
    make_model(developer, name="c1", tags={"domain": "credit"})
    make_model(developer, name="c2", restricted=True)
    make_model(outsider, name="p1", team="pricing", tags={"domain": "pricing"})
    response = api(risk_officer).get(f"/api/v1/models/?{query}")
    assert response.status_code == 200, response.data
    assert [m["name"] for m in response.data["results"]] == expected


def test_bad_filter_value_is_a_400_naming_the_filter(api, developer):
    response = api(developer).get("/api/v1/models/?tier=9")
    assert response.status_code == 400
    assert "tier" in response.data["fields"]


def test_listing_models_costs_the_same_queries_at_10_and_100_rows(api, developer, django_assert_max_num_queries):
    for i in range(100):
        make_model(developer, name=f"m{i:03}", tags={"i": str(i)})
    client = api(developer)
    for size in (10, 100):
        with django_assert_max_num_queries(3):
            response = client.get(f"/api/v1/models/?page_size={size}")
        assert len(response.data["results"]) == size
