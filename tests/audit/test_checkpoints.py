"""Signed checkpoints, their witness copies, and the tampering only they can catch: a tail
rewritten with recomputed hashes, and a tail cut off with the head rewound."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import ledger, merkle, signing, triggers
from audit.checkpoints import checkpoint_make, witness_path
from audit.models import AuditEvent, Checkpoint
from audit.tasks import checkpoint as checkpoint_task
from audit.verify import CHECKPOINT_DISAGREES, verify
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
