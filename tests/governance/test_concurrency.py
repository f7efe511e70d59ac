"""Governance writes at the same moment, on real concurrent connections: eight committee
members deciding on the last quorum slot make one stage completion, one version transition and
one audit event per recorded decision; a reassessment that raises the tier, meeting a decision
on a request it withdraws, waits for it or overtakes it, and never deadlocks."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg2
import pytest
from django.db import connection

from audit.models import AuditEvent
from common.errors import Conflict
from governance import services
from governance.models import Decision, RequestState
from registry.models import VersionState
from tests.concurrency import run_at_once
from tests.conftest import on_postgres
from tests.factories import ASSESSMENTS, submitted

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


def _waiting_on_locks(cursor: Any) -> int:
    cursor.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees its first reading
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return cursor.fetchone()[0]


@pytest.mark.skipif(not on_postgres(), reason="row locks and their order need PostgreSQL")
def test_a_reassessment_raising_the_tier_and_a_decision_meet_without_a_deadlock(developer, owner, risk_officer):
    """The reassessment withdraws the open release (the T4 policy no longer applies); the
    decision locks that request, its version and the model. With the model held elsewhere,
    the reassessment asks first and the decision second: taken in opposite orders, the locks
    would wait on each other in a circle as soon as the model is free."""
    version, request = submitted(developer, owner, 4)
    model = version.model
    outcome: dict[str, Any] = {}

    def run(name: str, work: Any) -> None:
        try:
            work()
            outcome[name] = "done"
        except BaseException as exc:
            outcome[name] = exc
        finally:
            connection.close()

    answers, flags = ASSESSMENTS[1]
    reassess = threading.Thread(
        target=run,
        args=("reassess", lambda: services.assessment_record(actor=owner, model=model, answers=answers, flags=flags)),
    )
    decide = threading.Thread(
        target=run,
        args=("decide", lambda: services.decision_record(actor=risk_officer, request=request, outcome="approve")),
    )
    holder = psycopg2.connect(**connection.get_connection_params())
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT 1 FROM registry_registeredmodel WHERE id = %s FOR UPDATE", [model.pk])
            for thread, waiting in ((reassess, 1), (decide, 2)):
                thread.start()
                deadline = time.monotonic() + 30
                while _waiting_on_locks(cursor) < waiting:
                    assert time.monotonic() < deadline, f"{waiting} sessions never waited on a lock"
                    time.sleep(0.02)
        holder.rollback()  # the model is free: both go on
        for thread in (reassess, decide):
            thread.join(60)
    finally:
        holder.close()

    assert outcome["reassess"] == "done", outcome
    assert isinstance(outcome["decide"], Conflict) and "withdrawn" in outcome["decide"].message, outcome
    request.refresh_from_db()
    version.refresh_from_db()
    model.refresh_from_db()
    assert (model.risk_tier, request.state, version.state) == (1, RequestState.WITHDRAWN, VersionState.DRAFT)
