"""Exports for auditors: a signed bundle of (part of) the trail that anyone can verify offline
with ``python -m audit.offline_verify``, trusting neither Warden nor its database.

A bundle is a directory (or the same files in a zip):

``events.jsonl``
    The selected events in sequence order, one JSON object a line:
    ``{"actor_name":…,"chain_hash":…,"entry_hash":…,"prev_hash":…,"event":…}``, where ``event``
    is the event's canonical text written as it is, byte for byte: the bytes ``entry_hash`` is
    the SHA-256 of are everything after ``,"event":`` but the closing brace. It is the
    electronic copy that is verified.
``events.csv``
    The same events for people. A cell that begins with ``= + - @``, a tab or a carriage return
    is prefixed with ``'`` so a spreadsheet shows it instead of running it (and so is one that
    begins with ``'``, so the prefix can always be taken off again).
``proofs.jsonl``
    An inclusion proof of every exported event against one signed checkpoint: the Merkle nodes
    (``first``..``last`` sequence numbers and hash) that, with the exported events' entry
    hashes, rebuild that checkpoint's root. For a single event these are exactly its RFC 9162
    audit path; events that sit together share nodes; an export of the whole trail needs none.
``checkpoints.jsonl``
    Every signed checkpoint up to the one the proofs use, chained by ``prev``.
``manifest.json`` and ``manifest.sig``
    What was asked for and what is inside (filters, counts, sequence ranges, the SHA-256 and
    size of every other file, generator version, key fingerprint) as canonical JSON, and its
    Ed25519 signature in hex.

Starting an export is itself an audited change: the ``audit.exported`` event (who, which
filters, why) is written before any data leaves, and a checkpoint is signed at that event, so
the bundle covers the trail up to and including the record of its own making, which a filtered
export holds beside what its filters select. Rows are
streamed from the database and written as they come, so memory stays flat however many events
are exported (the manifest keeps one pair of numbers per contiguous run of sequence numbers).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from itertools import islice
from pathlib import Path
from typing import IO, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, F, Func, Q, QuerySet, TextField, Value, Window
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat, RowNumber
from django.utils import timezone

from audit import ledger, selectors, signing
from audit.checkpoints import checkpoint_make
from audit.merkle import leaf_hash, node_hash
from audit.models import EVENT_FIELDS, AuditEvent, Checkpoint
from audit.services import audit_record
from common.errors import Unavailable, ValidationFailed
from registry.models import RegisteredModel

FORMAT = "warden-audit-export/2"
FILES = ("events.jsonl", "events.csv", "proofs.jsonl", "checkpoints.jsonl")
CSV_COLUMNS = EVENT_FIELDS
_NEUTRALISED = ("=", "+", "-", "@", "\t", "\r", "'")
_CHUNK = 10_000
Node = tuple[int, int, bytes | None]  # a Merkle subtree: first leaf index, end index, hash
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


@dataclass(frozen=True)
class Selection:
    """Which events to export: the query, and the filters as the manifest and the export's own
    audit event record them."""

    q: Q
    filters: dict[str, Any]


def select(
    *,
    occurred_after: datetime | None = None,
    occurred_before: datetime | None = None,
    model: str = "",
    actor: str = "",
    action: str = "",
) -> Selection:
    """The export's filters: events at or after ``occurred_after`` and before
    ``occurred_before``, about one model (the one called ``model`` now, under each name it has
    had), by one user (a username; the trail holds the user's
    id, so a later rename does not hide their events), with one action."""
    if occurred_after and occurred_before and occurred_after >= occurred_before:
        raise ValidationFailed.on("occurred_before", "must be later than occurred_after")
    q, filters = Q(), {}
    if occurred_after:
        q &= Q(occurred_at__gte=occurred_after)
        filters["occurred_after"] = ledger.format_time(occurred_after)
    if occurred_before:
        q &= Q(occurred_at__lt=occurred_before)
        filters["occurred_before"] = ledger.format_time(occurred_before)
    if model:
        if (
            not RegisteredModel.objects.filter(name=model).exists()
            and not AuditEvent.objects.filter(model_name=model).exists()
        ):
            raise ValidationFailed.on("model", f"there is no model {model!r}, now or in the trail")
        q &= selectors.model_scope(model)
        filters["model"] = model
    if actor:
        q &= selectors.actor_scope(actor)
        filters["actor"] = actor
    if action:
        q &= Q(action=action)
        filters["action"] = action
    return Selection(q, filters)


def select_events(queryset: Any, description: str) -> Selection:
    """Events picked some other way (the admin's selection), described in words."""
    return Selection(Q(pk__in=queryset.values("pk")), {"selection": description})


@dataclass(frozen=True)
class Export:
    selection: Selection
    record: AuditEvent
    checkpoint: Checkpoint


def export_begin(*, actor: Any, selection: Selection, reason: str = "") -> Export:
    """Record the export and sign a checkpoint at that record, in one transaction; the bundle
    is then written from what the checkpoint covers. Refuses before recording anything when no
    signing key is configured."""
    try:
        signing.signing_key()
    except ImproperlyConfigured as exc:
        raise Unavailable(f"Exports are signed, and no signing key is configured: {exc}") from None
    with transaction.atomic():
        record = audit_record(
            actor=actor,
            action="audit.exported",
            object_type="audit.trail",
            object_id="export",
            after={"filters": selection.filters, "format": FORMAT},
            reason=reason,
            now=True,
        )
        checkpoint = checkpoint_make(force=True)
    assert record is not None and checkpoint is not None and checkpoint.size == record.seq
    if selection.q:  # a filtered export holds its own record too, proven as the rest are
        selection = Selection(selection.q | Q(seq=record.seq), selection.filters)
    return Export(selection, record, checkpoint)


@dataclass
class _Out:
    """A bundle file being written, from text or bytes."""

    handle: IO[bytes]

    def write(self, text: str | bytes) -> None:
        self.handle.write(text.encode() if isinstance(text, str) else text)

    def write_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)


def _summary(path: Path) -> dict[str, Any]:
    """A written file's SHA-256 and size, read back in large blocks (hashing as rows arrive
    would cost a Python call per row, holding the interpreter the other writer needs)."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def write_bundle(export: Export, directory: Path) -> dict[str, Any]:
    """Write the bundle's files into ``directory`` (made if missing, and must hold no bundle
    yet); returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    if any((directory / name).exists() for name in (*FILES, "manifest.json")):
        raise FileExistsError(f"{directory} already holds an export bundle")
    files: dict[str, dict[str, Any]] = {}

    def write(name: str, writer: Callable[[_Out], Any]) -> Any:
        with (directory / name).open("wb", buffering=1 << 20) as handle:
            result = writer(_Out(handle))
        files[name] = _summary(directory / name)
        return result

    # On PostgreSQL, outside a transaction, the CSV is made alongside the JSONL on a connection
    # of its own: both are COPYs the server formats, so the two run on two cores. The rows need
    # no shared snapshot: events up to the checkpoint are committed and never change.
    def write_csv() -> None:
        write("events.csv", lambda out: _write_csv(export, out))

    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with ThreadPoolExecutor(max_workers=1) as pool:
            csv_written = pool.submit(_own_connection, write_csv)
            count, ranges = write("events.jsonl", lambda out: _write_jsonl(export, out))
            csv_written.result()
    else:
        count, ranges = write("events.jsonl", lambda out: _write_jsonl(export, out))
        write_csv()
    write("proofs.jsonl", lambda out: out.write_all(_proof_lines(export)))
    write("checkpoints.jsonl", lambda out: out.write_all(_checkpoint_lines(export)))
    checkpoint = export.checkpoint
    manifest = {
        "format": FORMAT,
        "generator": f"warden {_version()}",
        "created_at": timezone.now(),
        "export_event": export.record.seq,
        "exported_by": export.record.actor_name,
        "filters": export.selection.filters,
        "events": count,
        "seq_ranges": ranges,
        "checkpoint": {"size": checkpoint.size, "root": checkpoint.root_hash, "chain_hash": checkpoint.chain_hash},
        "key_id": checkpoint.key_id,
        "files": files,
    }
    body = ledger.encode(manifest)
    signature, _ = signing.sign(body)
    (directory / "manifest.json").write_text(body + "\n", encoding="utf-8")
    (directory / "manifest.sig").write_text(signature + "\n", encoding="ascii")
    return manifest


def _own_connection(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function`` in this thread, on the thread's own database connection, then close it."""
    try:
        return function(*args)
    finally:
        connection.close()


def _exported(export: Export) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(export.selection.q, seq__lte=export.checkpoint.size).order_by("seq")


class _JsonString(Func):
    """A text as a JSON string literal, escaped by the database."""

    template = "to_json(%(expressions)s)::text"
    output_field = TextField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="json_quote(%(expressions)s)", **extra)


def _jsonl_line() -> Concat:
    """An event's line: ``actor_name`` and the hashes, then the canonical text as the ``event``
    member, unescaped (it is JSON already). Made by the database, which is quicker at it."""
    return Concat(
        Value('{"actor_name":'),
        _JsonString("actor_name"),
        Value(',"chain_hash":"'),
        "chain_hash",
        Value('","entry_hash":"'),
        "entry_hash",
        Value('","prev_hash":"'),
        "prev_hash",
        Value('","event":'),
        "canonical",
        Value("}"),
        output_field=TextField(),
    )


def _write_jsonl(export: Export, out: _Out) -> tuple[int, list[list[int]]]:
    """One line per event, from its canonical text (what the hashes cover). On PostgreSQL the
    lines come out of COPY as they are: a JSON line holds no control character, so with those
    as CSV delimiter and quote nothing is quoted or escaped."""
    lines = _exported(export).annotate(line=_jsonl_line()).values_list("line", flat=True)
    if connection.vendor == "postgresql":
        _copy(lines, out, "FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02'")
    else:
        rows = lines.iterator(chunk_size=_CHUNK)
        while chunk := list(islice(rows, _CHUNK)):
            out.write("".join(f"{line}\n" for line in chunk))
    numbered = (
        _exported(export)
        .annotate(run=F("seq") - Window(RowNumber(), order_by=F("seq").asc()))
        .values_list("seq", "run")
    )
    sql, params = numbered.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(seq), max(seq) FROM ({sql}) AS numbered GROUP BY run ORDER BY 1", params)
        ranges = [[first, last] for first, last in cursor.fetchall()]
    return sum(last - first + 1 for first, last in ranges), ranges


def _copy(queryset: QuerySet, out: _Out, options: str) -> None:
    """Stream a query's rows through PostgreSQL's COPY … TO STDOUT, formatted by the server."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        query = cursor.mogrify(sql, params).decode()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH ({options})", out.handle)


def _write_csv(export: Export, out: _Out) -> None:
    """The events' columns (not their hashed text: the offline verifier checks that the two
    agree, so an export also shows a column edited behind the hashes' back). PostgreSQL makes
    the rows itself with COPY, in its own process; elsewhere Python's csv module does."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    out.write(buffer.getvalue())
    if connection.vendor == "postgresql":
        _copy_csv(_exported(export), out)
        return
    rows = _exported(export).values_list(*CSV_COLUMNS).iterator(chunk_size=_CHUNK)
    while chunk := list(islice(rows, _CHUNK)):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([_csv_cell(value) for value in row] for row in chunk)
        out.write(buffer.getvalue())


def _csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return ledger.format_time(value)
    if isinstance(value, dict | list):
        value = _json(value)
    if isinstance(value, str) and value.startswith(_NEUTRALISED):
        return "'" + value
    return value


def _copy_csv(queryset: QuerySet[AuditEvent], out: _Out) -> None:
    """The cells ``_csv_cell`` makes, made by PostgreSQL."""
    cells = {f"csv_{name}": RawSQL(_PG_CELLS.get(name, _pg_text(name)), []) for name in CSV_COLUMNS}
    _copy(queryset.annotate(**cells).values_list(*cells), out, "FORMAT csv")


def _pg_text(column: str, expression: str = "") -> str:
    text = expression or f'"audit_auditevent"."{column}"::text'
    return (
        f"CASE WHEN left({text}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r', '''') THEN '''' || {text} ELSE {text} END"
    )


_PG_CELLS = {
    "seq": '"audit_auditevent"."seq"',
    "actor_id": '"audit_auditevent"."actor_id"',
    "occurred_at": ledger.sql_time('"audit_auditevent"."occurred_at"'),
    "source_ip": 'host("audit_auditevent"."source_ip")',
}


def _proof_lines(export: Export) -> Iterator[str]:
    q = export.selection.q
    if not q:  # everything up to the checkpoint is exported: the leaves alone rebuild the root
        return iter(())
    leaves = (
        AuditEvent.objects.filter(seq__lte=export.checkpoint.size)
        .order_by("seq")
        .annotate(exported=ExpressionWrapper(q, output_field=BooleanField()))
        .values_list("entry_hash", "exported")
        .iterator(chunk_size=_CHUNK)
    )
    return proof_nodes(leaves)


def proof_nodes(leaves: Iterable[tuple[str, bool]]) -> Iterator[str]:
    """The Merkle nodes a verifier needs besides the exported leaves to rebuild the root over
    ``leaves`` (every entry hash in sequence order, each marked exported or not): for each
    node with exported leaves under one child and none under the other, the other child's
    hash, as a ``proofs.jsonl`` line. One pass keeping only the tree's right edge (O(log n)
    memory); only subtrees without exported leaves are hashed."""
    edge: list[Node] = []  # a hash is None where exported leaves are under the subtree
    for index, (entry, exported) in enumerate(leaves):
        node = (index, index + 1, None if exported else leaf_hash(bytes.fromhex(entry)))
        while edge and edge[-1][1] - edge[-1][0] == node[1] - node[0]:
            node = yield from _join(edge.pop(), node)
        edge.append(node)
    while len(edge) > 1:  # the right edge of a tree whose size is not a power of two
        right = edge.pop()
        edge.append((yield from _join(edge.pop(), right)))


def _join(left: Node, right: Node) -> Generator[str, None, Node]:
    """The parent of two adjacent subtrees. When exactly one of them holds exported leaves,
    the other's hash is part of the proof: yield it (leaf indexes become sequence numbers)."""
    (first, _, left_hash), (_, end, right_hash) = left, right
    if (left_hash is None) != (right_hash is None):
        start, stop, digest = left if right_hash is None else right
        assert digest is not None
        yield f'{{"first":{start + 1},"hash":"{digest.hex()}","last":{stop}}}\n'
    return first, end, None if left_hash is None or right_hash is None else node_hash(left_hash, right_hash)


def _checkpoint_lines(export: Export) -> Iterator[str]:
    checkpoints = Checkpoint.objects.filter(size__lte=export.checkpoint.size).order_by("size")
    for body, signature, key_id in checkpoints.values_list("body", "signature", "key_id").iterator():
        yield ledger.encode({"body": body, "key_id": key_id, "signature": signature}) + "\n"


def _version() -> str:
    try:
        return version("warden")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown"


def export_to(export: Export, destination: Path) -> dict[str, Any]:
    """Write the bundle as a directory, or as a zip when ``destination`` ends in ``.zip``."""
    if destination.suffix != ".zip":
        return write_bundle(export, destination)
    if destination.exists():
        raise FileExistsError(f"{destination} already exists")
    with tempfile.TemporaryDirectory() as scratch:
        manifest = write_bundle(export, Path(scratch))
        with destination.open("wb") as out:
            for chunk in zip_stream(Path(scratch)):
                out.write(chunk)
    return manifest


class _Pipe(io.RawIOBase):
    """A write-only, unseekable stream whose bytes are collected and handed on in pieces."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self.pieces)
        self.pieces.clear()
        return data


def zip_stream(directory: Path, *, cleanup: bool = False) -> Iterator[bytes]:
    """The bundle in ``directory`` as a zip, produced piece by piece (zip's streaming form, with
    data descriptors), so a response can send it while it is made. With ``cleanup`` the
    directory is removed afterwards, also when the consumer stops early."""
    try:
        pipe = _Pipe()
        with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name in (*FILES, "manifest.json", "manifest.sig"):
                with (directory / name).open("rb") as source, archive.open(name, "w", force_zip64=True) as target:
                    while block := source.read(1 << 20):
                        target.write(block)
                        yield pipe.drain()
        yield pipe.drain()
    finally:
        if cleanup:
            shutil.rmtree(directory, ignore_errors=True)


def zip_bundle(export: Export) -> Iterator[bytes]:
    """Write the bundle to a scratch directory now, then hand it out as a zip, piece by piece;
    the scratch copy is removed when the last piece is out or the consumer stops early."""
    directory = Path(tempfile.mkdtemp(prefix="warden-export-"))
    try:
        write_bundle(export, directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return zip_stream(directory, cleanup=True)


def bundle_name(export: Export) -> str:
    return f"warden-audit-export-{export.checkpoint.size:012d}.zip"
