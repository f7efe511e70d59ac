"""Signed checkpoints, their witness copies, and the tampering only they can catch: a tail
rewritten with recomputed hashes, and a tail cut off with the head rewound."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import ledger, merkle, signing, triggers
from audit.checkpoints import LATEST, LedgerDisagrees, checkpoint_make, witness_path
from audit.merkle import Accumulator
from audit.models import AuditEvent, Checkpoint
from audit.tasks import checkpoint as checkpoint_task
from audit.verify import CHECKPOINT_DISAGREES, GAP_OR_FORK, TAMPERED_ROW, verify
from tests.factories import make_model


@pytest.fixture
def checkpointed(developer, signing_key, django_capture_on_commit_callbacks):
    for i in range(5):
        make_model(developer, name=f"m{i}")
    with django_capture_on_commit_callbacks(execute=True):
        checkpoint = checkpoint_make(force=True)
    return checkpoint


def sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def as_owner(*statements: tuple[str, list]) -> None:
    if connection.vendor == "postgresql":
        sql("SET CONSTRAINTS ALL IMMEDIATE")
    with triggers.suspended(connection):
        for statement, params in statements:
            sql(statement, params)


def test_a_checkpoint_signs_the_merkle_root_and_the_chain_hash_and_leaves_a_witness_copy(checkpointed, signing_key):
    leaves = [bytes.fromhex(h) for h in AuditEvent.objects.order_by("seq").values_list("entry_hash", flat=True)]
    assert checkpointed.size == 5
    assert checkpointed.root_hash == merkle.root(leaves)
    assert checkpointed.chain_hash == AuditEvent.objects.get(seq=5).chain_hash
    assert checkpointed.prev_hash == ledger.GENESIS
    assert signing.verify(signing_key, checkpointed.body, checkpointed.signature)
    assert json.loads(witness_path(5).read_text())["body"] == checkpointed.body
    assert (witness_path(5).parent / LATEST).read_text() == witness_path(5).read_text()
    assert verify().findings == []


def test_a_checkpoint_is_made_only_when_due_and_chains_to_the_last(developer, checkpointed, settings):
    assert checkpoint_make() is None  # the head has not moved
    make_model(developer, name="late")
    settings.AUDIT_CHECKPOINT_EVERY_EVENTS = 2
    assert checkpoint_make() is None  # one event, and ten minutes have not passed
    make_model(developer, name="later")
    second = checkpoint_make()
    assert second.size == 7
    assert second.prev_hash != ledger.GENESIS
    leaves = [bytes.fromhex(h) for h in AuditEvent.objects.order_by("seq").values_list("entry_hash", flat=True)]
    assert second.root_hash == merkle.root(leaves)  # continued from the saved frontier


def rewrite_from(first: int, **changes: str) -> list[tuple[str, list]]:
    """The statements of a superuser who knows the format: change event #first's columns, and
    recompute its hashes and every later one's, and the chain head's."""
    previous = AuditEvent.objects.get(seq=first - 1).chain_hash if first > 1 else ledger.GENESIS
    statements: list[tuple[str, list]] = []
    for row in AuditEvent.objects.filter(seq__gte=first).order_by("seq").values(*ledger.HASHED_FIELDS):
        if row["seq"] == first:
            row.update(changes)
        row["occurred_at"] = ledger.format_time(row["occurred_at"])
        canonical = ledger.canonical(row)
        entry = ledger.entry_hash(canonical)
        chain = ledger.chain_hash(previous, entry)
        statements.append(
            (
                "UPDATE audit_auditevent SET reason = %s, canonical = %s, entry_hash = %s, prev_hash = %s, "
                "chain_hash = %s WHERE seq = %s",
                [row["reason"], canonical, entry, previous, chain, row["seq"]],
            )
        )
        previous = chain
    return [*statements, ("UPDATE audit_chainhead SET chain_hash = %s", [previous])]


def frontier_of_the_stored_leaves(size: int) -> str:
    tree = Accumulator()
    for entry in AuditEvent.objects.filter(seq__lte=size).order_by("seq").values_list("entry_hash", flat=True):
        tree.add(bytes.fromhex(entry))
    return json.dumps(tree.frontier())


@pytest.mark.parametrize(
    ("also", "refusal"),
    [
        ("", "The event at #5 no longer has the chain hash checkpoint #5 signed"),
        ("frontier", "Checkpoint #5's saved frontier does not give its signed root"),
        ("checkpoints", "The witness holds checkpoint #5, which the database lacks"),
    ],
)
def test_no_checkpoint_is_signed_over_a_history_rewritten_since_the_last(developer, checkpointed, also, refusal):
    """Signing a rewritten history would let a filtered export, proved against the new
    checkpoint, verify offline; so the signer refuses, and says why."""
    as_owner(*rewrite_from(1, reason="rewritten"))
    if also == "frontier":
        as_owner(("UPDATE audit_checkpoint SET frontier = %s", [frontier_of_the_stored_leaves(5)]))
    if also == "checkpoints":
        as_owner(("DELETE FROM audit_checkpoint", []))
    make_model(developer, name="after")
    checkpoints = list(Checkpoint.objects.values_list("size", flat=True))

    with pytest.raises(LedgerDisagrees, match=f"^{re.escape(refusal)}"):
        checkpoint_make(force=True)
    with pytest.raises(CommandError, match=re.escape(refusal)):
        call_command("audit_checkpoint", "--force")
    assert list(Checkpoint.objects.values_list("size", flat=True)) == checkpoints
    assert verify().code in {CHECKPOINT_DISAGREES, GAP_OR_FORK, TAMPERED_ROW}


def test_no_checkpoint_follows_one_that_is_not_what_was_signed(developer, checkpointed, settings):
    make_model(developer, name="after")
    settings.AUDIT_VERIFY_KEYS = [signing.generate()[1]]  # the signing key is not among them
    with pytest.raises(LedgerDisagrees, match=r"^Checkpoint #5 is signed by an unknown key \(AUDIT_VERIFY_KEYS\)"):
        checkpoint_make(force=True)
    settings.AUDIT_VERIFY_KEYS = []
    as_owner(("UPDATE audit_checkpoint SET root_hash = %s", ["0" * 64]))
    with pytest.raises(LedgerDisagrees, match=r"^Checkpoint #5's columns differ from what it signed"):
        checkpoint_make(force=True)
    assert list(Checkpoint.objects.values_list("size", flat=True)) == [5]


def test_an_export_over_a_rewritten_history_is_refused_and_records_nothing(api, auditor, checkpointed):
    as_owner(*rewrite_from(2, reason="rewritten"))
    events = AuditEvent.objects.count()

    response = api(auditor).post("/api/v1/audit-exports/", {"model": "m1"}, format="json")

    assert response.status_code == 409
    assert response.json()["message"].startswith("The event at #5 no longer has the chain hash checkpoint #5 signed")
    assert AuditEvent.objects.count() == events
    assert Checkpoint.objects.count() == 1


def test_a_tail_rewritten_with_recomputed_hashes_disagrees_with_the_signed_checkpoint(checkpointed):
    fourth = AuditEvent.objects.get(seq=4)
    row = AuditEvent.objects.filter(seq=5).values(*ledger.HASHED_FIELDS).get()
    row["model_name"] = "rewritten"
    row["occurred_at"] = ledger.format_time(row["occurred_at"])
    canonical = ledger.canonical(row)
    entry = ledger.entry_hash(canonical)
    chain = ledger.chain_hash(fourth.chain_hash, entry)
    as_owner(
        (
            "UPDATE audit_auditevent SET model_name = %s, canonical = %s, entry_hash = %s, chain_hash = %s WHERE seq = 5",
            ["rewritten", canonical, entry, chain],
        ),
        ("UPDATE audit_chainhead SET chain_hash = %s", [chain]),
    )
    report = verify()
    assert report.code == CHECKPOINT_DISAGREES
    assert [f.seq for f in report.findings] == [5]
    with pytest.raises(CommandError) as refused:
        call_command("audit_verify")
    assert refused.value.returncode == CHECKPOINT_DISAGREES


def test_a_cut_tail_with_the_head_rewound_is_caught_by_the_checkpoint(checkpointed):
    third = AuditEvent.objects.get(seq=3)
    as_owner(
        ("DELETE FROM audit_auditevent WHERE seq > 3", []),
        ("UPDATE audit_chainhead SET seq = 3, chain_hash = %s", [third.chain_hash]),
    )
    report = verify()
    assert report.code == CHECKPOINT_DISAGREES
    assert [f.message for f in report.findings] == ["a signed checkpoint at #5 but the chain ends at #3: truncated"]


def test_removing_the_checkpoints_too_is_caught_by_the_witness(checkpointed):
    third = AuditEvent.objects.get(seq=3)
    as_owner(
        ("DELETE FROM audit_auditevent WHERE seq > 3", []),
        ("DELETE FROM audit_checkpoint", []),
        ("UPDATE audit_chainhead SET seq = 3, chain_hash = %s", [third.chain_hash]),
    )
    assert [f.message for f in verify().findings] == [
        "the witness holds a checkpoint at #5 that the database does not (the chain ends at #3)"
    ]


def test_a_checkpoint_signed_by_another_key_is_refused(checkpointed, settings):
    settings.AUDIT_VERIFY_KEYS = [signing.generate()[1]]
    assert [f.message for f in verify().findings] == ["checkpoint #5 is signed by an unknown key"]


def test_checkpoints_cannot_be_changed(checkpointed):
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql("UPDATE audit_checkpoint SET root_hash = 'x'")
    assert Checkpoint.objects.get().root_hash == checkpointed.root_hash


def test_the_periodic_task_makes_a_due_checkpoint(developer, signing_key):
    make_model(developer, name="m1")
    assert checkpoint_task.apply().get() == 1  # run here, as a worker would


def test_without_a_key_the_command_says_how_to_make_one(developer, settings):
    settings.AUDIT_SIGNING_KEY = None
    make_model(developer, name="m1")
    with pytest.raises(CommandError, match="audit_keygen"):
        call_command("audit_checkpoint", "--force")


@pytest.mark.parametrize(
    "column, value, found",
    [
        ("entry_hash", "z" * 64, [(TAMPERED_ROW, 3, "#3: entry_hash is not the SHA-256 of its canonical text")]),
        ("prev_hash", "0" * 63, [(GAP_OR_FORK, 3, "#3 does not link to the row before it (#2)")]),
    ],
)
def test_a_hash_rewritten_as_something_that_is_not_hex_is_named_not_a_crash(checkpointed, column, value, found):
    as_owner((f"UPDATE audit_auditevent SET {column} = %s WHERE seq = 3", [value]))
    report = verify()
    named = [(f.code, f.seq, f.message) for f in report.findings]
    assert named[: len(found)] == found
    assert (TAMPERED_ROW, 3, f"#3: {column} not 64 hexadecimal digits") in named
    with pytest.raises(CommandError) as refused:
        call_command("audit_verify")
    assert refused.value.returncode == report.code == min(code for code, *_ in named)


@pytest.mark.parametrize("body", ["not json", "[1, 2]"])
def test_a_checkpoint_body_rewritten_as_something_that_is_not_an_object_is_named(checkpointed, body):
    as_owner(("UPDATE audit_checkpoint SET body = %s", [body]))
    with pytest.raises(CommandError) as refused:
        call_command("audit_verify")
    assert refused.value.returncode == CHECKPOINT_DISAGREES
    assert "checkpoint #5: its columns or link differ from what was signed" in [f.message for f in verify().findings]


def test_a_witness_copy_replaced_by_something_else_is_named(checkpointed, settings):
    (copy,) = Path(settings.AUDIT_WITNESS_DIR).glob("checkpoint-*.json")
    copy.write_text('{"body": "garbage"}')
    assert [(f.code, f.message) for f in verify().findings] == [
        (CHECKPOINT_DISAGREES, f"the witness file {copy.name} is not a checkpoint's copy: altered or replaced")
    ]
