"""The ledger's arithmetic: the canonical form of an event and the hashes that chain it.

Pure functions over plain values, shared by the writer (``audit.services``), the verifier
and the offline verifier, so that all three hash exactly the same bytes.

Canonical form (after RFC 8785, JSON Canonicalization Scheme): UTF-8 JSON, object keys sorted
by code point, no insignificant whitespace, strings escaped as JSON requires (non-ASCII kept
as UTF-8), integers as integers, other numbers in ECMAScript's shortest round-trip form,
timestamps as text in UTC with exactly six fractional digits (``2026-11-27T14:05:09.123456Z``,
the precision the databases store). ``actor_name`` is not hashed: it is a display copy of
``actor_id``, so a person's name can be erased without breaking the chain.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

GENESIS = "0" * 64
# The event's fields that are hashed, in the canonical form's (sorted) order.
HASHED_FIELDS = (
    "action",
    "actor_id",
    "after",
    "before",
    "model_name",
    "object_id",
    "object_type",
    "occurred_at",
    "reason",
    "request_id",
    "seq",
    "source_ip",
)


def format_time(moment: datetime) -> str:
    """A timestamp as the canonical form writes it (``sql_time`` is the same in PostgreSQL)."""
    if moment.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sql_time(column: str) -> str:
    """PostgreSQL's expression for ``format_time`` of a timestamptz column or expression."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _number(value: float) -> str:
    """ECMAScript Number-to-String, as RFC 8785 requires: the shortest round-trip digits, in
    fixed notation from 1e-6 up to 1e21 and in exponent notation outside that range."""
    if not math.isfinite(value):
        raise ValueError("NaN and Infinity have no canonical JSON form")
    if value == 0:
        return "0"
    shortest = repr(value)
    if 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(shortest), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, _, exponent = shortest.partition("e")
    return f"{mantissa.removesuffix('.0')}e{'-' if exponent.startswith('-') else '+'}{int(exponent.lstrip('+-'))}"


# ``json.dumps(text, ensure_ascii=False)`` without building an encoder per call.
_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


def encode(value: Any) -> str:
    """Any JSON-able value in canonical form."""
    return _encode(value)


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, datetime):
        return _string(format_time(value))
    if isinstance(value, dict):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_string(k)}:{_encode(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} has no canonical JSON form; convert it first")


def canonical(fields: dict[str, Any]) -> str:
    """The canonical text of an event's hashed fields."""
    missing = set(HASHED_FIELDS) - set(fields)
    if missing:
        raise ValueError(f"canonical form needs {sorted(missing)}")
    return _encode({name: fields[name] for name in HASHED_FIELDS})


def canonical_template(fields: dict[str, Any]) -> tuple[str, str, str]:
    """The canonical text without the two values taken under the chain head's lock, in three
    literal pieces: ``a + format_time(occurred_at) + b + str(seq) + c`` is ``canonical(fields)``.
    So the database can finish the text, and hash it, in the statement that takes the lock."""
    pieces, text = [], "{"
    for name in HASHED_FIELDS:
        text += ("" if text == "{" else ",") + _string(name) + ":"
        if name == "occurred_at":
            pieces.append(text + '"')
            text = '"'
        elif name == "seq":
            pieces.append(text)
            text = ""
        else:
            text += _encode(fields[name])
    a, b = pieces
    return a, b, text + "}"


def entry_hash(canonical_text: str) -> str:
    return hashlib.sha256(canonical_text.encode()).hexdigest()


def chain_hash(prev_hash: str, entry: str) -> str:
    """SHA-256(prev_hash ‖ entry_hash), over the 32-byte digests."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(entry)).hexdigest()


def plain(value: Any) -> Any:
    """Bring a before/after document to JSON types the canonical form accepts (dates → text,
    decimals → numbers, tuples → lists) the way it will read back from the database."""
    return None if value is None else json.loads(_plain_encoder.encode(value))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    from uuid import UUID

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be recorded in the audit trail")


_plain_encoder = json.JSONEncoder(default=_default)
