"""Signed checkpoints: every so often, the Merkle root over the entry hashes so far and the
chain hash there, signed, chained to the previous checkpoint, and copied to a witness
directory outside the database. A superuser who rewrites the tail of the chain consistently,
or cuts it, cannot also forge the signature or reach the witness copies."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import ledger, signing
from audit.merkle import Accumulator
from audit.models import AuditEvent, ChainHead, Checkpoint


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def checkpoint_make(*, force: bool = False) -> Checkpoint | None:
    """Make a checkpoint if the head has moved, and (unless ``force``) AUDIT_CHECKPOINT_EVERY_EVENTS
    events or AUDIT_CHECKPOINT_EVERY_MINUTES minutes have passed since the last one."""
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
        tree = Accumulator.resume(last.size, last.frontier) if last else Accumulator()
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


def witness_path(size: int) -> Path:
    return Path(settings.AUDIT_WITNESS_DIR) / f"checkpoint-{size:012d}.json"


def witness_write(checkpoint: Checkpoint) -> Path:
    path = witness_path(checkpoint.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    content = {"body": checkpoint.body, "signature": checkpoint.signature, "key_id": checkpoint.key_id}
    temporary.write_text(json.dumps(content, sort_keys=True) + "\n")
    os.replace(temporary, path)
    return path


def witness_read() -> list[dict[str, str]]:
    directory = Path(settings.AUDIT_WITNESS_DIR)
    if not directory.is_dir():
        return []
    return [json.loads(path.read_text()) for path in sorted(directory.glob("checkpoint-*.json"))]
