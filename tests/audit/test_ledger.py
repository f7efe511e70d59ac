"""The ledger: canonical bytes, the chain, the database's refusals, the bypass guard, and the
verifier naming each kind of tampering with its exit code and sequence numbers."""

from __future__ import annotations

import itertools

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from audit import ledger, triggers
from audit.checkpoints import checkpoint_make
from audit.models import AuditEvent, ChainHead
from audit.verify import GAP_OR_FORK, TAMPERED_ROW, verify
from registry import services
from registry.models import DatasetUsage, ModelVersion, VersionParent
from tests.concurrency import run_at_once
from tests.conftest import on_postgres
from tests.factories import make_dataset_version, make_model, make_version

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL-only protection")


def sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def exit_code_of_verify() -> tuple[int, str]:
    try:
        call_command("audit_verify")
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, ""


@pytest.mark.parametrize(
    "value, text",
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (123456789012345680000.0, "123456789012345680000"),
        (-0.0, "0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-6, "0.000001"),
    ],
)
def test_numbers_take_their_rfc_8785_form(value, text):
    assert ledger._encode(value) == text


def test_the_canonical_form_sorts_keys_and_keeps_unicode():
    fields = dict.fromkeys(ledger.HASHED_FIELDS, "")
    fields |= {"after": {"b": 1, "a": "é\n"}, "seq": 1}
    text = ledger.canonical(fields)
    assert text.startswith('{"action":"","actor_id":"","after":{"a":"é\\n","b":1},')
    assert ledger.entry_hash(text) == ledger.entry_hash(text.encode().decode())


def test_each_event_links_to_the_one_before_and_the_trail_verifies(developer):
    model = make_model(developer, name="m1")
    make_version(developer, model)
    services.model_update(actor=developer, model=model, changes={"description": "d"})
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == ledger.GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.chain_hash
        assert after.chain_hash == ledger.chain_hash(before.chain_hash, ledger.entry_hash(after.canonical))
        assert after.occurred_at >= before.occurred_at
    head = ChainHead.objects.get()
    assert (head.seq, head.chain_hash) == (3, events[-1].chain_hash)
    assert exit_code_of_verify() == (0, "")


def test_an_events_documents_are_stored_as_their_canonical_text_and_queried_as_documents(developer):
    model = make_model(developer, name="m1", tags={"b": "2", "a": "1"})
    services.model_update(actor=developer, model=model, changes={"description": "d é"})
    registered = AuditEvent.objects.get(action="model.registered")
    with connection.cursor() as cursor:  # the column holds the very text the canonical form holds
        cursor.execute("SELECT after FROM audit_auditevent WHERE id = %s", [registered.pk])
        (stored,) = cursor.fetchone()
    text = stored if isinstance(stored, str) else ledger.encode(stored)
    assert f'"after":{text},' in registered.canonical
    assert registered.after["tags"] == {"a": "1", "b": "2"}

    events = AuditEvent.objects.filter(model_name="m1")
    assert list(events.filter(after__description="d é").values_list("action", flat=True)) == ["model.updated"]
    assert events.filter(after__has_key="tags").get() == registered
    if on_postgres():  # Django has no contains lookup on SQLite
        assert events.filter(after__contains={"name": "m1"}).get() == registered
    assert events.filter(after=registered.after).get() == registered
    assert events.filter(before__isnull=True).get() == registered


def test_a_rolled_back_change_leaves_no_gap(developer):
    make_model(developer, name="m1")
    with pytest.raises(RuntimeError), transaction.atomic():
        make_model(developer, name="m2")
        raise RuntimeError("the change fails after its event was written")
    make_model(developer, name="m3")
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", "model_name")) == [(1, "m1"), (2, "m3")]
    assert verify().code == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET reason = 'rewritten'",
        "DELETE FROM audit_auditevent",
        "UPDATE audit_chainhead SET seq = seq + 5",
        "DELETE FROM audit_chainhead",
    ],
)
def test_the_database_refuses_to_change_the_trail(developer, statement):
    make_model(developer, name="m1")
    with pytest.raises(DatabaseError, match=r"append-only|only moves"), transaction.atomic():
        sql(statement)
    assert AuditEvent.objects.get().reason == ""


@postgres_only
@pytest.mark.parametrize("statement", ["TRUNCATE audit_auditevent", "TRUNCATE audit_chainhead CASCADE"])
def test_postgres_refuses_truncate(developer, statement):
    make_model(developer, name="m1")
    settle_deferred_checks()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql(statement)


@postgres_only
def test_replica_mode_does_not_switch_the_triggers_off(developer):
    make_model(developer, name="m1")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql("SET LOCAL session_replication_role = replica")
        sql("DELETE FROM audit_auditevent")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_changing_version_state_outside_the_services_fails_at_commit(developer):
    version = make_version(developer, make_model(developer, name="m1"))
    with pytest.raises(DatabaseError, match="without an audit event"), transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(state="approved")
    assert ModelVersion.objects.get(pk=version.pk).state == "draft"


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_moving_an_alias_with_raw_sql_fails_at_commit(developer):
    model = make_model(developer, name="m1")
    make_version(developer, model)
    make_version(developer, model)
    services.alias_set(actor=developer, model=model, name="candidate", number=1)
    with pytest.raises(DatabaseError, match="without an audit event"), transaction.atomic():
        sql(
            "UPDATE registry_alias SET version_id = (SELECT id FROM registry_modelversion WHERE number = 2) "
            "WHERE name = 'candidate'"
        )
    assert model.aliases.get().version.number == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_changing_lineage_outside_the_services_fails_at_commit(developer):
    model = make_model(developer, name="m1")
    v1 = make_version(developer, model)
    v2 = make_version(developer, model, parents=[(v1, "retrained_from")])
    loans = make_dataset_version(developer, name="loans")
    for statement in (
        f"INSERT INTO registry_datasetusage (version_id, dataset_version_id, role, created_at)"
        f" VALUES ({v2.pk}, {loans.pk}, 'test', now())",
        f"DELETE FROM registry_versionparent WHERE child_id = {v2.pk}",
        f"UPDATE registry_versionparent SET relation = 'distilled_from' WHERE child_id = {v2.pk}",
    ):
        with pytest.raises(DatabaseError, match=f"the lineage of model version {v2.pk} changed"), transaction.atomic():
            sql(statement)
    assert list(VersionParent.objects.values_list("child", "parent", "relation")) == [(v2.pk, v1.pk, "retrained_from")]
    assert not DatasetUsage.objects.exists()


@postgres_only
def test_the_services_satisfy_the_bypass_guard(developer):
    model = make_model(developer, name="m1")
    make_version(developer, model)
    with transaction.atomic():
        services.alias_set(actor=developer, model=model, name="candidate", number=1)
        v2 = make_version(developer, model, parents=[(model.versions.get(), "retrained_from")])
        services.lineage_add_dataset(
            actor=developer, version=v2, dataset_version=make_dataset_version(developer), role="training"
        )
        sql("SET CONSTRAINTS ALL IMMEDIATE")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_several_guarded_changes_in_one_transaction_commit_with_their_events_chained_at_commit(developer):
    """At commit each guard runs before or after the events before it are chained: it finds its
    event pending or in the trail, whichever it is by then."""
    model = make_model(developer, name="m1")
    with transaction.atomic():
        make_version(developer, model)
        make_version(developer, model)
        services.alias_set(actor=developer, model=model, name="candidate", number=2)
        assert not AuditEvent.objects.filter(object_type="registry.alias").exists()
    assert model.aliases.get().version.number == 2
    assert list(AuditEvent.objects.order_by("seq").values_list("action", flat=True)) == [
        "model.registered",
        "version.created",
        "version.created",
        "alias.set",
    ]
    assert verify().findings == []


# --- tampering by someone who can lift the protection (the tables' owner) ------------------


@pytest.fixture
def trail(developer):
    for i in range(5):
        make_model(developer, name=f"m{i}")
    return list(AuditEvent.objects.order_by("seq"))


def settle_deferred_checks() -> None:
    """Run the checks PostgreSQL defers to commit (foreign keys, the bypass guard) now: a table
    with pending checks cannot be altered or truncated in the same transaction."""
    if on_postgres():
        sql("SET CONSTRAINTS ALL IMMEDIATE")


def tamper(*statements: str) -> None:
    settle_deferred_checks()
    with triggers.suspended(connection):
        for statement in statements:
            sql(statement)


def test_editing_a_column_only_is_named_as_a_tampered_row(trail):
    tamper("UPDATE audit_auditevent SET model_name = 'other' WHERE seq = 3")
    assert exit_code_of_verify()[0] == TAMPERED_ROW
    assert [f.message for f in verify().findings] == ["#3: column(s) model_name differ from the hashed canonical text"]


def test_editing_the_canonical_text_only_is_named_as_a_tampered_row(trail):
    text = trail[1].canonical.replace('"m1"', '"mX"')
    settle_deferred_checks()
    with triggers.suspended(connection):
        sql("UPDATE audit_auditevent SET canonical = %s WHERE seq = 2", [text])
    report = verify()
    assert report.code == TAMPERED_ROW
    assert {f.seq for f in report.findings} == {2}


def test_deleting_a_middle_row_is_named_as_a_gap(trail):
    tamper("DELETE FROM audit_auditevent WHERE seq = 3")
    report = verify()
    assert exit_code_of_verify()[0] == GAP_OR_FORK
    assert [f.message for f in report.findings] == [
        "sequence gap: expected #3, found #4",
        "#4 does not link to the row before it (#2)",
    ]


def test_swapping_two_rows_is_named_as_a_break_in_the_chain(trail):
    tamper(
        "UPDATE audit_auditevent SET seq = -1 WHERE seq = 2",
        "UPDATE audit_auditevent SET seq = 2 WHERE seq = 3",
        "UPDATE audit_auditevent SET seq = 3 WHERE seq = -1",
    )
    report = verify()
    assert report.code in (TAMPERED_ROW, GAP_OR_FORK)
    assert {f.seq for f in report.findings} >= {2, 3}


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_sixteen_concurrent_writers_never_fork_the_chain(developer):
    model = make_model(developer, name="contended")
    writers, appends = 16, 8

    def write(i: int) -> None:
        for j in range(appends):
            services.model_update(actor=developer, model=model, set_tags={f"w{i}": str(j)})

    assert run_at_once(writers, write) == []
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, writers * appends + 2))
    assert verify().findings == []


RUNTIME_ROLE = "warden_runtime_test"


@pytest.fixture
def runtime_role(db):
    sql(f"DO $$ BEGIN CREATE ROLE {RUNTIME_ROLE}; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    call_command("audit_grants", RUNTIME_ROLE)
    return RUNTIME_ROLE


@postgres_only
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET reason = 'x'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent",
        "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
        "DROP TABLE audit_auditevent",
        "DELETE FROM audit_chainhead",
        # An event of its own making, dated as it likes, and the head moved to it.
        "INSERT INTO audit_auditevent (seq, occurred_at, action, object_type, object_id, model_name, reason,"
        " request_id, actor_name, canonical, entry_hash, prev_hash, chain_hash)"
        " SELECT seq + 1, '2030-01-01', 'x', 'x', 'x', '', '', '', 'x', '{}', chain_hash, chain_hash, chain_hash"
        " FROM audit_chainhead",
        "UPDATE audit_chainhead SET occurred_at = '2030-01-01'",
        # What a permission means: renamed, every access to a model would be a validator's assignment.
        "UPDATE auth_permission SET codename = 'validate_registeredmodel' WHERE codename = 'view_registeredmodel'",
        "UPDATE django_content_type SET model = 'elsewhere' WHERE model = 'registeredmodel'",
    ],
)
def test_the_runtime_role_cannot_change_or_drop_the_trail(developer, runtime_role, statement):
    make_model(developer, name="m1")
    settle_deferred_checks()
    with pytest.raises(DatabaseError, match=r"permission denied|must be owner"), transaction.atomic():
        sql(f"SET LOCAL ROLE {runtime_role}")
        sql(statement)


@postgres_only
def test_the_runtime_role_appends_through_the_services(developer, runtime_role):
    with transaction.atomic():
        sql(f"SET LOCAL ROLE {runtime_role}")
        make_model(developer, name="m1")
    assert verify().findings == []


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_runtime_role_appends_at_commit(developer, runtime_role):
    with transaction.atomic():
        sql(f"SET LOCAL ROLE {runtime_role}")
        make_model(developer, name="m1")
        assert not AuditEvent.objects.exists()
    assert list(AuditEvent.objects.values_list("seq", "action")) == [(1, "model.registered")]
    assert verify().findings == []


@postgres_only
def test_the_runtime_role_makes_a_checkpoint(developer, runtime_role, signing_key):
    """It locks the head to make one (an UPDATE privilege on the head's id, which moves nothing)."""
    make_model(developer, name="m1")
    with transaction.atomic():
        sql(f"SET LOCAL ROLE {runtime_role}")
        made = checkpoint_make(force=True)
    assert made is not None and made.size == AuditEvent.objects.count()


def test_audit_grants_refuses_a_role_name_that_is_not_plain():
    with pytest.raises(CommandError, match="not a plain PostgreSQL role name"):
        call_command("audit_grants", "x; DROP TABLE y", "--print")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_same_harness_catches_forks_from_a_naive_append(developer):
    """Proof that the concurrent-writers test can fail: appending after "the latest row" without
    the chain head's lock makes writers claim the same predecessor, which the unique prev_hash
    (the fork guard) refuses."""

    def naive_append(i: int) -> None:
        for j in range(8):
            with transaction.atomic():
                last = AuditEvent.objects.order_by("-seq").first()
                fields = dict.fromkeys(ledger.HASHED_FIELDS, "") | {
                    "seq": (last.seq if last else 0) + 1,
                    "occurred_at": ledger.format_time(timezone.now()),
                    "actor_id": None,
                    "before": None,
                    "after": {"writer": i, "append": j},
                    "source_ip": None,
                }
                canonical = ledger.canonical(fields)
                prev = last.chain_hash if last else ledger.GENESIS
                entry = ledger.entry_hash(canonical)
                AuditEvent(
                    **(fields | {"occurred_at": timezone.now()}),
                    actor_name="naive",
                    canonical=canonical,
                    entry_hash=entry,
                    prev_hash=prev,
                    chain_hash=ledger.chain_hash(prev, entry),
                ).save(force_insert=True)

    errors = run_at_once(16, naive_append)
    assert errors, "naive appends at 16 writers should have collided"
    assert all(isinstance(e, IntegrityError) for e in errors)
    assert AuditEvent.objects.values("prev_hash").distinct().count() == AuditEvent.objects.count()
