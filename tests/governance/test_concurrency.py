"""Governance writes at the same moment, on real concurrent connections: eight committee
members deciding on the last quorum slot make one stage completion, one version transition and
one audit event per recorded decision; a reassessment that raises the tier, meeting a decision
on a request it withdraws, waits for it or overtakes it, and never deadlocks, even on a request
opened while it waited; a submission meeting it is put under the new tier."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg2
import pytest
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from common.errors import Conflict, ValidationFailed
from governance import policies, services
from governance.models import Decision, Environment, PolicyException, RequestState
from monitoring import services as monitoring
from registry.models import ModelVersion, VersionState
from tests.concurrency import run_at_once
from tests.conftest import on_postgres
from tests.factories import ASSESSMENTS, approve_with_condition, assessed_model, make_version, submitted

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


def _run(outcome: dict[str, Any], name: str, work: Any) -> threading.Thread:
    def run() -> None:
        try:
            outcome[name] = work()
        except BaseException as exc:
            outcome[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


@contextlib.contextmanager
def _watching() -> Iterator[Any]:
    """A cursor on a connection of its own, which sees the others wait on locks."""
    watcher = psycopg2.connect(**connection.get_connection_params())
    try:
        with watcher.cursor() as cursor:
            yield cursor
    finally:
        watcher.close()


def _until_waiting(cursor: Any, done: Callable[[], bool] = lambda: False) -> None:
    """Until a session waits on a lock, or ``done()``."""
    deadline = time.monotonic() + 30
    while not done() and _waiting_on_locks(cursor) < 1:
        assert time.monotonic() < deadline, "no session waited on a lock"
        time.sleep(0.02)


def _while_uncommitted(change: Callable[[], Any], work: Callable[[], Any]) -> Any:
    """What ``work`` returns (or raises) run while ``change`` holds its locks uncommitted;
    ``change`` commits once ``work`` waits for it, or has ended."""
    changed, commit = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def hold() -> None:
        with transaction.atomic():
            change()
            changed.set()
            assert commit.wait(30)

    with _watching() as cursor:
        threads = [_run(outcome, "change", hold)]
        assert changed.wait(30)
        threads.append(_run(outcome, "work", work))
        _until_waiting(cursor, done=lambda: "work" in outcome)
        commit.set()
        for thread in threads:
            thread.join(60)
    assert outcome["change"] is None, outcome
    return outcome["work"]


def _while_raised_to_t1_uncommitted(owner: Any, model: Any, work: Callable[[], Any]) -> Any:
    """What ``work`` returns (or raises) run while a reassessment raising ``model`` from T4 to
    T1 holds its locks uncommitted."""
    answers, flags = ASSESSMENTS[1]
    return _while_uncommitted(
        lambda: services.assessment_record(actor=owner, model=model, answers=answers, flags=flags), work
    )


@pytest.mark.skipif(not on_postgres(), reason="row locks need PostgreSQL")
def test_a_submission_made_while_a_tier_change_is_uncommitted_is_put_under_the_new_tier(developer, owner):
    """A reassessment raises the model from T4 to T1 and has not committed yet; a version is
    submitted meanwhile. The submission waits for the tier change and is put to the T1 policy:
    read before the change committed, the T4 tier would have been pinned to a request that the
    change, having already withdrawn the open ones, never saw."""
    model = assessed_model(owner, 4)
    version = make_version(developer, model)
    request = _while_raised_to_t1_uncommitted(
        owner, model, lambda: services.request_submit(actor=owner, version=version)
    )
    model.refresh_from_db()
    request.refresh_from_db()
    assert (model.risk_tier, request.tier, request.policy.tier, request.state) == (1, 1, 1, RequestState.OPEN)


@pytest.mark.skipif(not on_postgres(), reason="row locks need PostgreSQL")
def test_a_tier_change_takes_again_the_locks_it_holds_when_a_request_opened_meanwhile_is_being_decided(
    api, developer, owner, risk_officer, monkeypatch
):
    """A submission holds the model while a reassessment locks the model's open requests (none
    yet) and waits for the model. The submission commits its request; the reassessment gets the
    model; a decision on the new request locks it and waits for the model. Withdrawing that
    request would wait for the decision, which waits for the reassessment: a deadlock. The
    reassessment gives its locks back and takes them again, the request first: the decision
    goes through, then the reassessment, and neither caller sees an error."""
    model = assessed_model(owner, 4)
    version = make_version(developer, model)
    submitted_, commit, holds_model, go = (threading.Event() for _ in range(4))
    outcome: dict[str, Any] = {}
    take_locks = services._take_locks

    def pausing(*args: Any) -> Any:
        taken = take_locks(*args)
        if threading.current_thread().name == "reassess" and not holds_model.is_set():
            holds_model.set()
            assert go.wait(30)
        return taken

    monkeypatch.setattr(services, "_take_locks", pausing)

    def submit() -> Any:
        with transaction.atomic():
            request = services.request_submit(actor=owner, version=version)
            submitted_.set()
            assert commit.wait(30)
        return request

    answers, flags = ASSESSMENTS[1]
    url = f"/api/v1/models/{model.name}/risk-assessment/"
    with _watching() as cursor:
        submitting = _run(outcome, "submit", submit)
        assert submitted_.wait(30)
        post = lambda: api(owner).post(url, {"answers": answers, "flags": flags}, format="json")  # noqa: E731
        threads = [_run(outcome, "reassess", post)]
        _until_waiting(cursor)  # the reassessment has locked no request and waits for the model
        commit.set()
        submitting.join(30)
        assert holds_model.wait(30)
        request = outcome["submit"]
        decide = lambda: services.decision_record(actor=risk_officer, request=request, outcome="approve")  # noqa: E731
        threads.append(_run(outcome, "decide", decide))
        _until_waiting(cursor)  # the decision holds the request and waits for the model
        go.set()
        for thread in threads:
            thread.join(60)

    assert outcome["reassess"].status_code == 201, outcome
    assert outcome["decide"].outcome == "approve", outcome
    request.refresh_from_db()
    model.refresh_from_db()
    assert (model.risk_tier, request.state) == (1, RequestState.APPROVED)


@pytest.mark.skipif(not on_postgres(), reason="row locks need PostgreSQL")
def test_an_exception_granted_while_a_tier_change_is_uncommitted_is_held_to_the_new_tier(
    developer, owner, risk_officer
):
    """A reassessment raises the model from T4 to T1 and has not committed yet; a risk officer
    grants an exception for 150 days meanwhile. The grant waits for the tier change and is
    refused under T1's limit, not allowed under T4's."""
    version = make_version(developer, assessed_model(owner, 4))

    def grant() -> Any:
        until = timezone.now() + timedelta(days=150)
        return services.exception_grant(
            actor=risk_officer, version=version, scope="s", compensating_control="c", reason="r", expires_at=until
        )

    refused = _while_raised_to_t1_uncommitted(owner, version.model, grant)
    assert isinstance(refused, ValidationFailed), refused
    assert refused.fields == {"expires_at": ["T1 exceptions last at most 30 days (policy v1)"]}
    assert not PolicyException.objects.exists()


@pytest.mark.skipif(not on_postgres(), reason="row locks need PostgreSQL")
def test_a_breaching_monitoring_batch_and_a_retirement_of_its_deployment_both_go_through(
    developer, owner, assigned_validator, risk_officer, monkeypatch
):
    """The batch share-locks the deployment and the version, finds a breach, and is about to
    lock the version to act on it, when the deployment is retired: the retirement locks the
    version, then the deployment. Had it taken the deployment exclusively, it would wait for
    the batch's share while the batch waits for the version: a deadlock."""
    version = make_version(developer, assessed_model(owner, 2), metrics={"auc": 0.80})
    request = services.request_submit(actor=owner, version=version)
    services.decision_record(actor=assigned_validator, request=request, outcome="approve")
    services.decision_record(actor=risk_officer, request=request, outcome="approve")
    production = Environment.objects.get(name="production")
    deployment = services.deployment_record(actor=owner, version=version, environment=production)
    version = ModelVersion.objects.select_related("model").get(pk=version.pk)
    breached, go = threading.Event(), threading.Event()
    act = monitoring._act

    def pausing(breaches: Any) -> Any:
        breached.set()
        assert go.wait(30)
        return act(breaches)

    monkeypatch.setattr(monitoring, "_act", pausing)
    end = timezone.now() - timedelta(days=1)
    window = {"window_start": end - timedelta(days=1), "window_end": end}
    item = monitoring.Item(
        version=version,
        deployment=deployment,
        data={"key": "k1", "metric": "auc", "segment": "", "value": 0.70, **window},
    )
    outcome: dict[str, Any] = {}
    with _watching() as cursor:
        receive = lambda: monitoring.observations_receive(actor=developer, items=[item])  # noqa: E731
        threads = [_run(outcome, "batch", receive)]
        assert breached.wait(30)
        retire = lambda: services.deployment_retire(actor=owner, deployment=deployment, reason="drifting")  # noqa: E731
        threads.append(_run(outcome, "retire", retire))
        _until_waiting(cursor, done=lambda: "retire" in outcome)
        go.set()
        for thread in threads:
            thread.join(60)

    assert not any(isinstance(answer, BaseException) for answer in outcome.values()), outcome
    assert outcome["batch"].breaches and outcome["retire"].retired_at is not None


@pytest.mark.skipif(not on_postgres(), reason="row locks need PostgreSQL")
@pytest.mark.parametrize("assign", [True, False])
def test_the_same_validator_assignment_made_twice_at_once_is_one_change_and_one_event(
    developer, owner, validator, risk_officer, assign
):
    """The first has changed the permission and not committed when the second arrives; the
    second waits for it and then finds nothing to do."""
    model = assessed_model(owner, 2)
    if not assign:
        services.validator_assign(actor=risk_officer, validator=validator, model=model)
    action = "validator.assigned" if assign else "validator.unassigned"

    def assignment() -> None:
        services.validator_assign(actor=risk_officer, validator=validator, model=model, assign=assign)

    assert _while_uncommitted(assignment, assignment) is None
    assert AuditEvent.objects.filter(action=action, model_name=model.name).count() == 1
    assert policies.is_assigned_validator(validator, model) is assign


@pytest.mark.skipif(not on_postgres(), reason="row locks need PostgreSQL")
def test_closing_a_condition_holds_up_no_write_to_its_model(developer, owner, assigned_validator):
    """While a condition is being marked met, the model's other writers (a new version locks the
    model's row FOR NO KEY UPDATE) and its request's go on; the condition itself is held."""
    _, request = submitted(developer, owner, 2)
    condition = approve_with_condition(assigned_validator, request, owner)
    with transaction.atomic():
        services.condition_close(actor=owner, condition=condition, state="met", note="first report sent")
        with _watching() as cursor:
            for table, pk in (
                ("registry_registeredmodel", request.model_id),
                ("governance_approvalrequest", request.pk),
            ):
                cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE NOWAIT", [pk])
            with pytest.raises(psycopg2.errors.LockNotAvailable):
                cursor.execute("SELECT 1 FROM governance_condition WHERE id = %s FOR UPDATE NOWAIT", [condition.pk])
