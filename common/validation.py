"""Checks shared by the services for free-form JSON documents (parameters, metrics, tags…)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from common.errors import ValidationFailed

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.\- ]{1,250}\Z")
TAG_VALUE_MAX = 5000
# Tag keys under this prefix are Warden's: facts it shows on the MLflow API (the team, the tier,
# the state, the digest…), refused as tags.
RESERVED_TAG_PREFIX = "warden."
MAX_JSON_DEPTH = 20
NOT_UNICODE = "must be valid Unicode (no lone surrogates)"
# Where a JSON body may hold a lone UTF-16 surrogate: an escape of one, or one encoded as bytes.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def lone_surrogate(body: bytes, data: Any) -> str | None:
    """Which field of ``data``, parsed from the JSON ``body``, holds a lone UTF-16 surrogate
    (``"\\ud800"``: valid JSON, but no text, which the database refuses): its top-level key, ""
    if ``data`` is no object, None if none does. Looked for only when the body could hold one."""
    if not _SURROGATE.search(body):
        return None
    fields = data.items() if isinstance(data, dict) else [("", data)]
    for field, value in fields:
        try:
            json.dumps([field, value], ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return str(field)
    return None


def is_number(text: str, digits: int = 18) -> bool:
    """ASCII digits only, at most ``digits`` of them: safe for ``int()`` and for a bigint column
    (``str.isdigit`` also accepts characters such as "²", which ``int()`` refuses)."""
    return re.fullmatch(rf"[0-9]{{1,{digits}}}", text) is not None


def sha256_digest(field: str, value: str) -> str:
    digest = value.strip().lower()
    if not SHA256_RE.match(digest):
        raise ValidationFailed.on(field, "must be a SHA-256 digest: 64 hexadecimal characters")
    return digest


def json_document(field: str, value: Any, *, must_be_object: bool = True) -> Any:
    """Refuse what PostgreSQL's jsonb or an auditor's parser would choke on: NUL characters,
    NaN/Infinity, and absurd nesting."""
    if must_be_object and not isinstance(value, dict):
        raise ValidationFailed.on(field, "must be a JSON object")
    _walk(field, value, 0)
    return value


def _walk(field: str, value: Any, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValidationFailed.on(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationFailed.on(field, "must not contain NUL characters")
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValidationFailed.on(field, NOT_UNICODE) from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationFailed.on(field, "numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(field, key, depth + 1)
            _walk(field, item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk(field, item, depth + 1)


def tags(field: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValidationFailed.on(field, "must be an object of key: value strings")
    for key, item in value.items():
        if tag_key(field, key).startswith(RESERVED_TAG_PREFIX):
            raise ValidationFailed.on(
                field, f"tag keys starting with {RESERVED_TAG_PREFIX!r} are Warden's and read-only"
            )
        tag_value(f"{field}.{key}", item)
    return value


def tag_key(field: str, key: Any) -> str:
    if not isinstance(key, str) or not TAG_KEY_RE.match(key):
        raise ValidationFailed.on(field, "tag keys are 1-250 characters: letters, digits, spaces, '_', '.', '-'")
    return key


def tag_value(field: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > TAG_VALUE_MAX or "\x00" in value:
        raise ValidationFailed.on(field, f"tag values are strings of at most {TAG_VALUE_MAX} characters")
    return value
