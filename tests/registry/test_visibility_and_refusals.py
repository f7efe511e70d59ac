"""Refusals at the edges: what a caller must never learn or do, and the exact answer they get."""

from __future__ import annotations

import base64
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from registry import services
from tests.conftest import on_postgres
from tests.factories import make_model, make_version


def test_a_parent_from_a_restricted_model_is_not_shown_to_those_who_cannot_see_it(api, owner, outsider, risk_officer):
    secret = make_version(owner, make_model(owner, name="secret", restricted=True))
    services.model_grant_access(actor=owner, model=secret.model, user=outsider)
    child = make_version(
        outsider, make_model(outsider, team="pricing", name="p1"), parents=[(secret, "fine_tuned_from")]
    )
    services.model_revoke_access(actor=owner, model=secret.model, user=outsider)

    assert api(outsider).get(f"/api/v1/versions/{child.pk}/").data["parents"] == []
    assert [p["model"] for p in api(risk_officer).get(f"/api/v1/versions/{child.pk}/").data["parents"]] == ["secret"]
    assert api(outsider).get(f"/api/v1/versions/{child.pk}/lineage/").data["hidden"] == 1
    for page in ("/api/v1/versions/", "/api/v1/models/p1/versions/"):  # lists read lineage apart
        seen = {v["id"]: [p["model"] for p in v["parents"]] for v in api(outsider).get(page).data["results"]}
        assert seen == {child.pk: []}
        seen = {v["id"]: [p["model"] for p in v["parents"]] for v in api(risk_officer).get(page).data["results"]}
        assert seen[child.pk] == ["secret"]


def test_a_hidden_version_and_a_missing_one_get_the_same_answer(api, owner, outsider):
    hidden = make_version(owner, make_model(owner, name="secret", restricted=True))
    make_model(outsider, team="pricing", name="p1")
    client = api(outsider)
    answers = [
        client.post(
            "/api/v1/models/p1/versions/",
            {"artifact_uri": "s3://x", "parents": [{"version_id": pk, "relation": "retrained_from"}]},
            format="json",
        ).data
        for pk in (hidden.pk, 999_999)
    ]
    assert answers[0]["fields"] == {"parents[0].version_id": [f"model version {hidden.pk} does not exist"]}
    assert answers[1]["fields"] == {"parents[0].version_id": ["model version 999999 does not exist"]}


def test_a_role_is_not_a_team(api, developer):
    response = api(developer).post(
        "/api/v1/models/", {"name": "m1", "team": "Model developers", "restricted": True}, format="json"
    )
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["team"]


def test_a_risk_officer_changes_a_models_restriction(api, developer, risk_officer):
    make_model(developer, name="m1")
    response = api(risk_officer).patch("/api/v1/models/m1/", {"restricted": True}, format="json")
    assert response.status_code == 200
    assert response.data["restricted"] is True


def test_fields_that_cannot_change_are_refused_by_name_not_ignored(api, developer):
    make_model(developer, name="m1")
    response = api(developer).patch("/api/v1/models/m1/", {"name": "renamed", "risk_tier": 1}, format="json")
    assert response.status_code == 400
    assert sorted(response.data["fields"]) == ["name", "risk_tier"]
    assert api(developer).get("/api/v1/models/m1/").status_code == 200


def test_deeply_nested_json_is_bad_input_not_a_server_error(api, developer):
    make_model(developer, name="m1")
    body = '{"artifact_uri": "s3://x", "parameters": ' + "[" * 50_000 + "]" * 50_000 + "}"
    response = api(developer).generic("POST", "/api/v1/models/m1/versions/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.data["code"] == "invalid"


def test_unknown_api_urls_answer_in_the_error_shape(api, developer):
    response = api(developer).get("/api/v1/nope/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No API endpoint at /api/v1/nope/.", "fields": {}}


def test_a_cursor_the_api_did_not_issue_is_a_400_naming_it(api, developer):
    response = api(developer).get("/api/v1/models/?cursor=garbage")
    assert response.status_code == 400
    assert response.data["fields"] == {"cursor": ["not a cursor this API returned"]}


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ("/api/v1/versions/", "notadate"),
        ("/api/v1/tokens/", "2026-02-30T10:00:00"),
        ("/api/v1/models/m1/versions/", "abc"),
        ("/api/v1/models/m1/history/", "abc"),
        ("/api/v1/models/", "a\x00b"),
    ],
)
def test_a_cursor_made_by_hand_is_a_400_naming_it(api, developer, path, position):
    """It decodes, but its position is none of the ordering's values: a date that is none,
    letters for a number, a NUL (which SQLite takes as text, and PostgreSQL refuses)."""
    make_version(developer, make_model(developer, name="m1"))
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
    response = api(developer).get(path, {"cursor": cursor})
    if "\x00" in position and not on_postgres():
        assert response.status_code == 200, response.data
        return
    assert response.status_code == 400, response.data
    assert response.data["fields"] == {"cursor": ["not a cursor this API returned"]}


def test_outsiders_get_403_before_any_lookup_on_aliases_and_tags(api, developer, outsider):
    make_version(developer, make_model(developer, name="m1"))
    client = api(outsider)
    assert client.put("/api/v1/models/m1/aliases/champion/", {"version": 77}, format="json").status_code == 403
    assert client.delete("/api/v1/models/m1/tags/nope/").status_code == 403
    assert client.delete("/api/v1/models/m1/versions/1/tags/nope/").status_code == 403


def test_revoking_access_that_was_never_granted_records_nothing(api, owner, outsider):
    make_model(owner, name="secret", restricted=True)
    before = AuditEvent.objects.count()
    response = api(owner).post("/api/v1/models/secret/access/revoke/", {"user": "outsider"}, format="json")
    assert response.status_code == 204
    assert AuditEvent.objects.count() == before


def test_a_token_cannot_mint_a_token_that_outlives_it(developer):
    short, secret = services.token_create(
        actor=developer, name="short", expires_at=timezone.now() + timedelta(minutes=5)
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    forever = client.post("/api/v1/tokens/", {"name": "forever"}, format="json")
    assert forever.status_code == 400
    assert list(forever.data["fields"]) == ["expires_at"]
    within = client.post(
        "/api/v1/tokens/",
        {"name": "within", "expires_at": (short.expires_at - timedelta(minutes=1)).isoformat()},
        format="json",
    )
    assert within.status_code == 201


def test_the_threshold_overrides_page_shows_only_the_models_one_may_see(owner, outsider, risk_officer):
    from monitoring import services as monitoring
    from tests.governance.test_admin import signed_in

    for model in (make_model(owner, name="secret", restricted=True), make_model(outsider, team="pricing", name="p1")):
        monitoring.thresholds_override(
            actor=risk_officer, model=model, measure="psi", warn=0.2, critical=0.3, reason=f"{model.name} is noisy"
        )
    for person, shown in ((outsider, ["p1"]), (risk_officer, ["p1", "secret"])):
        page = signed_in(person).get("/admin/monitoring/thresholdoverride/")
        assert page.status_code == 200
        assert [name for name in ("p1", "secret") if f">{name}<".encode() in page.content] == shown
