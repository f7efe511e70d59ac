"""Signed checkpoints: every so often, the Merkle root over the entry hashes so far and the
chain hash there, signed, chained to the previous checkpoint, and copied to a witness
directory outside the database. A superuser who rewrites the tail of the chain consistently,
or cuts it, cannot also forge the signature or reach the witness copies; and a checkpoint is
signed only over a ledger that still agrees with the last one signed (``LedgerDisagrees``)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import ledger, signing
from audit.merkle import Accumulator
from audit.models import AuditEvent, ChainHead, Checkpoint
from common.errors import Conflict


class LedgerDisagrees(Conflict):
    """The ledger no longer agrees with what was signed or witnessed, so no checkpoint is signed
    over it: ``manage.py audit_verify`` names the rows."""


LATEST = "latest.json"  # in the witness directory: a copy of the newest checkpoint's file


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def checkpoint_make(*, force: bool = False) -> Checkpoint | None:
    """Make a checkpoint if the head has moved, and (unless ``force``) AUDIT_CHECKPOINT_EVERY_EVENTS
    events or AUDIT_CHECKPOINT_EVERY_MINUTES minutes have passed since the last one."""
    witnessed = witness_newest()  # before the lock: the witness only gains copies, after commits
    with transaction.atomic():
        head = ChainHead.objects.select_for_update().get(pk=1)  # the chain holds still meanwhile
        last = Checkpoint.objects.order_by("-size").first()
        if head.seq == (last.size if last else 0):
            return None
        if not force and last is not None:
            due_by_events = head.seq - last.size >= settings.AUDIT_CHECKPOINT_EVERY_EVENTS
            due_by_time = timezone.now() - last.created_at >= timedelta(minutes=settings.AUDIT_CHECKPOINT_EVERY_MINUTES)
            if not (due_by_events or due_by_time):
                return None
        tree = _signed_tree(last, witnessed)
        new_leaves = AuditEvent.objects.filter(seq__gt=tree.size, seq__lte=head.seq).order_by("seq")
        for entry in new_leaves.values_list("entry_hash", flat=True).iterator(chunk_size=5000):
            tree.add(bytes.fromhex(entry))
        created_at, root = timezone.now(), tree.root()
        prev = body_hash(last.body) if last else ledger.GENESIS
        body = ledger.encode(
            {
                "size": head.seq,
                "root": root,
                "chain_hash": head.chain_hash,
                "time": created_at,
                "prev": prev,
                "key_id": signing.key_id(signing.public_hex(signing.signing_key())),
            }
        )
        signature, key_id = signing.sign(body)
        checkpoint = Checkpoint.objects.create(
            size=head.seq,
            root_hash=root,
            chain_hash=head.chain_hash,
            created_at=created_at,
            prev_hash=prev,
            body=body,
            signature=signature,
            key_id=key_id,
            frontier=tree.frontier(),
        )
        # After commit: a witness copy of a checkpoint that rolled back would be a false alarm.
        transaction.on_commit(lambda: witness_write(checkpoint))
    return checkpoint


def _signed_tree(last: Checkpoint | None, witnessed: dict[str, str] | None) -> Accumulator:
    """The Merkle tree a new checkpoint extends: the last checkpoint's, once the ledger is seen
    to agree with it. A signer signs only an extension of what it has signed (as a transparency
    log does); otherwise a history rewritten with its hashes recomputed, its checkpoints deleted
    or their saved frontier recomputed to match, would get a fresh signature, and a filtered
    export proved against it would verify. Checked under the chain head's lock, so kept cheap:
    the newest witness copy (``witnessed``) is in the database unchanged; the last checkpoint verifies and its
    columns are what it signed; its saved frontier gives its signed root; and the event at its
    size still has the chain hash it signed. Older rows are for ``audit_verify``."""
    if witnessed is not None:
        size = json.loads(witnessed["body"])["size"]
        stored = last if last is not None and last.size == size else Checkpoint.objects.filter(size=size).first()
        if stored is None or (stored.body, stored.signature) != (witnessed["body"], witnessed["signature"]):
            raise LedgerDisagrees(
                f"The witness holds checkpoint #{size}, which the database {'lacks' if stored is None else 'holds changed'}: "
                "no checkpoint is signed over it (a new database needs a new AUDIT_WITNESS_DIR)."
            )
    if last is None:
        return Accumulator()
    problem = signature_problem(last, signing.verify_keys())
    if problem:
        raise LedgerDisagrees(f"{problem.capitalize()} (AUDIT_VERIFY_KEYS): no checkpoint is signed after it.")
    if not columns_signed(last):
        raise LedgerDisagrees(
            f"Checkpoint #{last.size}'s columns differ from what it signed: no checkpoint is signed after it."
        )
    tree = Accumulator.resume(last.size, last.frontier)
    if tree.root() != last.root_hash:
        raise LedgerDisagrees(
            f"Checkpoint #{last.size}'s saved frontier does not give its signed root: no checkpoint is signed after it."
        )
    if not AuditEvent.objects.filter(seq=last.size, chain_hash=last.chain_hash).exists():
        raise LedgerDisagrees(
            f"The event at #{last.size} no longer has the chain hash checkpoint #{last.size} signed: the chain was "
            "rewritten or cut; no checkpoint is signed over it."
        )
    return tree


def signature_problem(checkpoint: Checkpoint, keys: dict[str, str]) -> str | None:
    """Why a stored checkpoint's signature does not vouch for it, given the verify keys
    (``signing.verify_keys``): signed by a key not among them, or not verifying; None if it does."""
    public = keys.get(checkpoint.key_id)
    if public is None:
        return f"checkpoint #{checkpoint.size} is signed by an unknown key"
    if not signing.verify(public, checkpoint.body, checkpoint.signature):
        return f"checkpoint #{checkpoint.size}: the signature does not verify"
    return None


def json_object(text: Any) -> dict[str, Any] | None:
    """``text`` parsed, if it is a JSON object; None if not (a checkpoint's body or a witness
    copy tampered with: Warden writes only objects)."""
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def columns_signed(checkpoint: Checkpoint) -> bool:
    """Whether a stored checkpoint's columns are what its signed body states."""
    stated = json_object(checkpoint.body) or {}
    return (stated.get("size"), stated.get("root"), stated.get("chain_hash")) == (
        checkpoint.size,
        checkpoint.root_hash,
        checkpoint.chain_hash,
    )


def witness_path(size: int) -> Path:
    return Path(settings.AUDIT_WITNESS_DIR) / f"checkpoint-{size:012d}.json"


def witness_write(checkpoint: Checkpoint) -> Path:
    path = witness_path(checkpoint.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    content = {"body": checkpoint.body, "signature": checkpoint.signature, "key_id": checkpoint.key_id}
    temporary.write_text(json.dumps(content, sort_keys=True) + "\n")
    os.replace(temporary, path)
    temporary.write_text(path.read_text())
    os.replace(temporary, path.parent / LATEST)
    return path


def witness_newest() -> dict[str, str] | None:
    """The witness copy of the newest checkpoint: ``latest.json``, a second copy of it, so as not
    to list a directory that gains a file per checkpoint (or, without it, the last file by name,
    which sorts by size)."""
    directory = Path(settings.AUDIT_WITNESS_DIR)
    latest = directory / LATEST
    newest = latest if latest.is_file() else max(directory.glob("checkpoint-*.json"), default=None)
    return None if newest is None else json.loads(newest.read_text())


def witness_read() -> list[tuple[Path, dict[str, Any] | None]]:
    """Each witness copy, with what it holds; None for a file that is not a copy's JSON."""
    directory = Path(settings.AUDIT_WITNESS_DIR)
    if not directory.is_dir():
        return []
    copies = []
    for path in sorted(directory.glob("checkpoint-*.json")):
        copy = json_object(path.read_text(errors="replace"))
        body = json_object(copy.get("body")) if copy else None
        copies.append((path, copy if body and isinstance(body.get("size"), int) else None))
    return copies
