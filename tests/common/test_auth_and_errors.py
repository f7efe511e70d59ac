from __future__ import annotations

from django.conf import settings
from django.test import Client

from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"


def test_failed_sign_ins_are_throttled_even_with_the_right_password_after_the_limit(db):
    UserFactory(username="alice", is_staff=True)
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert not client.login(username="alice", password="wrong")
    assert not client.login(username="alice", password=PASSWORD)


def test_a_successful_sign_in_resets_the_failure_count(db):
    UserFactory(username="alice")
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        client.login(username="alice", password="wrong")
    assert client.login(username="alice", password=PASSWORD)
    assert not client.login(username="alice", password="wrong")
    assert client.login(username="alice", password=PASSWORD)


def test_the_admin_sign_in_page_says_it_refused_a_throttled_user(db):
    UserFactory(username="alice", is_staff=True)
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "alice", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200  # the form again, not a redirect into the admin
    assert "_auth_user_id" not in client.session


def test_unknown_urls_under_the_api_answer_404_in_the_error_shape(api, developer):
    response = api(developer).get("/api/v1/models/does-not-exist/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No model named 'does-not-exist'.", "fields": {}}


def test_every_response_carries_a_request_id_and_echoes_a_well_formed_one(api, developer):
    response = api(developer).get("/api/v1/me/", HTTP_X_REQUEST_ID="trace-123")
    assert response["X-Request-ID"] == "trace-123"
    generated = api(developer).get("/api/v1/me/", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert generated != "bad id with spaces" and len(generated) == 32


def test_me_lists_roles_and_teams(api, developer):
    assert api(developer).get("/api/v1/me/").json() == {
        "username": "dev",
        "roles": ["Model developers"],
        "teams": ["credit-risk"],
    }


def test_health_reports_the_database_and_the_broker_as_configured(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    if settings.REDIS_URL:
        assert body["broker"] == "ok"
    else:
        assert body["broker"].startswith("not configured")


def test_api_docs_and_schema_load(client, db):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
