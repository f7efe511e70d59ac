"""Point-in-time answers from the trail: where production pointed, what ran where, and the
inventory as it stood."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from governance import services
from governance.models import Environment
from registry import services as registry_services
from tests.factories import ASSESSMENTS, make_model, make_version, submitted


def approve(request, risk_officer):
    services.decision_record(actor=risk_officer, request=request, outcome="approve")


def test_what_production_pointed_to_at_any_time(api, developer, owner, risk_officer):
    v1, r1 = submitted(developer, owner, 4)
    approve(r1, risk_officer)
    model = v1.model
    v2 = registry_services.version_create(actor=developer, model=model, artifact_uri="s3://2", artifact_sha256="c" * 64)
    approve(services.request_submit(actor=owner, version=v2), risk_officer)
    registry_services.alias_set(actor=developer, model=model, name="production", number=1)
    first = AuditEvent.objects.filter(action="alias.set").latest("seq")
    registry_services.alias_set(actor=developer, model=model, name="production", number=2)
    second = AuditEvent.objects.filter(action="alias.set").latest("seq")
    registry_services.alias_delete(actor=developer, alias=model.aliases.get(name="production"))
    gone = AuditEvent.objects.filter(action="alias.deleted").latest("seq")

    def at(moment):
        response = api(owner).get(
            f"/api/v1/history/alias/?model={model.name}&alias=production&at={moment.isoformat().replace('+', '%2B')}"
        )
        assert response.status_code == 200, response.data
        return response.data["version"], response.data["event_seq"]

    assert at(first.occurred_at - timedelta(seconds=1)) == (None, None)
    assert at(first.occurred_at) == (1, first.seq)
    assert at(second.occurred_at) == (2, second.seq)
    assert at(gone.occurred_at) == (None, gone.seq)


def test_what_ran_where_at_a_time(api, developer, owner, risk_officer):
    version, request = submitted(developer, owner, 4)
    approve(request, risk_officer)
    deployment = services.deployment_record(
        actor=developer, version=version, environment=Environment.objects.get(name="production")
    )
    services.deployment_retire(actor=developer, deployment=deployment, reason="replaced")
    deployment.refresh_from_db()

    def live(moment):
        response = api(owner).get(f"/api/v1/history/deployments/?at={moment.isoformat().replace('+', '%2B')}")
        assert response.status_code == 200
        return [(d["model"], d["version"], d["environment"]) for d in response.data]

    assert live(deployment.deployed_at - timedelta(seconds=1)) == []
    assert live(deployment.deployed_at) == [(version.model.name, 1, "production")]
    assert live(deployment.retired_at) == []


def test_the_inventory_as_of_a_date_shows_tiers_and_states_then(api, developer, owner, risk_officer):
    version, request = submitted(developer, owner, 4)
    submitted_at = AuditEvent.objects.filter(action="version.state_changed").latest("seq").occurred_at
    approve(request, risk_officer)

    def inventory(moment):
        response = api(risk_officer).get(f"/api/v1/history/inventory/?at={moment.isoformat().replace('+', '%2B')}")
        assert response.status_code == 200, response.data
        return {row["model"]: (row["tier"], row["versions"]) for row in response.data}

    assert inventory(submitted_at)[version.model.name] == (4, {"1": "submitted"})
    today = api(risk_officer).get(f"/api/v1/history/inventory/?at={submitted_at.date().isoformat()}").data
    assert {r["model"]: r["versions"] for r in today}[version.model.name] == {"1": "approved"}
    assert api(risk_officer).get("/api/v1/history/inventory/?at=yesterday").status_code == 400
    assert api(risk_officer).get("/api/v1/history/inventory/").status_code == 400


@pytest.mark.parametrize("at", ["yesterday", "2026-02-30", "2026-01-01T25:00:00", "0001-01-01T00:00+01:00"])
@pytest.mark.parametrize("endpoint", ["alias/?model=m&alias=production&", "deployments/?", "inventory/?"])
def test_a_time_that_is_none_is_a_400_naming_at(api, developer, risk_officer, endpoint, at):
    make_model(developer, name="m")
    response = api(risk_officer).get(f"/api/v1/history/{endpoint}at={at.replace('+', '%2B')}")
    assert response.status_code == 400, response.data
    assert response.data["fields"] == {"at": ["an ISO 8601 time (2026-11-27T12:00:00Z) or date (2026-11-27)"]}
    # the last day there is: the end of it, which is now
    assert api(risk_officer).get(f"/api/v1/history/{endpoint}at=9999-12-31").status_code == 200


@pytest.mark.django_db(transaction=True)  # the alias is set and the model renamed in transactions of their own
def test_a_renamed_model_keeps_its_past_and_one_given_its_old_name_takes_none_of_it(
    api, developer, owner, outsider, risk_officer
):
    old = make_model(owner, name="x")
    answers, flags = ASSESSMENTS[2]
    services.assessment_record(actor=owner, model=old, answers=answers, flags=flags)
    make_version(developer, old)
    registry_services.alias_set(actor=developer, model=old, name="candidate", number=1)
    registry_services.model_rename(actor=owner, model=old, new_name="y")
    new = make_model(outsider, team="pricing", name="x")
    now = timezone.now().isoformat().replace("+", "%2B")

    def alias(name):
        return api(risk_officer).get(f"/api/v1/history/alias/?model={name}&alias=candidate&at={now}").data["version"]

    assert (alias("x"), alias("y")) == (None, 1)
    rows = api(risk_officer).get(f"/api/v1/history/inventory/?at={now}").data
    assert {r["model"]: (r["tier"], r["versions"]) for r in rows} == {"x": (None, {}), "y": (2, {"1": "draft"})}
    assert new.pk != old.pk
