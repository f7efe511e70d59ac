"""Check the ledger as stored: every row's hashes, the links between rows, the sequence, that
each column says what the hashed canonical text says, and that time never runs backwards.

Streams the table in sequence order in constant memory. Signed checkpoints (which also catch a
consistent rewrite of the tail, or its truncation) are checked on top of this.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from audit import ledger, signing
from audit.checkpoints import body_hash, witness_read
from audit.merkle import Accumulator
from audit.models import AuditEvent, ChainHead, Checkpoint

INTACT = 0
TAMPERED_ROW = 2
GAP_OR_FORK = 3
CHECKPOINT_DISAGREES = 4

_COLUMNS = (*ledger.HASHED_FIELDS, "canonical", "entry_hash", "prev_hash", "chain_hash")


@dataclass(frozen=True)
class Finding:
    code: int
    seq: int | None
    message: str


@dataclass
class Report:
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str = ledger.GENESIS
    findings: list[Finding] | None = None

    @property
    def code(self) -> int:
        """The most specific finding decides: a tampered row, else a gap or fork, else a
        disagreement with a checkpoint."""
        codes = {f.code for f in self.findings or []}
        return min(codes, default=INTACT)


def _rows(chunk_size: int) -> Iterator[dict[str, Any]]:
    queryset = AuditEvent.objects.order_by("seq").values(*_COLUMNS)
    yield from queryset.iterator(chunk_size=chunk_size)


def _column_form(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ledger.HASHED_FIELDS} | {"occurred_at": ledger.format_time(row["occurred_at"])}


def verify(*, chunk_size: int = 5000) -> Report:
    report = Report(findings=[])
    findings = report.findings
    assert findings is not None
    checkpoints = {c.size: c for c in Checkpoint.objects.order_by("size")}
    findings.extend(_check_signatures(list(checkpoints.values())))
    tree = Accumulator()
    expected_seq, previous_seq, previous_chain, previous_time = 1, 0, ledger.GENESIS, None
    for row in _rows(chunk_size):
        seq = row["seq"]
        if seq != expected_seq:
            findings.append(Finding(GAP_OR_FORK, seq, f"sequence gap: expected #{expected_seq}, found #{seq}"))
        if row["prev_hash"] != previous_chain:
            findings.append(Finding(GAP_OR_FORK, seq, f"#{seq} does not link to the row before it (#{previous_seq})"))
        columns = _column_form(row)
        if ledger.canonical(columns) != row["canonical"]:
            findings.append(Finding(TAMPERED_ROW, seq, f"#{seq}: {_differences(columns, row['canonical'])}"))
        if ledger.entry_hash(row["canonical"]) != row["entry_hash"]:
            findings.append(Finding(TAMPERED_ROW, seq, f"#{seq}: entry_hash is not the SHA-256 of its canonical text"))
        if ledger.chain_hash(row["prev_hash"], row["entry_hash"]) != row["chain_hash"]:
            findings.append(Finding(TAMPERED_ROW, seq, f"#{seq}: chain_hash is not SHA-256(prev_hash ‖ entry_hash)"))
        if previous_time is not None and row["occurred_at"] < previous_time:
            findings.append(Finding(TAMPERED_ROW, seq, f"#{seq} is timestamped before #{previous_seq}"))
        tree.add(bytes.fromhex(row["entry_hash"]))
        checkpoint = checkpoints.get(tree.size)
        if checkpoint is not None and (tree.root(), row["chain_hash"]) != (checkpoint.root_hash, checkpoint.chain_hash):
            findings.append(
                Finding(
                    CHECKPOINT_DISAGREES,
                    seq,
                    f"the chain up to #{seq} differs from the signed checkpoint at #{checkpoint.size}: "
                    "rewritten since it was signed",
                )
            )
        report.events += 1
        report.first_seq = report.first_seq or seq
        report.last_seq = seq
        expected_seq, previous_seq, previous_chain, previous_time = seq + 1, seq, row["chain_hash"], row["occurred_at"]
    report.head_hash = previous_chain
    last = report.last_seq or 0
    for size in sorted(size for size in checkpoints if size > last):
        findings.append(
            Finding(
                CHECKPOINT_DISAGREES, size, f"a signed checkpoint at #{size} but the chain ends at #{last}: truncated"
            )
        )
    findings.extend(_check_witness(checkpoints, last))
    head = ChainHead.objects.filter(pk=1).first()
    if head is None or (head.seq, head.chain_hash) != (report.last_seq or 0, previous_chain):
        at = f"#{head.seq}" if head else "missing"
        findings.append(
            Finding(
                GAP_OR_FORK,
                report.last_seq,
                f"the chain head ({at}) does not match the last event (#{report.last_seq or 0})",
            )
        )
    return report


def _differences(columns: dict[str, Any], canonical_text: str) -> str:
    try:
        hashed = json.loads(canonical_text)
    except ValueError:
        return "the canonical text is not JSON"
    changed = sorted(
        name
        for name in ledger.HASHED_FIELDS
        if json.dumps(hashed.get(name), sort_keys=True) != json.dumps(columns[name], sort_keys=True)
    )
    if changed:
        return f"column(s) {', '.join(changed)} differ from the hashed canonical text"
    return "the canonical text is not in canonical form"


def _verify_keys() -> dict[str, str]:
    """key id → public key: AUDIT_VERIFY_KEYS, or the signing key's own public half."""
    keys = list(settings.AUDIT_VERIFY_KEYS)
    if not keys and settings.AUDIT_SIGNING_KEY:
        keys = [signing.public_hex(signing.signing_key())]
    return {signing.key_id(key): key for key in keys}


def _check_signatures(checkpoints: list[Checkpoint]) -> list[Finding]:
    findings, keys, previous = [], _verify_keys(), ledger.GENESIS
    for checkpoint in checkpoints:
        at = f"checkpoint #{checkpoint.size}"
        public = keys.get(checkpoint.key_id)
        if public is None:
            findings.append(Finding(CHECKPOINT_DISAGREES, checkpoint.size, f"{at} is signed by an unknown key"))
        elif not signing.verify(public, checkpoint.body, checkpoint.signature):
            findings.append(Finding(CHECKPOINT_DISAGREES, checkpoint.size, f"{at}: the signature does not verify"))
        stated = json.loads(checkpoint.body)
        columns = {"size": checkpoint.size, "root": checkpoint.root_hash, "chain_hash": checkpoint.chain_hash}
        if any(stated.get(name) != value for name, value in columns.items()) or stated.get("prev") != previous:
            findings.append(
                Finding(CHECKPOINT_DISAGREES, checkpoint.size, f"{at}: its columns or link differ from what was signed")
            )
        previous = body_hash(checkpoint.body)
    return findings


def _check_witness(checkpoints: dict[int, Checkpoint], last: int) -> list[Finding]:
    """Every witness copy must be in the database unchanged; one the database lacks means its
    checkpoints (and perhaps the events under them) were removed."""
    findings = []
    for copy in witness_read():
        size = json.loads(copy["body"])["size"]
        stored = checkpoints.get(size)
        if stored is None:
            findings.append(
                Finding(
                    CHECKPOINT_DISAGREES,
                    size,
                    f"the witness holds a checkpoint at #{size} that the database does not (the chain ends at #{last})",
                )
            )
        elif (stored.body, stored.signature) != (copy["body"], copy["signature"]):
            findings.append(Finding(CHECKPOINT_DISAGREES, size, f"checkpoint #{size} differs from its witness copy"))
    return findings
