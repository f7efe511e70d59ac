from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from common import auth
from common.errors import TRY_AGAIN
from registry import services
from registry.models import RegisteredModel
from tests.concurrency import a_deadlock
from tests.conftest import on_postgres
from tests.factories import UserFactory, make_model

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


def _admin_sign_in(client: Client, password: str, address: str) -> bool:
    client.post("/admin/login/", {"username": "alice", "password": password}, REMOTE_ADDR=address)
    return "_auth_user_id" in client.session


def test_failures_from_one_ipv6_subnet_count_together(db):
    UserFactory(username="alice", is_staff=True)
    client = Client()
    for n in range(1, settings.LOGIN_FAILURE_LIMIT + 1):
        assert not _admin_sign_in(client, "wrong", f"2001:db8:0:1::{n}")
    assert not _admin_sign_in(client, PASSWORD, "2001:db8:0:1::ffff")
    assert _admin_sign_in(client, PASSWORD, "2001:db8:0:2::1")  # another subscriber's /64


def test_ipv4_clients_of_a_dual_stack_listener_count_apart(db):
    """They arrive as ::ffff:a.b.c.d: each is counted as its IPv4 address, not all as ::/64."""
    UserFactory(username="alice", is_staff=True)
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert not _admin_sign_in(client, "wrong", "::ffff:192.0.2.1")
    assert not _admin_sign_in(client, PASSWORD, "192.0.2.1")
    assert _admin_sign_in(client, PASSWORD, "::ffff:198.51.100.7")


def test_failures_from_many_addresses_are_capped_for_the_account(db, settings):
    settings.LOGIN_FAILURE_ACCOUNT_LIMIT = 8
    UserFactory(username="alice", is_staff=True)
    client = Client()
    for n in range(1, 9):
        assert not _admin_sign_in(client, "wrong", f"192.0.2.{n}")
    assert not _admin_sign_in(client, PASSWORD, "198.51.100.7")


def test_a_successful_sign_in_does_not_count_against_the_account(db, settings):
    settings.LOGIN_FAILURE_ACCOUNT_LIMIT = 2
    UserFactory(username="alice", is_staff=True)
    for _ in range(3):
        assert _admin_sign_in(Client(), PASSWORD, "192.0.2.1")
    assert not _admin_sign_in(Client(), "wrong", "192.0.2.2")
    assert _admin_sign_in(Client(), PASSWORD, "192.0.2.3")


def test_a_successful_sign_in_leaves_no_count_behind(db):
    """Its own attempt taken back, an account count at nothing is deleted, not kept (on Redis, a
    key brought back by a decrement has no expiry, and would count for ever)."""
    UserFactory(username="alice", is_staff=True)
    assert _admin_sign_in(Client(), PASSWORD, "192.0.2.1")
    assert cache.get(auth._key("alice")) is None and cache.get(auth._key("alice", "192.0.2.1")) is None


def test_unknown_urls_under_the_api_answer_404_in_the_error_shape(api, developer):
    response = api(developer).get("/api/v1/models/does-not-exist/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No model named 'does-not-exist'.", "fields": {}}


def test_every_response_carries_a_request_id_and_echoes_a_well_formed_one(api, developer):
    response = api(developer).get("/api/v1/me/", HTTP_X_REQUEST_ID="trace-123")
    assert response["X-Request-ID"] == "trace-123"
    generated = api(developer).get("/api/v1/me/", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert generated != "bad id with spaces" and len(generated) == 32
    generated = api(developer).get("/api/v1/me/", HTTP_X_REQUEST_ID="trace-123\n")["X-Request-ID"]
    assert generated != "trace-123" and len(generated) == 32


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


def test_a_form_with_more_fields_than_allowed_is_a_400_in_the_api_error_shape(api, developer):
    fields = "&".join(f"f{n}=x" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = api(developer).post("/api/v1/models/", fields, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "message": "The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS.",
        "fields": {},
    }


def test_a_body_longer_than_the_api_takes_is_a_413_before_it_is_read(api, developer, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    model = {"name": "m1", "team": "credit-risk"}
    long = {**model, "business_purpose": "x" * 2048}
    response = api(developer).post("/api/v1/models/", long, format="json")
    assert response.status_code == 413
    length = int(response.wsgi_request.META["CONTENT_LENGTH"])
    assert response.json() == {
        "code": "too_large",
        "message": f"The body is {length} bytes; this endpoint takes at most 2048 (DATA_UPLOAD_MAX_MEMORY_SIZE).",
        "fields": {},
    }
    form = api(developer).post("/api/v1/models/", long, format="multipart")
    assert form.status_code == 413
    urlencoded = "&".join(f"{k}={v}" for k, v in long.items())
    assert (
        api(developer).post("/api/v1/models/", urlencoded, content_type="application/x-www-form-urlencoded").status_code
        == 413
    )
    assert not RegisteredModel.objects.exists()
    assert api(developer).post("/api/v1/models/", model, format="json").status_code == 201


def test_only_monitoring_batches_may_be_longer_than_djangos_limit(api, developer):
    """A batch endpoint takes up to API_MAX_BODY_BYTES; any other refuses more than Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE before reading, so that no endpoint makes a worker hold 128 MiB."""
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    token = api(developer).post("/api/v1/tokens/", {"name": padding}, format="json")
    assert (token.status_code, token.json()["code"]) == (413, "too_large")
    rows = [{"key": padding, "model": "none", "version": 1, "metric": "m", "value": 1}]
    batch = api(developer).post("/api/v1/monitoring/observations/", {"observations": rows}, format="json")
    assert batch.status_code == 400 and "observations[0].key" in batch.json()["fields"]  # read, and judged


def test_the_largest_monitoring_batch_fits_in_the_default_body_limit():
    """1,000 distributions of 1,000 bins with labels of 100 characters (the most the API takes),
    counts as long floats, as json.dumps spaces them; measured on one and multiplied, rather
    than built."""
    distribution = {
        "model": "m" * 100,
        "version": 999_999_999,
        "key": "k" * 200,
        "feature": "f" * 100,
        "window_start": "2026-12-07T00:00:00.000000+00:00",
        "window_end": "2026-12-07T01:00:00.000000+00:00",
        "bins": [f"{n:0100d}" for n in range(1000)],
        "counts": [1.2345678901234567e300] * 1000,
    }
    one = len(json.dumps(distribution).encode())
    assert 1000 * one + 999 * len(", ") + len('{"distributions": []}') <= settings.API_MAX_BODY_BYTES


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's deadlock detection")
@pytest.mark.django_db(transaction=True)
def test_a_change_postgresql_rolled_back_for_a_deadlock_is_a_409_to_send_again(api, developer, owner, monkeypatch):
    """Two transactions that lock the same rows in opposite orders: PostgreSQL aborts one. The
    caller whose change was rolled back is told to send it again, not given a 500."""
    deadlock = a_deadlock(developer, owner)

    def rolled_back(**kwargs: Any) -> None:
        raise deadlock

    make_model(owner, name="m1")
    monkeypatch.setattr(services, "model_update", rolled_back)
    response = api(owner).patch("/api/v1/models/m1/", {"description": "d"}, format="json")
    assert response.status_code == 409
    assert response.data == {"code": "conflict", "message": TRY_AGAIN, "fields": {}}


@pytest.mark.parametrize(
    ("accept", "query", "answered_as"),
    [
        (None, "", "application/json"),
        ("*/*", "", "application/json"),
        ("application/json", "", "application/json"),
        ("text/html", "", "text/html; charset=utf-8"),
        ("*/*", "?format=api", "text/html; charset=utf-8"),
        ("*/*", "?owner=x&format=json", "application/json"),
    ],
)
def test_answers_come_in_the_type_asked_for(api, developer, accept, query, answered_as):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = api(developer).get(f"/api/v1/models/{query}", **headers)
    assert response.status_code == 200 and response["Content-Type"] == answered_as


def test_a_type_the_api_cannot_answer_in_is_a_406(api, developer):
    response = api(developer).get("/api/v1/models/", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406 and response.json()["code"] == "not_acceptable"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_a_json_body_is_read_whatever_its_stated_charset(api, developer, content_type):
    body = json.dumps({"name": "m1", "team": "credit-risk"})
    response = api(developer).post("/api/v1/models/", body, content_type=content_type)
    assert response.status_code == 201 and response.json()["name"] == "m1"


def test_a_body_of_another_type_is_a_415(api, developer):
    response = api(developer).post("/api/v1/models/", "name=m1", content_type="text/plain")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
