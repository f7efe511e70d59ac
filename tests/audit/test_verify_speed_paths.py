"""The two walks of the verifier report the same: the set-based one on PostgreSQL and the Python
one (the reference, and the only one on SQLite), over intact trails with awkward values and
over every kind of tampering, including what makes the set-based walk hand over to Python."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from django.db import connection, transaction

from audit import context, ledger, triggers, verify
from audit.checkpoints import checkpoint_make
from audit.models import AuditEvent, Checkpoint
from audit.services import audit_record
from tests.conftest import on_postgres
from tests.factories import make_model

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the set-based walk is PostgreSQL's")


def sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def tamper(*statements: str | tuple[str, list]) -> None:
    if on_postgres():
        sql("SET CONSTRAINTS ALL IMMEDIATE")
    with triggers.suspended(connection):
        for statement in statements:
            if isinstance(statement, tuple):
                sql(*statement)
            else:
                sql(statement)


def walks() -> verify._Walk:
    """The walk over the stored trail, the same both ways; the set-based one must not hand over."""
    checkpoints = {c.size: c for c in Checkpoint.objects.all()}
    walk = verify._walk_in_python(checkpoints, chunk_size=3)
    if on_postgres():
        set_based = verify._walk_in_sql(checkpoints)
        assert set_based is not None, "the set-based walk handed over to Python"
        assert vars(set_based) == vars(walk)
    return walk


def findings_both_ways() -> list[str]:
    """verify()'s messages, the same whichever way it walks (every way that applies here)."""
    ways = [False, True] if on_postgres() else [False]
    reports = [verify.verify(chunk_size=3, set_based=way) for way in ways]
    seen = {
        (r.code, r.events, r.first_seq, r.last_seq, r.head_hash, tuple(r.findings or [])): way
        for r, way in zip(reports, ways, strict=True)
    }
    assert len(seen) == 1, f"the walks disagree: {seen}"
    return [f.message for f in reports[0].findings or []]


def record(actor: Any, **fields: Any) -> AuditEvent:
    with transaction.atomic(), context.origin(fields.pop("request_id", ""), fields.pop("source_ip", None)):
        return audit_record(actor=actor, action=fields.pop("action", "test.recorded"), **fields)


@pytest.fixture
def trail(developer, signing_key, django_capture_on_commit_callbacks):
    """Seven events with awkward values, a checkpoint after each of the first three and one at the end."""
    awkward = [
        {"reason": 'line one\nline "two"\t\\ é ✓ \x01', "after": {"b": [1, 2.5, None, True], "a": {"é": "x"}}},
        {
            "model_name": 'a "quoted" name \\ here',
            "before": {"threshold": 1.0, "tiny": 1e-7, "sum": 0.1 + 0.2},
            "after": {"threshold": 0.5},
        },
        {"source_ip": "2001:db8::1", "request_id": "a tab\talone", "after": {"nested": {"z": 1, "a": [{"k": "v"}]}}},
        {"source_ip": "10.0.0.7", "request_id": "req-1", "after": None, "before": None},
        {"object_type": "registry.registeredmodel", "model_name": "m"},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        for i, fields in enumerate(awkward):
            record(developer, object_type=fields.pop("object_type", "test.thing"), object_id=str(i), **fields)
            if i < 3:
                checkpoint_make(force=True)
        make_model(developer, name="m1")
        make_model(developer, name="m2")
        checkpoint_make(force=True)
    return list(AuditEvent.objects.order_by("seq"))


def test_an_intact_trail_with_awkward_values_verifies_the_same_both_ways(trail):
    assert walks().events == 7
    assert findings_both_ways() == []
    if on_postgres():  # every row passes where it is stored: none needed the Python walk
        assert [mark.passed for mark in verify._marked_rows([])] == [True, True, True]


def test_an_address_given_in_another_form_is_recorded_in_its_normal_form_and_verifies(developer):
    """The database normalises the column; the hashed text must say the same."""
    event = record(developer, object_type="test.thing", object_id="1", source_ip="2001:DB8:0::1")
    assert json.loads(event.canonical)["source_ip"] == "2001:db8::1"
    walks()
    assert findings_both_ways() == []


@pytest.mark.parametrize(
    "column, value",
    [
        ("action", "other.action"),
        ("actor_id", None),
        ("after", '{"b": [1, 2.5, null, true], "a": {"é": "y"}}'),
        ("before", '{"threshold": 1}'),
        ("model_name", "renamed"),
        ("object_id", "99"),
        ("object_type", "other.type"),
        ("occurred_at", datetime(2000, 1, 1, tzinfo=UTC)),
        ("reason", "changed"),
        ("request_id", "req-2"),
        ("source_ip", "10.0.0.8"),
    ],
)
def test_a_column_edited_alone_is_named_the_same_both_ways(trail, column, value):
    tamper((f"UPDATE audit_auditevent SET {column} = %s WHERE seq = 1", [value]))
    walks()
    assert findings_both_ways() == [f"#1: column(s) {column} differ from the hashed canonical text"]


@pytest.mark.parametrize("seq, column", [(1, "reason"), (2, "model_name"), (3, "request_id")])
def test_a_text_column_rewritten_as_its_own_escaped_form_is_named_the_same_both_ways(trail, seq, column):
    """The escaped form stands between the quotes in the hashed text: written into the column, it
    must not pass for the value it escapes."""
    escaped = ledger.encode(getattr(trail[seq - 1], column))[1:-1]
    assert escaped != getattr(trail[seq - 1], column)
    tamper((f"UPDATE audit_auditevent SET {column} = %s WHERE seq = %s", [escaped, seq]))
    walks()
    assert findings_both_ways() == [f"#{seq}: column(s) {column} differ from the hashed canonical text"]


@pytest.mark.parametrize(
    "statement, first",
    [
        (
            "UPDATE audit_auditevent SET canonical = replace(canonical, 'line one', 'line 1') WHERE seq = 1",
            "#1: column(s) reason differ from the hashed canonical text",
        ),
        (
            "UPDATE audit_auditevent SET entry_hash = repeat('a', 64) WHERE seq = 4",
            "#4: entry_hash is not the SHA-256 of its canonical text",
        ),
        (
            "UPDATE audit_auditevent SET chain_hash = repeat('b', 64) WHERE seq = 5",
            "#5: chain_hash is not SHA-256(prev_hash ‖ entry_hash)",
        ),
        (
            "UPDATE audit_auditevent SET prev_hash = repeat('c', 64) WHERE seq = 6",
            "#6 does not link to the row before it (#5)",
        ),
        ("DELETE FROM audit_auditevent WHERE seq = 3", "sequence gap: expected #3, found #4"),
        ("DELETE FROM audit_auditevent WHERE seq = 7", "a signed checkpoint at #7 but the chain ends at #6: truncated"),
        ("UPDATE audit_auditevent SET seq = 0 WHERE seq = 1", "sequence gap: expected #1, found #0"),
        ("UPDATE audit_auditevent SET before = 'null' WHERE seq = 4", None),
        (  # read as infinity, which has no canonical form: a tampered row, not a traceback
            """UPDATE audit_auditevent SET after = '{"threshold": 1e400}' WHERE seq = 2""",
            "#2: a column holds a value with no canonical form",
        ),
        (  # the hashed text itself deeper than Python's reader goes
            ("UPDATE audit_auditevent SET canonical = %s WHERE seq = 2", ["[" * 3000 + "]" * 3000]),
            "#2: the canonical text is not JSON",
        ),
        pytest.param(  # deeper than Python's reader goes (SQLite's refuses it): a tampered row, not a traceback
            ("UPDATE audit_auditevent SET after = %s WHERE seq = 2", ["[" * 3000 + "]" * 3000]),
            "#2: a column holds a value with no canonical form",
            marks=postgres_only,
        ),
        (  # the values are the hashed ones (the last of two keys wins); a reader may take the first
            """UPDATE audit_auditevent SET after = '{"threshold": 5, "threshold": 0.5}' WHERE seq = 2""",
            "#2: column(s) after give a key twice in one object",
        ),
    ],
)
def test_tampering_is_named_the_same_both_ways(trail, statement, first):
    tamper(statement)
    walks()
    assert findings_both_ways()[:1] == ([first] if first else [])


def test_time_running_backwards_is_named_the_same_both_ways(trail):
    tamper(("UPDATE audit_auditevent SET occurred_at = %s WHERE seq = 6", [trail[4].occurred_at - timedelta(days=1)]))
    walks()
    assert (
        findings_both_ways()
        == [
            "#6: column(s) occurred_at differ from the hashed canonical text",
            "#6 is timestamped before #5",
            "the chain up to #7 differs from the signed checkpoint at #7: rewritten since it was signed",
        ][:2]
    )


def test_swapped_rows_are_named_the_same_both_ways(trail):
    tamper(
        "UPDATE audit_auditevent SET seq = -1 WHERE seq = 2",
        "UPDATE audit_auditevent SET seq = 2 WHERE seq = 3",
        "UPDATE audit_auditevent SET seq = 3 WHERE seq = -1",
    )
    walks()
    messages = findings_both_ways()
    assert "#2 does not link to the row before it (#1)" in messages
    assert "#3 is timestamped before #2" in messages


def test_a_tail_rewritten_with_recomputed_hashes_is_caught_by_the_checkpoints_both_ways(trail):
    row = AuditEvent.objects.filter(seq=7).values(*ledger.HASHED_FIELDS).get()
    row["model_name"] = "rewritten"
    row["occurred_at"] = ledger.format_time(row["occurred_at"])
    canonical = ledger.canonical(row)
    entry = ledger.entry_hash(canonical)
    chain = ledger.chain_hash(trail[5].chain_hash, entry)
    tamper(
        (
            "UPDATE audit_auditevent SET model_name = %s, canonical = %s, entry_hash = %s, chain_hash = %s WHERE seq = 7",
            ["rewritten", canonical, entry, chain],
        ),
        ("UPDATE audit_chainhead SET chain_hash = %s", [chain]),
    )
    walks()
    assert findings_both_ways()[-1:] == [
        "the chain up to #7 differs from the signed checkpoint at #7: rewritten since it was signed"
    ]


def test_a_checkpoint_at_every_size_agrees_both_ways(developer, signing_key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(9):
            make_model(developer, name=f"m{i}")
            checkpoint_make(force=True)
    walks()
    assert findings_both_ways() == []
    tamper("UPDATE audit_auditevent SET entry_hash = repeat('d', 64) WHERE seq = 5")
    messages = findings_both_ways()
    assert "the chain up to #8 differs from the signed checkpoint at #8: rewritten since it was signed" in messages


def test_an_empty_trail_is_intact_both_ways(db):
    walks()
    assert findings_both_ways() == []


@postgres_only
@pytest.mark.parametrize(
    "canonical",
    ["not json", '{"action": "\\u0000"}'],
)
def test_a_canonical_text_that_is_not_json_is_named_by_the_set_based_walk(trail, canonical):
    """It compares the text with the one rebuilt from the columns, so it parses nothing."""
    tamper(("UPDATE audit_auditevent SET canonical = %s WHERE seq = 2", [canonical]))
    walk = verify._walk_in_sql({})
    assert walk is not None
    assert [finding.seq for finding in walk.findings] == [2, 2]
    assert findings_both_ways()[0].startswith("#2: ")


@postgres_only
def test_a_hash_only_python_reads_as_hex_hands_over_to_the_python_walk(trail):
    """bytes.fromhex skips a form feed; PostgreSQL's decode refuses it."""
    tamper(("UPDATE audit_auditevent SET prev_hash = %s WHERE seq = 2", ["\f" + trail[0].chain_hash[:62] + "\f"]))
    assert verify._walk_in_sql({}) is None
    assert findings_both_ways()[:2] == [
        "#2 does not link to the row before it (#1)",
        "#2: prev_hash not 64 hexadecimal digits",
    ]


@postgres_only
def test_a_large_number_verifies_where_it_is_stored(developer):
    """The document column holds the canonical text, so 1e21 stays 1e+21 (a jsonb column read it
    back as an integer)."""
    record(developer, object_type="test.thing", object_id="1", after={"big": 1e21, "small": 1e20, "tiny": 5e-324})
    walks()
    assert findings_both_ways() == []
    assert [mark.passed for mark in verify._marked_rows([])] == [True]


@postgres_only
def test_many_failing_rows_hand_over_to_the_python_walk(trail, monkeypatch):
    monkeypatch.setattr(verify, "RECHECK_LIMIT", 2)
    tamper("UPDATE audit_auditevent SET reason = 'x'")
    assert verify._walk_in_sql({}) is None
    assert len(findings_both_ways()) == 7


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_merkle_roots_come_from_a_second_connection(developer, signing_key, monkeypatch):
    for i in range(5):
        make_model(developer, name=f"m{i}")
        if i in (1, 3, 4):
            checkpoint_make(force=True)
    elsewhere, reads = verify._leaves_elsewhere, []
    monkeypatch.setattr(verify, "_leaves_elsewhere", lambda *args: reads.append(args) or elsewhere(*args))
    walks()
    assert len(reads) == 1
    assert findings_both_ways() == []
    tamper("UPDATE audit_auditevent SET entry_hash = repeat('e', 64), model_name = 'x' WHERE seq = 3")
    assert findings_both_ways() == [
        "#3: column(s) model_name differ from the hashed canonical text",
        "#3: entry_hash is not the SHA-256 of its canonical text",
        "#3: chain_hash is not SHA-256(prev_hash ‖ entry_hash)",
        "the chain up to #4 differs from the signed checkpoint at #4: rewritten since it was signed",
        "the chain up to #5 differs from the signed checkpoint at #5: rewritten since it was signed",
    ]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_without_a_second_connection_the_merkle_roots_are_read_on_the_first(developer, signing_key, monkeypatch):
    def refused(snapshot: str, count: int) -> Iterator[bytes]:
        raise psycopg2.OperationalError("sorry, too many clients already")
        yield b""

    for i in range(3):
        make_model(developer, name=f"m{i}")
        checkpoint_make(force=True)
    monkeypatch.setattr(verify, "_leaves_elsewhere", refused)
    walks()
    tamper("UPDATE audit_auditevent SET entry_hash = repeat('e', 64) WHERE seq = 2")
    assert "the chain up to #3 differs from the signed checkpoint at #3: rewritten since it was signed" in (
        findings_both_ways()
    )


def test_the_set_based_walk_is_refused_without_postgres(db):
    if on_postgres():
        pytest.skip("PostgreSQL has it")
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        verify.verify(set_based=True)
