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

from audit import ledger
from audit.models import AuditEvent, ChainHead

INTACT = 0
TAMPERED_ROW = 2
GAP_OR_FORK = 3

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
        codes = {f.code for f in self.findings or []}
        if TAMPERED_ROW in codes:
            return TAMPERED_ROW
        return max(codes, default=INTACT)


def _rows(chunk_size: int) -> Iterator[dict[str, Any]]:
    queryset = AuditEvent.objects.order_by("seq").values(*_COLUMNS)
    yield from queryset.iterator(chunk_size=chunk_size)


def _column_form(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ledger.HASHED_FIELDS} | {"occurred_at": ledger.format_time(row["occurred_at"])}


def verify(*, chunk_size: int = 5000) -> Report:
    report = Report(findings=[])
    findings = report.findings
    assert findings is not None
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
        report.events += 1
        report.first_seq = report.first_seq or seq
        report.last_seq = seq
        expected_seq, previous_seq, previous_chain, previous_time = seq + 1, seq, row["chain_hash"], row["occurred_at"]
    report.head_hash = previous_chain
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
