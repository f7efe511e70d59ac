from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from common.errors import PermissionDenied
from common.roles import Role
from registry import services
from registry.models import ApiToken
from tests.factories import UserFactory


def _bearer(secret: str) -> APIClient:
    """A client that signs in the way a script does: with the token, nothing else."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_token_secret_is_shown_once_and_only_its_hash_is_stored(api, developer):
    response = api(developer).post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201, response.data
    secret = response.data["token"]
    assert secret.startswith("wdn_")
    assert len(secret) > 40
    assert response.data["prefix"] == secret[:12]
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest() != secret
    assert not [name for name, value in ApiToken.objects.values().get().items() if secret in str(value)]
    assert "token" not in api(developer).get(f"/api/v1/tokens/{token.pk}/").data
    assert [t["name"] for t in api(developer).get("/api/v1/tokens/").data["results"]] == ["ci"]


def test_token_creation_is_audited_without_the_secret(api, developer):
    secret = api(developer).post("/api/v1/tokens/", {"name": "ci"}, format="json").data["token"]
    event = AuditEvent.objects.get(action="token.created")
    assert (event.actor, event.object_id) == (developer, str(ApiToken.objects.get().pk))
    assert (event.after["user"], event.after["name"], event.after["prefix"]) == (developer.username, "ci", secret[:12])
    assert secret not in str(event.after)


def test_the_command_makes_a_token_for_a_user_and_the_trail_names_whoever_ran_it(developer):
    out = io.StringIO()
    call_command("token_create", developer.username, "ci-pipeline", stdout=out)
    assert _bearer(out.getvalue().strip()).get("/api/v1/me/").data["username"] == developer.username
    event = AuditEvent.objects.get(action="token.created")
    assert (event.actor_id, event.actor_name, event.after["user"]) == (None, "system", developer.username)
    assert event.reason.startswith("manage.py token_create, run by ") and " on " in event.reason


def test_a_token_is_made_only_for_the_one_who_asks_and_with_their_own_token(developer, owner):
    with pytest.raises(PermissionDenied, match="for the one who asks"):
        services.token_create(actor=developer, owner=owner, name="ci")
    theirs, _ = services.token_create(actor=owner, name="ci")
    with pytest.raises(PermissionDenied, match="with a token of its own user"):
        services.token_create(actor=developer, name="spare", via=theirs)
    assert list(ApiToken.objects.values_list("user__username", flat=True)) == [owner.username]


def test_an_inactive_user_gets_no_token(developer):
    developer.is_active = False
    developer.save()
    with pytest.raises(PermissionDenied, match="inactive"):
        services.token_create(actor=developer, name="ci")
    with pytest.raises(CommandError, match="inactive"):
        call_command("token_create", developer.username, "ci")
    assert not ApiToken.objects.exists()


def test_bearer_token_signs_the_user_in_and_records_its_use(developer):
    token, secret = services.token_create(actor=developer, name="ci")
    assert token.last_used_at is None
    response = _bearer(secret).get("/api/v1/me/")
    assert response.status_code == 200
    assert response.data["username"] == "dev"
    assert response.data["teams"] == ["credit-risk"]
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_token_brings_its_users_roles_and_teams_and_a_change_shows_on_the_next_request(developer):
    _, secret = services.token_create(actor=developer, name="ci")
    client = _bearer(secret)
    client.get("/api/v1/me/")  # records the token's use
    with CaptureQueriesContext(connection) as queries:
        answer = client.get("/api/v1/me/").data
    assert (answer["roles"], answer["teams"]) == ([Role.MODEL_DEVELOPER], ["credit-risk"])
    assert len(queries) == 2  # the token with its user's groups; the teams' names
    developer.groups.remove(Group.objects.get(name="credit-risk"))
    developer.groups.add(Group.objects.get(name=Role.VALIDATOR))
    answer = client.get("/api/v1/me/").data
    assert (answer["roles"], answer["teams"]) == ([Role.MODEL_DEVELOPER, Role.VALIDATOR], [])
    response = client.post("/api/v1/models/", {"name": "m1", "team": "credit-risk"}, format="json")
    assert response.status_code == 403, response.data
    _, secret = services.token_create(actor=UserFactory(username="nobody"), name="ci")
    answer = _bearer(secret).get("/api/v1/me/").data
    assert (answer["username"], answer["roles"], answer["teams"]) == ("nobody", [], [])


def test_a_script_can_register_a_model_with_a_token_and_is_the_actor(developer):
    _, secret = services.token_create(actor=developer, name="ci")
    response = _bearer(secret).post("/api/v1/models/", {"name": "m1", "team": "credit-risk"}, format="json")
    assert response.status_code == 201, response.data
    assert AuditEvent.objects.get(action="model.registered").actor == developer


def test_a_revoked_token_no_longer_signs_in(api, developer):
    token, secret = services.token_create(actor=developer, name="ci")
    client = _bearer(secret)
    assert client.get("/api/v1/me/").status_code == 200
    response = client.delete(f"/api/v1/tokens/{token.pk}/")
    assert response.status_code == 200
    assert response.data["revoked_at"] is not None
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.data == {"code": "not_authenticated", "message": "Invalid or revoked token.", "fields": {}}
    assert response["WWW-Authenticate"] == 'Bearer realm="warden"'
    event = AuditEvent.objects.get(action="token.revoked")
    assert (event.actor, event.after["name"]) == (developer, "ci")


def test_revoking_a_token_revokes_the_tokens_made_with_it(api, developer):
    """Whoever holds a leaked token cannot keep a way in by minting another with it first."""
    leaked, secret = services.token_create(actor=developer, name="ci")
    made = _bearer(secret).post("/api/v1/tokens/", {"name": "spare"}, format="json")
    assert made.status_code == 201, made.data
    grandchild = _bearer(made.data["token"]).post("/api/v1/tokens/", {"name": "spare-2"}, format="json")
    assert grandchild.status_code == 201, grandchild.data
    _, unrelated = services.token_create(actor=developer, name="laptop")

    assert api(developer).delete(f"/api/v1/tokens/{leaked.pk}/").status_code == 200

    for secret_ in (secret, made.data["token"], grandchild.data["token"]):
        assert _bearer(secret_).get("/api/v1/me/").status_code == 401
    assert _bearer(unrelated).get("/api/v1/me/").status_code == 200
    events = AuditEvent.objects.filter(action="token.revoked").order_by("seq")
    assert [(e.after["name"], e.reason) for e in events] == [
        ("ci", ""),
        ("spare", f"made with token {leaked.prefix}…, revoked"),
        ("spare-2", f"made with token {leaked.prefix}…, revoked"),
    ]


def test_a_revoked_token_makes_no_token(developer):
    leaked, _ = services.token_create(actor=developer, name="ci")
    services.token_revoke(actor=developer, token=leaked)
    with pytest.raises(PermissionDenied, match="The token this request was made with is revoked"):
        services.token_create(actor=developer, name="spare", via=leaked)


def test_revoking_twice_is_harmless_and_audited_once(api, developer):
    token, _ = services.token_create(actor=developer, name="ci")
    client = api(developer)
    first = client.delete(f"/api/v1/tokens/{token.pk}/").data["revoked_at"]
    assert client.delete(f"/api/v1/tokens/{token.pk}/").data["revoked_at"] == first
    assert AuditEvent.objects.filter(action="token.revoked").count() == 1


def test_an_expired_token_is_refused(developer, monkeypatch):
    now = timezone.now()
    _, secret = services.token_create(actor=developer, name="ci", expires_at=now + timedelta(hours=1))
    assert _bearer(secret).get("/api/v1/me/").status_code == 200
    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(hours=2))  # the clock moves past the expiry
    response = _bearer(secret).get("/api/v1/me/")
    assert response.status_code == 401
    assert response.data["code"] == "not_authenticated"
    assert "expired" in response.data["message"]


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer wdn_one wdn_two", "Bearer wdn_not-a-real-token", "Token wdn_not-a-real-token", "Bearer wdn_é"],
)
def test_a_malformed_or_unknown_token_is_refused(developer, header):
    services.token_create(actor=developer, name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.data["code"] == "not_authenticated"
    assert set(response.data) == {"code", "message", "fields"}


def test_a_token_of_an_inactive_user_is_refused(developer):
    _, secret = services.token_create(actor=developer, name="ci")
    developer.is_active = False
    developer.save()
    response = _bearer(secret).get("/api/v1/me/")
    assert response.status_code == 401
    assert response.data["message"] == "This token's user is inactive."


def test_you_cannot_see_or_revoke_another_users_token(api, developer, owner):
    token, secret = services.token_create(actor=owner, name="ci")
    client = api(developer)
    assert client.get("/api/v1/tokens/").data["results"] == []
    assert client.get(f"/api/v1/tokens/{token.pk}/").status_code == 404
    response = client.delete(f"/api/v1/tokens/{token.pk}/")
    assert response.status_code == 404
    assert response.data == {"code": "not_found", "message": "No such token.", "fields": {}}
    token.refresh_from_db()
    assert token.revoked_at is None
    assert _bearer(secret).get("/api/v1/me/").status_code == 200


def test_a_risk_officer_revokes_another_users_token(developer, risk_officer):
    token, secret = services.token_create(actor=developer, name="ci")
    services.token_revoke(actor=risk_officer, token=token)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert _bearer(secret).get("/api/v1/me/").status_code == 401
    event = AuditEvent.objects.get(action="token.revoked")
    assert (event.actor, event.after["user"]) == (risk_officer, developer.username)


def test_a_developer_cannot_revoke_another_users_token_through_the_service(developer, owner):
    token, _ = services.token_create(actor=owner, name="ci")
    with pytest.raises(PermissionDenied, match=r"^You can only revoke your own tokens\.$"):
        services.token_revoke(actor=developer, token=token)
    token.refresh_from_db()
    assert token.revoked_at is None


def test_a_second_active_token_with_the_same_name_is_a_conflict(api, developer):
    token, _ = services.token_create(actor=developer, name="ci")
    client = api(developer)
    response = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 409
    assert response.data["fields"] == {"name": ["you already have an active token named 'ci'"]}
    services.token_revoke(actor=developer, token=token)
    assert client.post("/api/v1/tokens/", {"name": "ci"}, format="json").status_code == 201


def test_another_user_may_use_the_same_token_name(api, developer, owner):
    services.token_create(actor=owner, name="ci")
    assert api(developer).post("/api/v1/tokens/", {"name": "ci"}, format="json").status_code == 201


def test_expiry_in_the_past_is_refused(api, developer):
    yesterday = timezone.now() - timedelta(days=1)
    response = api(developer).post(
        "/api/v1/tokens/", {"name": "ci", "expires_at": yesterday.isoformat()}, format="json"
    )
    assert response.status_code == 400
    assert response.data["fields"] == {"expires_at": ["must be in the future"]}
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_token_needs_a_name(api, developer, name):
    response = api(developer).post("/api/v1/tokens/", {"name": name}, format="json")
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["name"]
    assert not ApiToken.objects.exists()


def test_anonymous_users_cannot_create_tokens(api, db):
    response = api().post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 401
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("responder", ["risk_officer", "admin_user"])
def test_a_risk_officer_or_a_superuser_finds_and_revokes_another_users_token_through_the_api(
    request, api, developer, owner, responder
):
    leaked, secret = services.token_create(actor=developer, name="ci")
    services.token_create(actor=owner, name="ci")
    responder = request.getfixturevalue(responder)
    client = api(responder)
    listed = client.get("/api/v1/tokens/", {"user": developer.username, "revoked": "false"}).data["results"]
    assert [(token["id"], token["name"], token["user"]) for token in listed] == [(leaked.pk, "ci", developer.username)]
    assert {token["user"] for token in client.get("/api/v1/tokens/").data["results"]} == {
        developer.username,
        owner.username,
    }

    response = client.delete(f"/api/v1/tokens/{leaked.pk}/")

    assert response.status_code == 200, response.data
    assert response.data["revoked_at"] is not None
    assert _bearer(secret).get("/api/v1/me/").status_code == 401
    event = AuditEvent.objects.get(action="token.revoked")
    assert (event.actor, event.after["user"]) == (responder, developer.username)
    assert client.get("/api/v1/tokens/", {"user": developer.username, "revoked": "false"}).data["results"] == []


def test_your_tokens_say_they_are_yours(api, developer):
    services.token_create(actor=developer, name="ci")
    (token,) = api(developer).get("/api/v1/tokens/").data["results"]
    assert token["user"] == developer.username
