"""The bypass guard on governance's tables (PostgreSQL): decisions, request states and
deployments change only with their audit event."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from governance import services
from governance.models import ApprovalRequest, Decision, Deployment, Environment
from registry.models import ModelVersion
from tests.conftest import on_postgres
from tests.factories import approved, assessed_model, submitted

pytestmark = [
    pytest.mark.skipif(not on_postgres(), reason="the guard is PostgreSQL's constraint triggers"),
    pytest.mark.django_db(transaction=True),
]


def test_approving_a_request_with_an_update_fails_at_commit(developer, owner):
    _, request = submitted(developer, owner, 4)
    refused = pytest.raises(
        DatabaseError, match=r"governance\.approvalrequest \d+ was written .* without an audit event"
    )
    with refused, transaction.atomic():
        ApprovalRequest.objects.filter(pk=request.pk).update(state="approved")
    assert ApprovalRequest.objects.get(pk=request.pk).state == "open"


def test_letting_a_request_off_being_a_check_with_an_update_fails_at_commit(owner, risk_officer):
    model = assessed_model(owner, 3)
    request = services.tier_override_request(actor=risk_officer, model=model, tier=1, rationale="feeds capital")
    refused = pytest.raises(
        DatabaseError, match=r"governance\.approvalrequest \d+ was written .* without an audit event"
    )
    with refused, transaction.atomic():
        ApprovalRequest.objects.filter(pk=request.pk).update(opened_as_check=False)
    assert ApprovalRequest.objects.get(pk=request.pk).opened_as_check is True


def test_a_decision_inserted_outside_the_services_fails_at_commit(developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    refused = pytest.raises(DatabaseError, match=r"governance\.decision \d+ was written .* without an audit event")
    with refused, transaction.atomic():
        Decision.objects.create(request=request, stage=request.stages.get(), person=risk_officer, outcome="approve")
    assert not Decision.objects.exists()


def test_the_services_satisfy_the_guard(developer, owner, risk_officer):
    _, request = submitted(developer, owner, 4)
    with transaction.atomic():
        services.decision_record(actor=risk_officer, request=request, outcome="approve")
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert ApprovalRequest.objects.get(pk=request.pk).state == "approved"


def test_deployments_recorded_or_retired_outside_the_services_fail_at_commit(developer, owner, risk_officer):
    version, _ = approved(developer, owner, risk_officer)
    production = Environment.objects.get(name="production")
    refused = pytest.raises(DatabaseError, match=r"governance\.deployment \d+ was written .* without an audit event")
    with refused, transaction.atomic():
        Deployment.objects.create(version=version, environment=production, deployed_by=owner)
    assert not Deployment.objects.exists()

    deployment = services.deployment_record(actor=owner, version=version, environment=production)
    with refused, transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(retired_at=timezone.now())
    assert Deployment.objects.get(pk=deployment.pk).retired_at is None


def test_another_event_about_the_version_does_not_stand_for_its_new_state(developer, owner):
    from registry import services as registry_services

    version, _ = submitted(developer, owner, 4)
    refused = pytest.raises(DatabaseError, match=r"model version \d+ changed state to approved without an audit event")
    with refused, transaction.atomic():
        registry_services.version_update(actor=developer, version=version, set_tags={"reviewed": "yes"})
        ModelVersion.objects.filter(pk=version.pk).update(state="approved")
    assert ModelVersion.objects.get(pk=version.pk).state == "submitted"


def test_a_temporary_table_named_as_the_trail_does_not_stand_in_for_it(developer, owner):
    """A session's temporary tables come first in its search path: a pending 'event' written to
    one must not satisfy the guard, nor an append go there instead of the trail."""
    version, _ = submitted(developer, owner, 4)
    connection.close()  # a fresh session: its functions have planned nothing yet
    refused = pytest.raises(DatabaseError, match=r"model version \d+ changed state to approved without an audit event")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE audit_pending (txid bigint, object_type text, object_id text) ON COMMIT DROP")
        cursor.execute(
            "INSERT INTO audit_pending VALUES (txid_current(), 'registry.modelversion', %s)", [str(version.pk)]
        )
        ModelVersion.objects.filter(pk=version.pk).update(state="approved")
    assert ModelVersion.objects.get(pk=version.pk).state == "submitted"


def test_a_validator_assigned_or_access_given_outside_the_services_fails_at_commit(
    developer, owner, risk_officer, validator, teams
):
    """Who may validate a model, or see a restricted one, is a grant of power: given with
    django-guardian directly (or by raw SQL) it fails at commit; through Warden it commits with
    its event."""
    from guardian.shortcuts import assign_perm, get_users_with_perms

    from governance import policies
    from registry import policies as registry_policies
    from registry import services as registry_services

    model = assessed_model(owner, 4)
    given = pytest.raises(DatabaseError, match=r"a permission on (registry\.registeredmodel|auth\.group) \d+ was given")
    with given, transaction.atomic():
        assign_perm(f"registry.{policies.VALIDATE_MODEL}", validator, model)
    with given, transaction.atomic():  # an event of another kind about the model does not stand for it
        registry_services.model_update(actor=owner, model=model, changes={"description": "reviewed"})
        assign_perm(f"registry.{policies.VALIDATE_MODEL}", validator, model)
    with given, transaction.atomic():
        assign_perm(f"auth.{policies.VALIDATE_TEAM}", validator, teams["credit-risk"])
    with given, transaction.atomic():
        assign_perm(registry_policies.VIEW_PERMISSION, developer, model)
    with given, transaction.atomic():
        assign_perm(registry_policies.VIEW_PERMISSION, teams["pricing"], model)
    assert list(get_users_with_perms(model, with_group_users=False)) == []

    services.validator_assign(actor=risk_officer, validator=validator, model=model)
    services.validator_assign(actor=risk_officer, validator=validator, team=teams["credit-risk"])
    registry_services.model_grant_access(actor=owner, model=model, group=teams["pricing"])
    assert policies.is_assigned_validator(validator, model)

    moved = pytest.raises(DatabaseError, match=r"a permission on registry\.registeredmodel \d+ was moved")
    with moved, transaction.atomic():
        model.registeredmodeluserobjectpermission_set.update(user=developer)


def test_a_models_owner_team_restriction_tier_status_or_name_changed_outside_the_services_fails_at_commit(owner, teams):
    """Each is governed: the team decides who validates, the restriction who sees, the tier which
    approvals a version needs. Another event about the model does not stand for the change's own."""
    from registry import services as registry_services
    from registry.models import RegisteredModel

    model = assessed_model(owner, 4)
    models = RegisteredModel.objects.filter(pk=model.pk)
    for change, what in [
        ({"team": teams["pricing"]}, "owner, team or restriction"),
        ({"restricted": True}, "owner, team or restriction"),
        ({"risk_tier": 1}, "risk tier"),
        ({"status": "decommissioned"}, "status"),
        ({"name": "elsewhere"}, "name"),
    ]:
        with pytest.raises(DatabaseError, match=rf"the {what} of model {model.pk} changed"), transaction.atomic():
            registry_services.model_update(actor=owner, model=model, changes={"description": "reviewed"})
            models.update(**change)
    assert models.values_list("team__name", "restricted", "risk_tier", "status", "name").get() == (
        "credit-risk",
        False,
        4,
        "active",
        model.name,
    )
    team_too = pytest.raises(DatabaseError, match=rf"the owner, team or restriction of model {model.pk} changed")
    with team_too, transaction.atomic():  # the restriction's event does not stand for a new team
        registry_services.model_update(actor=owner, model=model, changes={"restricted": True})
        models.update(team=teams["pricing"])
    with transaction.atomic():  # two events about the model, each of its kind, in one transaction
        registry_services.model_update(actor=owner, model=model, changes={"description": "reviewed"})
        registry_services.model_update(actor=owner, model=model, changes={"restricted": True})
    assert models.get().restricted


def test_another_event_about_the_row_does_not_stand_for_the_changes_own(developer, owner, risk_officer):
    """Each change asks for its own kind of event: a request moved to a state by the event of
    another state, a decision by an event of another kind, a deployment retired by its
    recording's event, all fail at commit."""
    from audit.services import audit_record

    _, request = submitted(developer, owner, 4)
    refused = pytest.raises(
        DatabaseError,
        match=r"governance\.approvalrequest \d+ was written \(UPDATE\) without an audit event "
        r"\(approval_request\.rejected\)",
    )
    with refused, transaction.atomic():
        audit_record(actor=owner, action="approval_request.approved", obj=request, model_name="m")
        ApprovalRequest.objects.filter(pk=request.pk).update(state="rejected")
    assert ApprovalRequest.objects.get(pk=request.pk).state == "open"

    refused = pytest.raises(
        DatabaseError,
        match=r"governance\.decision \d+ was written \(INSERT\) without an audit event \(decision\.recorded\)",
    )
    with refused, transaction.atomic():
        decision = Decision.objects.create(
            request=request, stage=request.stages.get(), person=risk_officer, outcome="approve"
        )
        audit_record(actor=risk_officer, action="approval_request.approved", obj=decision, model_name="m")
    assert not Decision.objects.exists()

    version, _ = approved(developer, owner, risk_officer)
    deployment = services.deployment_record(
        actor=owner, version=version, environment=Environment.objects.get(name="production")
    )
    refused = pytest.raises(
        DatabaseError,
        match=r"governance\.deployment \d+ was written \(UPDATE\) without an audit event \(deployment\.retired\)",
    )
    with refused, transaction.atomic():
        audit_record(actor=owner, action="deployment.recorded", obj=deployment, model_name="m")
        Deployment.objects.filter(pk=deployment.pk).update(retired_at=timezone.now())
    assert Deployment.objects.get(pk=deployment.pk).retired_at is None

    with transaction.atomic():  # its own kind of event lets the change through
        audit_record(actor=owner, action="approval_request.withdrawn", obj=request, model_name="m")
        ApprovalRequest.objects.filter(pk=request.pk).update(state="withdrawn")
    assert ApprovalRequest.objects.get(pk=request.pk).state == "withdrawn"
