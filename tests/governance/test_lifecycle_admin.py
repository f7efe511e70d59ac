"""The kill switch and decommissioning in the admin, as a risk officer and a developer see them."""

from __future__ import annotations

from audit.models import AuditEvent
from governance import services
from registry.models import VersionState
from tests.factories import approved
from tests.governance.test_admin import signed_in

VERSIONS = "/admin/registry/modelversion/"


def test_a_risk_officer_suspends_a_version_from_the_list_giving_a_reason(developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    client = signed_in(risk_officer)
    form = {"action": "suspend_versions", "_selected_action": [version.pk]}

    asked = client.post(VERSIONS, form)
    assert asked.status_code == 200
    assert b"Reason (required" in asked.content and str(version).encode() in asked.content
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED

    without_reason = client.post(VERSIONS, {**form, "apply": "Suspend", "reason": " "})
    assert b"A reason is required." in without_reason.content

    done = client.post(VERSIONS, {**form, "apply": "Suspend", "reason": "scores drifted overnight"}, follow=True)
    assert f"Suspended: {version}.".encode() in done.content
    version.refresh_from_db()
    assert version.state == VersionState.SUSPENDED
    event = AuditEvent.objects.get(action="version.state_changed", object_id=str(version.pk), after__state="suspended")
    assert (event.actor_name, event.reason) == ("risk", "scores drifted overnight")


def test_a_developer_is_told_only_risk_officers_suspend(developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    form = {"action": "suspend_versions", "_selected_action": [version.pk], "apply": "Suspend", "reason": "why not"}
    refused = signed_in(owner).post(VERSIONS, form, follow=True)
    assert b"Only a risk officer suspends a version." in refused.content
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED


def test_the_owner_deprecates_a_version_from_the_list_giving_a_reason(developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    form = {"action": "deprecate_versions", "_selected_action": [version.pk]}
    asked = signed_in(owner).post(VERSIONS, form)
    assert b"Deprecating takes these versions out of use for good" in asked.content

    done = signed_in(owner).post(VERSIONS, {**form, "apply": "Deprecate", "reason": "superseded"}, follow=True)
    assert f"Deprecated: {version}.".encode() in done.content
    version.refresh_from_db()
    assert version.state == VersionState.DEPRECATED


def test_the_decommission_request_page_shows_its_impact(developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    production = services.gate.environment_named("production")
    services.deployment_record(actor=owner, version=version, environment=production, endpoint="svc/scoring")
    request = services.request_open(
        actor=owner, kind="decommission", model=version.model, version=version, rationale="superseded"
    )
    page = signed_in(risk_officer).get(f"/admin/governance/approvalrequest/{request.pk}/change/")
    assert page.status_code == 200
    assert f"Decommission of v{version.number} of {version.model.name}".encode() in page.content
    assert b"v1 in production (svc/scoring)" in page.content
