"""Eight committee members deciding on the last quorum slot at the same moment, on real
concurrent connections: one stage completion, one version transition, one audit event per
recorded decision."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from common.errors import Conflict
from governance import services
from governance.models import Decision, RequestState
from registry.models import VersionState
from tests.concurrency import run_at_once
from tests.conftest import on_postgres
from tests.factories import submitted

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(not on_postgres(), reason="SQLite admits one writer at a time; the race needs PostgreSQL")
def test_eight_deciders_on_the_last_slot_make_one_transition(
    developer, owner, assigned_validator, compliance, risk_officer, committee_member, committee
):
    version, request = submitted(developer, owner, 1)
    for person in (assigned_validator, compliance, risk_officer, committee_member):
        services.decision_record(actor=person, request=request, outcome="approve")

    errors = run_at_once(8, lambda i: services.decision_record(actor=committee[i], request=request, outcome="approve"))

    assert len(errors) == 7 and all(isinstance(e, Conflict) for e in errors), errors
    assert all("is approved; it takes no more decisions" in e.message for e in errors)
    request.refresh_from_db()
    version.refresh_from_db()
    assert (request.state, version.state) == (RequestState.APPROVED, VersionState.APPROVED)
    assert Decision.objects.filter(request=request).count() == 5
    events = AuditEvent.objects.filter(model_name=request.model.name)
    assert events.filter(action="decision.recorded").count() == 5
    assert events.filter(action="approval_stage.completed", after__stage="Model risk committee").count() == 1
    assert events.filter(action="approval_request.approved").count() == 1
    assert events.filter(action="version.state_changed", after__state="approved").count() == 1
