from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.db.models import ProtectedError

from audit.models import AuditEvent
from audit.services import audit_record
from audit.verify import INTACT, verify
from registry import services
from tests.factories import make_model


def test_every_registry_write_records_who_what_and_where(api, developer):
    response = api(developer).post(
        "/api/v1/models/", {"name": "m1", "team": "credit-risk"}, format="json", REMOTE_ADDR="10.1.2.3"
    )
    event = AuditEvent.objects.get()
    assert (event.actor_name, event.action, event.object_type, event.object_id) == (
        "dev",
        "model.registered",
        "registry.registeredmodel",
        str(response.data["id"]),
    )
    assert event.source_ip == "10.1.2.3"
    assert event.request_id == response["X-Request-ID"]
    assert event.occurred_at is not None


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [
        ("::ffff:10.1.2.3", "10.1.2.3"),  # an IPv4 client of a dual-stack listener
        ("::10.1.2.3", "10.1.2.3"),  # the old compatible form
        ("2001:DB8:0::1", "2001:db8::1"),
        ("::2", "::2"),
        ("fe80::1%eth0", "fe80::1"),  # a link-local peer: the zone is the server's, not the client's
    ],
)
@pytest.mark.django_db(transaction=True)
def test_a_source_address_is_hashed_as_the_database_gives_it_back(api, developer, sent, recorded):
    """Otherwise an intact row reads as tampered: PostgreSQL prints an address holding IPv4 in
    dotted form, and Python and Django each in their own."""
    api(developer).post("/api/v1/models/", {"name": "m1", "team": "credit-risk"}, format="json", REMOTE_ADDR=sent)
    event = AuditEvent.objects.get()
    assert event.source_ip == recorded
    assert json.loads(event.canonical)["source_ip"] == recorded
    assert verify().code == INTACT


def test_audit_events_cannot_be_changed_or_deleted_through_the_orm(developer):
    make_model(developer, name="m1")
    event = AuditEvent.objects.get()
    event.reason = "rewritten"
    with pytest.raises(TypeError, match="append-only"):
        event.save()
    with pytest.raises(TypeError, match="append-only"):
        event.delete()
    with pytest.raises(TypeError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(reason="x")
    with pytest.raises(TypeError, match="append-only"):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().reason == ""


@pytest.mark.django_db(transaction=True)
def test_audit_record_refuses_to_run_outside_a_transaction(developer):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_record(actor=developer, action="x.y", object_type="x", object_id=1)


def test_a_failed_change_leaves_neither_the_change_nor_its_event(developer):
    with pytest.raises(RuntimeError), transaction.atomic():
        make_model(developer, name="m1")
        raise RuntimeError("the caller's transaction fails after the service ran")
    assert not AuditEvent.objects.exists()


def test_a_refused_change_writes_no_event(api, developer, outsider):
    make_model(developer, name="m1")
    before = AuditEvent.objects.count()
    assert (
        api(outsider).post("/api/v1/models/m1/versions/", {"artifact_uri": "s3://x"}, format="json").status_code == 403
    )
    assert AuditEvent.objects.count() == before


def test_auditors_read_the_whole_trail_others_only_their_own_actions(api, developer, outsider, auditor):
    make_model(developer, name="m1")
    make_model(outsider, name="p1", team="pricing")
    assert {e["model_name"] for e in api(auditor).get("/api/v1/audit-events/").data["results"]} == {"m1", "p1"}
    assert [e["model_name"] for e in api(outsider).get("/api/v1/audit-events/").data["results"]] == ["p1"]


def test_the_trail_is_read_only_over_the_api(api, auditor):
    response = api(auditor).post("/api/v1/audit-events/", {}, format="json")
    assert response.status_code == 405
    assert response.data["code"] == "method_not_allowed"


def test_model_history_is_shown_to_whoever_may_see_the_model(api, developer, owner, outsider):
    model = make_model(developer, name="m1")
    services.model_update(actor=owner, model=model, changes={"description": "d"})
    response = api(outsider).get("/api/v1/models/m1/history/")
    assert response.status_code == 200
    assert [e["action"] for e in response.data["results"]] == ["model.updated", "model.registered"]
    services.model_update(actor=developer, model=model, changes={"restricted": True})
    assert api(outsider).get("/api/v1/models/m1/history/").status_code == 404


def test_audit_events_are_filtered(api, developer, auditor):
    make_model(developer, name="m1")
    make_model(developer, name="m2")
    response = api(auditor).get("/api/v1/audit-events/?model_name=m2&action=model.registered")
    assert [e["model_name"] for e in response.data["results"]] == ["m2"]
    assert api(auditor).get("/api/v1/audit-events/?occurred_after=not-a-date").status_code == 400


def test_the_model_filter_follows_a_model_across_renames_as_the_export_does(api, developer, auditor):
    model = make_model(developer, name="scorecard")
    services.model_rename(actor=developer, model=model, new_name="credit-card")
    make_model(developer, name="scorecard")  # another model takes the freed name

    def actions(**params):
        return [
            (e["action"], e["model_name"]) for e in api(auditor).get("/api/v1/audit-events/", params).data["results"]
        ]

    assert actions(model="credit-card") == [("model.renamed", "credit-card"), ("model.registered", "scorecard")]
    assert actions(model="scorecard") == [("model.registered", "scorecard")]
    assert len(actions(model_name="scorecard")) == 2  # the literal name: both models' registrations


def test_the_actor_filter_follows_the_user_not_the_name_they_had(api, developer, outsider, auditor):
    """As the export's does: a rename keeps a user's events, and a name taken later brings none."""
    make_model(developer, name="m1")
    developer.username = "dev.renamed"
    developer.save(update_fields=["username"])
    outsider.username = "dev"
    outsider.save(update_fields=["username"])
    make_model(outsider, team="pricing", name="p1")

    def models_by(actor):
        response = api(auditor).get("/api/v1/audit-events/", {"actor": actor, "action": "model.registered"})
        return response.status_code, [e["model_name"] for e in response.data.get("results", [])]

    assert models_by("dev.renamed") == (200, ["m1"])
    assert models_by("dev") == (200, ["p1"])
    audit_record(actor=None, action="audit.checkpoint", object_type="audit.checkpoint", object_id="1")
    system = api(auditor).get("/api/v1/audit-events/", {"actor": "system"})
    assert [(e["actor_name"], e["action"]) for e in system.data["results"]] == [("system", "audit.checkpoint")]
    refused = api(auditor).get("/api/v1/audit-events/", {"actor": "nobody"})
    assert (refused.status_code, refused.data["fields"]) == (400, {"actor": ["there is no user 'nobody'"]})


def test_listing_the_trail_costs_the_same_queries_at_10_and_100_rows(
    api, developer, auditor, django_assert_max_num_queries
):
    for i in range(100):
        make_model(developer, name=f"m{i}")
    client = api(auditor)
    for size in (10, 100):
        with django_assert_max_num_queries(2):
            response = client.get(f"/api/v1/audit-events/?page_size={size}")
        assert len(response.data["results"]) == size


def test_one_event_is_read_by_its_sequence_number(api, developer, outsider, auditor):
    make_model(developer, name="m1")
    response = api(auditor).get("/api/v1/audit-events/1/")
    assert response.status_code == 200
    assert (response.data["seq"], response.data["action"]) == (1, "model.registered")
    assert api(outsider).get("/api/v1/audit-events/1/").status_code == 404  # not theirs to read
    assert api(auditor).get("/api/v1/audit-events/first/").json()["code"] == "not_found"


def test_model_history_refuses_a_bad_cursor(api, developer):
    make_model(developer, name="m1")
    response = api(developer).get("/api/v1/models/m1/history/?cursor=bogus")
    assert response.status_code == 400
    assert list(response.data["fields"]) == ["cursor"]


def test_only_the_owner_or_a_risk_officer_revokes_access(api, owner, developer, outsider):
    make_model(owner, name="secret", restricted=True)
    api(owner).post("/api/v1/models/secret/access/", {"user": "outsider"}, format="json")
    response = api(developer).post("/api/v1/models/secret/access/revoke/", {"user": "outsider"}, format="json")
    assert response.status_code == 403
    assert api(outsider).get("/api/v1/models/secret/").status_code == 200


def test_me_needs_a_signed_in_user(api):
    assert api().get("/api/v1/me/").status_code == 401


def test_a_user_the_trail_names_cannot_be_deleted(developer):
    make_model(developer, name="m1")
    with pytest.raises(ProtectedError):
        developer.delete()
    assert AuditEvent.objects.get().actor_id == developer.pk
