"""Check the ledger as stored: every row's hashes, the links between rows, the sequence, that
each column says what the hashed canonical text says, and that time never runs backwards.
Signed checkpoints (which also catch a consistent rewrite of the tail, or its truncation) are
checked on top of this.

The rows are walked one of two ways, with the same findings (but for the consistent rewrites that
``_walk_in_sql`` leaves to the checkpoints):

- In Python (SQLite, and the reference): streams the table in sequence order in constant memory,
  re-encoding every row's canonical form. About 14k rows/s.
- On PostgreSQL, set-based: one query checks every row where it is stored and returns only the
  rows that fail something (and the few needed to report: the first, the last, the ones at a
  checkpoint). Each failing row is then checked again by the Python walk's own code, with the
  row before it, so its findings and their messages are the reference's. The Merkle roots at
  the checkpoints are computed in Python from the entry hashes, level by level in blocks, in a
  thread reading through a second connection while the query runs. Most of its time is
  PostgreSQL rebuilding every canonical text from its columns and hashing it
  (bench/verify_speed.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2
from django.db import DataError, connection, transaction
from django.db.models import TextField
from django.db.models.functions import Cast

from audit import ledger, merkle, signing
from audit.checkpoints import body_hash, columns_signed, json_object, signature_problem, witness_read
from audit.merkle import Accumulator
from audit.models import AuditEvent, ChainHead, Checkpoint

INTACT = 0
TAMPERED_ROW = 2
GAP_OR_FORK = 3
CHECKPOINT_DISAGREES = 4

_COLUMNS = (*ledger.HASHED_FIELDS, "canonical", "entry_hash", "prev_hash", "chain_hash")
# The documents as stored, beside their values: a key given twice in one object reads as its
# last value, the same as the hashed one, while a person reading the column may take the first.
_DOCUMENTS = ("before", "after")
_DOCUMENT_TEXTS = {f"{name}_text": Cast(name, TextField()) for name in _DOCUMENTS}
# The rows as the Python walk reads them: the documents as text only, read here (``_read``).
_READ = tuple(name for name in _COLUMNS if name not in _DOCUMENTS)
_HASH = re.compile("[0-9a-f]{64}")
# More failing rows than this and the set-based walk hands over to the Python one: the ledger is
# broadly damaged, and the streaming walk names every row without holding them all.
RECHECK_LIMIT = 10_000


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


@dataclass(frozen=True)
class _Before:
    """What a row is checked against: the row before it in sequence order."""

    seq: int = 0
    chain_hash: str = ledger.GENESIS
    occurred_at: datetime | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> _Before:
        return cls(row["seq"], row["chain_hash"], row["occurred_at"])


@dataclass
class _Walk:
    """The per-row and per-checkpoint findings of a walk over the rows, and where it ended."""

    findings: list[Finding] = field(default_factory=list)
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str = ledger.GENESIS


def verify(*, chunk_size: int = 5000, set_based: bool | None = None) -> Report:
    """``set_based``: walk the rows in SQL (PostgreSQL only; the default there) or in Python."""
    if set_based is None:
        set_based = connection.vendor == "postgresql"
    if set_based and connection.vendor != "postgresql":
        raise ValueError("the set-based walk needs PostgreSQL")
    checkpoints = {c.size: c for c in Checkpoint.objects.order_by("size")}
    findings = _check_signatures(list(checkpoints.values()))
    walk = (_walk_in_sql(checkpoints) if set_based else None) or _walk_in_python(checkpoints, chunk_size)
    findings.extend(walk.findings)
    last = walk.last_seq or 0
    for size in sorted(size for size in checkpoints if size > last):
        findings.append(
            Finding(
                CHECKPOINT_DISAGREES, size, f"a signed checkpoint at #{size} but the chain ends at #{last}: truncated"
            )
        )
    findings.extend(_check_witness(checkpoints, last))
    head = ChainHead.objects.filter(pk=1).first()
    if head is None or (head.seq, head.chain_hash) != (last, walk.head_hash):
        at = f"#{head.seq}" if head else "missing"
        findings.append(
            Finding(GAP_OR_FORK, walk.last_seq, f"the chain head ({at}) does not match the last event (#{last})")
        )
    return Report(walk.events, walk.first_seq, walk.last_seq, walk.head_hash, findings)


# --- the reference walk, in Python ----------------------------------------------------------


def _rows(chunk_size: int) -> Iterator[dict[str, Any]]:
    queryset = AuditEvent.objects.order_by("seq").values(*_READ, **_DOCUMENT_TEXTS)
    for row in queryset.iterator(chunk_size=chunk_size):
        yield _read(row)


class _Unreadable:
    """A document nested deeper than Python's reader goes, which no event could hold: it has no
    canonical form, and the row is named as tampered."""


def _read(row: dict[str, Any]) -> dict[str, Any]:
    for name in _DOCUMENTS:
        text = row[f"{name}_text"]
        try:
            row[name] = None if text is None else json.loads(text)
        except RecursionError:
            row[name] = _Unreadable()
    return row


def _walk_in_python(checkpoints: dict[int, Checkpoint], chunk_size: int) -> _Walk:
    walk, tree, before = _Walk(), Accumulator(), _Before()
    for row in _rows(chunk_size):
        walk.findings.extend(_row_findings(row, before))
        tree.add(_leaf(row["entry_hash"]))
        checkpoint = checkpoints.get(tree.size)
        if checkpoint is not None:
            walk.findings.extend(_checkpoint_findings(checkpoint, row["seq"], tree.root(), row["chain_hash"]))
        walk.events += 1
        walk.first_seq = walk.first_seq or row["seq"]
        walk.last_seq, walk.head_hash, before = row["seq"], row["chain_hash"], _Before.of(row)
    return walk


def _row_findings(row: dict[str, Any], before: _Before) -> list[Finding]:
    """Everything wrong with one row, given the row before it."""
    findings, seq = [], row["seq"]
    if seq != before.seq + 1:
        findings.append(Finding(GAP_OR_FORK, seq, f"sequence gap: expected #{before.seq + 1}, found #{seq}"))
    if row["prev_hash"] != before.chain_hash:
        findings.append(Finding(GAP_OR_FORK, seq, f"#{seq} does not link to the row before it (#{before.seq})"))
    columns = _column_form(row)
    try:
        rebuilt: str | None = ledger.canonical(columns)
    except (ValueError, TypeError, RecursionError):  # a value no event could hold: 1e400, say
        rebuilt = None
    if rebuilt is None:
        findings.append(Finding(TAMPERED_ROW, seq, f"#{seq}: a column holds a value with no canonical form"))
    elif rebuilt != row["canonical"]:
        findings.append(Finding(TAMPERED_ROW, seq, f"#{seq}: {_differences(columns, row['canonical'])}"))
    twice = [name for name in _DOCUMENTS if _key_twice(row[f"{name}_text"])]
    if twice:
        findings.append(
            Finding(TAMPERED_ROW, seq, f"#{seq}: column(s) {', '.join(twice)} give a key twice in one object")
        )
    if ledger.entry_hash(row["canonical"]) != row["entry_hash"]:
        findings.append(Finding(TAMPERED_ROW, seq, f"#{seq}: entry_hash is not the SHA-256 of its canonical text"))
    not_hex = [name for name in ("prev_hash", "entry_hash", "chain_hash") if not _HASH.fullmatch(row[name] or "")]
    if not_hex:
        findings.append(Finding(TAMPERED_ROW, seq, f"#{seq}: {', '.join(not_hex)} not 64 hexadecimal digits"))
    elif ledger.chain_hash(row["prev_hash"], row["entry_hash"]) != row["chain_hash"]:
        findings.append(Finding(TAMPERED_ROW, seq, f"#{seq}: chain_hash is not SHA-256(prev_hash ‖ entry_hash)"))
    if before.occurred_at is not None and row["occurred_at"] < before.occurred_at:
        findings.append(Finding(TAMPERED_ROW, seq, f"#{seq} is timestamped before #{before.seq}"))
    return findings


def _checkpoint_findings(checkpoint: Checkpoint, seq: int, root: str | None, chain_hash: str) -> list[Finding]:
    if (root, chain_hash) == (checkpoint.root_hash, checkpoint.chain_hash):
        return []
    return [
        Finding(
            CHECKPOINT_DISAGREES,
            seq,
            f"the chain up to #{seq} differs from the signed checkpoint at #{checkpoint.size}: "
            "rewritten since it was signed",
        )
    ]


def _key_twice(text: str | None) -> bool:
    def once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise KeyError
        return dict(pairs)

    try:
        json.loads(text or "null", object_pairs_hook=once)
    except KeyError:
        return True
    except (ValueError, RecursionError):  # not JSON, or too deep to read: the values' comparison names it
        return False
    return False


def _column_form(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ledger.HASHED_FIELDS} | {"occurred_at": ledger.format_time(row["occurred_at"])}


def _differences(columns: dict[str, Any], canonical_text: str) -> str:
    try:
        hashed = json.loads(canonical_text)
    except (ValueError, RecursionError):
        return "the canonical text is not JSON"
    changed = sorted(
        name
        for name in ledger.HASHED_FIELDS
        if json.dumps(hashed.get(name), sort_keys=True) != json.dumps(columns[name], sort_keys=True)
    )
    if changed:
        return f"column(s) {', '.join(changed)} differ from the hashed canonical text"
    return "the canonical text is not in canonical form"


# --- the set-based walk, on PostgreSQL --------------------------------------------------------


def _rebuilt(string: Callable[[str], str]) -> str:
    """An event's canonical text rebuilt from its columns, as ``ledger.canonical`` writes it, with
    ``string`` writing a name or id column as a JSON string; the reason, written by people, often
    holds a line break, so it is always escaped. The documents as stored
    (``audit.models.Document``: their canonical text), the time as ``ledger.format_time`` writes
    it, the address as ``abbrev`` writes it (nothing in it is escaped). Every piece is
    self-delimiting (a JSON string or document, or digits followed by a fixed comma), so a rebuilt
    text equal to the hashed one means every column holds what the hashed text says."""
    return " || ".join(
        [
            """'{"action":' || """ + string("e.action"),
            """',"actor_id":' || coalesce(e.actor_id::text, 'null')""",
            """',"after":' || coalesce(e.after::text, 'null')""",
            """',"before":' || coalesce(e.before::text, 'null')""",
            """',"model_name":' || """ + string("e.model_name"),
            """',"object_id":' || """ + string("e.object_id"),
            """',"object_type":' || """ + string("e.object_type"),
            f"""',"occurred_at":"' || {ledger.sql_time("e.occurred_at")} || '"'""",
            """',"reason":' || """ + _escaped("e.reason"),
            """',"request_id":' || """ + string("e.request_id"),
            """',"seq":' || e.seq::text""",
            """',"source_ip":' || coalesce('"' || abbrev(e.source_ip) || '"', 'null') || '}'""",
        ]
    )


def _escaped(column: str) -> str:
    """The JSON string of a text column, escaped by the database as the canonical form escapes it."""
    return f"to_json({column})::text"


def _quoted(column: str) -> str:
    """The JSON string of a text column without a quote or a backslash: the text between quotes,
    which is what escaping it gives unless it holds a control character. Such a character then
    stands unescaped in the rebuilt text, which a canonical text never holds, so the rebuilt text
    differs from the hashed one and the row is checked with ``_escaped`` instead: a rebuilt text
    equal to the hashed one is the same as ``_escaped`` would have made. Escaping is most of the
    cost of rebuilding a text (measured in bench/verify_speed.py), and names and ids need none."""
    return f"""CASE WHEN strpos({column}, '"') = 0 AND strpos({column}, E'\\\\') = 0
              THEN '"' || {column} || '"' ELSE {_escaped(column)} END"""


# Every row checked where it is stored, in one pass in sequence order; out come the rows that fail
# a check, and the first two (the report's first sequence number), the last (its head) and the
# ones at a checkpoint's size. A row passes when:
# - entry_hash is the SHA-256 of the canonical text and chain_hash that of prev_hash ‖ entry_hash;
# - the canonical text is the one rebuilt from the columns (``_rebuilt``): quickly, or with every
#   string escaped for the few rows whose names or ids hold a control character;
# - it links to the row before: the next sequence number, prev_hash that row's chain_hash (the
#   genesis hash for the first), and no earlier timestamp.
# A row that fails is checked again by the Python walk, which compares values: a document column
# rewritten into another form of the same values (other spacing) fails here and passes there.
# The window is ordered by ok after seq (which is unique, so the order is seq's) because PostgreSQL
# computes a window's sort keys below it: that is what puts the per-row checks, nearly all the
# work, in the parallel workers rather than in the one process that runs the window.
_MARKED_ROWS = f"""
SELECT n, id, previous_id, seq, chain_hash, ok AND linked, last
FROM (
    SELECT id, seq, chain_hash, ok,
           row_number() OVER w AS n,
           lag(id) OVER w AS previous_id,
           lead(id) OVER w IS NULL AS last,
           coalesce(
               seq = coalesce(lag(seq) OVER w, 0) + 1
               AND prev_hash = coalesce(lag(chain_hash) OVER w, %(genesis)s)
               AND occurred_at >= coalesce(lag(occurred_at) OVER w, occurred_at),
               false
           ) AS linked
    FROM (
        SELECT e.id, e.seq, e.prev_hash, e.chain_hash, e.occurred_at,
               coalesce(
                   encode(sha256(convert_to(e.canonical, 'UTF8')), 'hex') = e.entry_hash
                   AND encode(sha256(decode(e.prev_hash, 'hex') || decode(e.entry_hash, 'hex')), 'hex') = e.chain_hash
                   AND (e.canonical = {_rebuilt(_quoted).replace("%", "%%")}
                        OR e.canonical = {_rebuilt(_escaped).replace("%", "%%")}),
                   false
               ) AS ok
        FROM audit_auditevent e
    ) AS checked
    WINDOW w AS (ORDER BY seq, ok)
) AS walked
WHERE NOT (ok AND linked) OR n <= 2 OR last OR n = ANY(%(sizes)s::bigint[])
ORDER BY n
LIMIT %(limit)s
"""


_PLANNER_SETTINGS = """
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL parallel_leader_participation = off;
SET LOCAL jit = off
"""


@dataclass(frozen=True)
class _Mark:
    n: int
    id: int
    previous_id: int | None
    seq: int
    chain_hash: str
    passed: bool
    last: bool


def _walk_in_sql(checkpoints: dict[int, Checkpoint]) -> _Walk | None:
    """The set-based walk, or None when the Python walk should do it: a canonical text that is not
    JSON or a hash that is not hex stops the query (the Python walk names the row), and so many
    failing rows that rechecking them one by one would not pay.

    What it relies on for the rows it passes: an intact canonical text is the canonical form of
    what was recorded, so rebuilding it from the columns finds any column that was changed, and
    the entry hash finds any change to the text. The documents are taken as stored, not
    re-encoded, and names and ids without a quote or a backslash are not escaped, so a document
    rewritten into another form of the same values (other spacing, key order or number form), or
    a name written with a control character left unescaped, in both its column and the canonical
    text, with every hash after it recomputed, is not named row by row as the Python walk names
    it; that rewrite is a consistent rewrite of the chain, which the signed checkpoints and their
    witness copies catch."""
    sizes = sorted(checkpoints)
    alongside = not connection.in_atomic_block  # another connection sees only what is committed
    try:
        with transaction.atomic(), ThreadPoolExecutor(max_workers=1) as pool:
            later = None
            if alongside:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_export_snapshot()")
                    (snapshot,) = cursor.fetchone()
                later = pool.submit(merkle.roots, _leaves_elsewhere(snapshot, max(sizes, default=0)), sizes)
            marks = _marked_rows(sizes)
            if marks is None:
                return None
            try:
                roots = later.result() if later else None
            except psycopg2.OperationalError:  # no second connection to be had: read them here instead
                roots = None
            if roots is None:
                roots = merkle.roots(_leaves(min(max(sizes, default=0), marks[-1].n if marks else 0)), sizes)
    except DataError:
        return None
    failing = [mark for mark in marks if not mark.passed]
    before_them = {mark.previous_id for mark in failing if mark.previous_id is not None}
    rows = _rows_by_id({mark.id for mark in failing} | before_them)
    walk = _Walk()
    for mark in marks:
        if not mark.passed:
            before = _Before() if mark.previous_id is None else _Before.of(rows[mark.previous_id])
            walk.findings.extend(_row_findings(rows[mark.id], before))
        checkpoint = checkpoints.get(mark.n)
        if checkpoint is not None:
            walk.findings.extend(_checkpoint_findings(checkpoint, mark.seq, roots.get(mark.n), mark.chain_hash))
        if mark.n <= 2:
            walk.first_seq = walk.first_seq or mark.seq
        if mark.last:
            walk.events, walk.last_seq, walk.head_hash = mark.n, mark.seq, mark.chain_hash
    return walk


def _marked_rows(sizes: list[int]) -> list[_Mark] | None:
    """The rows the set-based query returns, or None when more than RECHECK_LIMIT fail.

    A plain query, not a server-side cursor: PostgreSQL never runs a cursor's query in parallel,
    and what comes back is small. The planner is told that workers are cheap (it cannot know that
    hashing and parsing every row is most of the cost), that the process running the window
    should only do that (measured: taking rows off the workers promptly is faster than helping
    them), and not to compile the query (it takes longer than it saves here). Rolling back to the
    savepoint undoes these settings."""
    limit = RECHECK_LIMIT + len(sizes) + 3
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_PLANNER_SETTINGS)
        cursor.execute(_MARKED_ROWS, {"genesis": ledger.GENESIS, "sizes": sizes, "limit": limit})
        marks = [_Mark(*row) for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return None if len(marks) == limit else marks


def _rows_by_id(ids: set[int]) -> dict[int, dict[str, Any]]:
    """The rows to recheck, read as the Python walk reads them."""
    rows = AuditEvent.objects.filter(pk__in=ids).values("pk", *_READ, **_DOCUMENT_TEXTS)
    return {row.pop("pk"): _read(row) for row in rows.iterator(chunk_size=1000)}


def _leaves_elsewhere(snapshot: str, count: int) -> Iterator[bytes]:
    """The same leaves, read through a connection of its own in ``snapshot``, so that the Merkle
    roots are computed in a thread while the set-based query runs (psycopg2 releases the GIL
    while it waits for the server)."""
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        other.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with other.cursor() as cursor:
            cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
        with other.cursor(name="audit_verify_leaves") as cursor:
            cursor.itersize = 1 << merkle.BLOCK_HEIGHT
            cursor.execute("SELECT entry_hash FROM audit_auditevent ORDER BY seq LIMIT %s", [count])
            for (entry,) in cursor:
                try:
                    yield bytes.fromhex(entry)
                except ValueError:
                    yield _leaf(entry)
    finally:
        other.close()


def _leaves(count: int) -> Iterator[bytes]:
    """The first ``count`` entry hashes, in sequence order, as the Merkle tree's leaf data."""
    hashes = AuditEvent.objects.order_by("seq").values_list("entry_hash", flat=True)[:count]
    for entry in hashes.iterator(chunk_size=1 << merkle.BLOCK_HEIGHT):
        try:
            yield bytes.fromhex(entry)
        except ValueError:
            yield _leaf(entry)


def _leaf(entry_hash: str) -> bytes:
    """An entry hash as the Merkle tree's leaf data: its bytes, or for one that is not hex (the
    row is named as tampered) its text, so the roots over it differ from those signed."""
    try:
        return bytes.fromhex(entry_hash)
    except ValueError:
        return entry_hash.encode()


# --- checkpoints ------------------------------------------------------------------------------


def _check_signatures(checkpoints: list[Checkpoint]) -> list[Finding]:
    findings, keys, previous = [], signing.verify_keys(), ledger.GENESIS
    for checkpoint in checkpoints:
        problem = signature_problem(checkpoint, keys)
        if problem:
            findings.append(Finding(CHECKPOINT_DISAGREES, checkpoint.size, problem))
        if not columns_signed(checkpoint) or (json_object(checkpoint.body) or {}).get("prev") != previous:
            message = f"checkpoint #{checkpoint.size}: its columns or link differ from what was signed"
            findings.append(Finding(CHECKPOINT_DISAGREES, checkpoint.size, message))
        previous = body_hash(checkpoint.body)
    return findings


def _check_witness(checkpoints: dict[int, Checkpoint], last: int) -> list[Finding]:
    """Every witness copy must be in the database unchanged; one the database lacks means its
    checkpoints (and perhaps the events under them) were removed."""
    findings = []
    for path, copy in witness_read():
        if copy is None:
            message = f"the witness file {path.name} is not a checkpoint's copy: altered or replaced"
            findings.append(Finding(CHECKPOINT_DISAGREES, None, message))
            continue
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
        elif (stored.body, stored.signature) != (copy["body"], copy.get("signature")):
            findings.append(Finding(CHECKPOINT_DISAGREES, size, f"checkpoint #{size} differs from its witness copy"))
    return findings
