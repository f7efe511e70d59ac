"""MLflow's search grammar for the registry, turned into Django filters.

A filter is clauses joined by ``AND``; a clause is ``key comparator value``:

- keys: ``name``, ``run_id``, ``source_path``, ``version_number`` (versions only), each also
  as ``attribute.<key>``, and ``tags.<key>`` or ``tag.<key>`` (a key with spaces or dashes in
  backticks or quotes: ``tags.`my key``` or ``tags."my key"``);
  a row without the tag matches no clause on it, as in MLflow, but for MLflow's prompt marker:
  ``tags.`mlflow.prompt.is_prompt` != 'true'`` (or ``= 'false'``), which its client adds to
  filter prompts out, matches rows without it;
- comparators: ``=``, ``!=``, ``LIKE``, ``ILIKE``, ``IN``, ``NOT IN``; ``version_number`` also takes
  ``<``, ``<=``, ``>``, ``>=``;
- values: strings in single or double quotes, numbers for ``version_number``, and a
  parenthesised list of them after ``IN`` and ``NOT IN``.

``LIKE`` is case-sensitive and ``ILIKE`` is not, as in MLflow, on PostgreSQL and SQLite alike
(patterns run as regular expressions, because SQLite's LIKE ignores case). Anything else is
refused with a message saying what was expected where.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q, QuerySet

from common import validation
from common.errors import ValidationFailed
from registry.filters import TagValue

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?[0-9]+(?![A-Za-z_]))
      | (?P<op>!=|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>`[^`]+`|[A-Za-z_][A-Za-z0-9_]*(?:\.(?:`[^`]+`|"[^"]+"|'[^']+'|[A-Za-z0-9_.\-]+))?)
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"LIKE", "ILIKE", "IN", "NOT IN"}
_LISTS = {"IN", "NOT IN"}
# A page holds at most this many results whatever max_results asks, with a next_page_token
# when there are more, as MLflow's protocol allows; MLflow's client pages on.
PAGE_LIMIT = 1000


@dataclass(frozen=True)
class Clause:
    key: str  # "name", "run_id", "source_path", "version_number" or "tags.<key>"
    op: str
    value: Any  # a str, an int, or a tuple of them for IN


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValidationFailed.on("filter", f"cannot read {text[position:].strip()[:40]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


def _unquote(token: str) -> str:
    body = re.sub(r"\\(.)", r"\1", token[1:-1])
    if "\x00" in body:
        raise ValidationFailed.on("filter", "a value holds a NUL character")
    return body


def parse(text: str | None, *, keys: frozenset[str]) -> list[Clause]:
    """``keys``: the plain keys this search knows (``tags.<key>`` is always allowed)."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    clauses: list[Clause] = []
    i = 0

    def take(what: str) -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens):
            raise ValidationFailed.on("filter", f"expected {what} at the end")
        i += 1
        return tokens[i - 1]

    while True:
        kind, key = take("a key")
        if kind != "word":
            raise ValidationFailed.on("filter", f"expected a key, found {key!r}")
        key = _key(key, keys)
        kind, op = take("a comparator")
        op = op.upper() if kind == "word" else op
        if op == "NOT" and i < len(tokens) and tokens[i][1].upper() == "IN":
            op, i = "NOT IN", i + 1
        if not (kind == "op" or op in _WORD_OPS):
            raise ValidationFailed.on("filter", f"expected a comparator after {key}, found {op!r}")
        value: Any
        if op in _LISTS:
            if take("'('") != ("punct", "("):
                raise ValidationFailed.on("filter", f"{op} takes a parenthesised list, after {key}")
            items = []
            while True:
                items.append(_value(key, take("a value")))
                separator = take("',' or ')'")
                if separator == ("punct", ")"):
                    break
                if separator != ("punct", ","):
                    raise ValidationFailed.on("filter", f"expected ',' or ')' in the list after {key}")
            value = tuple(items)
        else:
            value = _value(key, take("a value"))
        _check_op(key, op, value)
        clauses.append(Clause(key, op, value))
        if i == len(tokens):
            return clauses
        kind, word = take("AND")
        if kind != "word" or word.upper() != "AND":
            raise ValidationFailed.on("filter", f"clauses are joined by AND, found {word!r}")


def _key(word: str, keys: frozenset[str]) -> str:
    prefix = next((p for p in ("tags.", "tag.") if word.lower().startswith(p)), None)
    if prefix:
        tag = word[len(prefix) :]
        tag = tag[1:-1] if tag[:1] in ("`", '"', "'") else tag
        if not tag:
            raise ValidationFailed.on("filter", "tags. needs a tag key")
        if "\x00" in tag:
            raise ValidationFailed.on("filter", "a tag key holds a NUL character")
        if tag.startswith(validation.RESERVED_TAG_PREFIX):
            raise ValidationFailed.on(
                "filter",
                f"tags.{tag} is one of Warden's facts, shown as a tag but not stored as one: it cannot be "
                "searched here; the native API's lists filter on team, tier, state and status",
            )
        return f"tags.{tag}"
    plain = word.strip("`").lower()
    plain = plain.removeprefix("attribute.")
    if plain not in keys:
        raise ValidationFailed.on("filter", f"unknown key {word!r}; use {', '.join(sorted(keys))} or tags.<key>")
    return plain


def _value(key: str, token: tuple[str, str]) -> Any:
    kind, text = token
    if key == "version_number":
        number = text if kind == "number" else _unquote(text) if kind == "string" else ""
        if re.fullmatch(r"[0-9]{1,9}", number):
            return int(number)
        raise ValidationFailed.on(
            "filter", f"version_number compares with a whole number of 1 to 9 digits, found {text!r}"
        )
    if kind != "string":
        raise ValidationFailed.on("filter", f"{key} compares with a quoted string, found {text!r}")
    return _unquote(text)


def _check_op(key: str, op: str, value: Any) -> None:
    allowed = {"=", "!=", "IN", "NOT IN"} | ({"<", "<=", ">", ">="} if key == "version_number" else {"LIKE", "ILIKE"})
    if op not in allowed:
        raise ValidationFailed.on("filter", f"{key} takes {', '.join(sorted(allowed))}, not {op}")


def _like_regex(pattern: str) -> str:
    out = []
    for char in pattern:
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return "^" + "".join(out) + "$"


def to_q(clauses: list[Clause], columns: dict[str, str]) -> tuple[Q, dict[str, Any]]:
    """The clauses as one Q, plus the annotations the tag clauses need.
    ``columns`` maps each plain key to its field path, and ``"tags"`` to the tags column."""
    q = Q()
    annotations: dict[str, Any] = {}
    for index, clause in enumerate(clauses):
        if not clause.key.startswith("tags."):
            q &= _compare(columns[clause.key], clause.op, clause.value)
            continue
        tag, field = clause.key[5:], f"_tag{index}"
        annotations[field] = TagValue(columns["tags"], tag)
        present, compared = Q(**{f"{field}__isnull": False}), _compare(field, clause.op, clause.value)
        not_a_prompt = tag == PROMPT_TAG and (clause.op, clause.value) in (("!=", "true"), ("=", "false"))
        q &= (~present | compared) if not_a_prompt else (present & compared)
    return q, annotations


_COMPARE: dict[str, Callable[[str, Any], Q]] = {
    "=": lambda f, v: Q(**{f: v}),
    "!=": lambda f, v: ~Q(**{f: v}),
    "<": lambda f, v: Q(**{f"{f}__lt": v}),
    "<=": lambda f, v: Q(**{f"{f}__lte": v}),
    ">": lambda f, v: Q(**{f"{f}__gt": v}),
    ">=": lambda f, v: Q(**{f"{f}__gte": v}),
    "IN": lambda f, v: Q(**{f"{f}__in": v}),
    "NOT IN": lambda f, v: ~Q(**{f"{f}__in": v}),
    "LIKE": lambda f, v: Q(**{f"{f}__regex": _like_regex(v)}),
    "ILIKE": lambda f, v: Q(**{f"{f}__iregex": _like_regex(v)}),
}


def _compare(field: str, op: str, value: Any) -> Q:
    return _COMPARE[op](field, value)


def filtered(queryset: QuerySet, clauses: list[Clause], *, columns: dict[str, str]) -> QuerySet:
    q, annotations = to_q(clauses, columns)
    return queryset.annotate(**annotations).filter(q) if annotations else queryset.filter(q)


# --- order and pages ---------------------------------------------------------------------


def ordering(order_by: list[str], columns: dict[str, str], default: list[str], natural: list[str]) -> list[Any]:
    """``["name ASC", "version_number DESC"]`` → Django ordering; ``columns`` maps the keys
    MLflow accepts to fields. Then, as MLflow's store does, the ``natural`` order's keys not
    named (ties come out as from MLflow), and the id, which keeps pages stable."""
    out: list[Any] = []
    named: set[str] = set()  # the fields, as keys that name the same one count as one
    given = order_by or default
    keys = {columns.get(item.split()[0]) for item in given if item.split()}
    for item in [*given, *(n for n in natural if columns[n.split()[0]] not in keys)]:
        parts = item.split()
        if not parts or len(parts) > 2 or parts[0] not in columns:
            raise ValidationFailed.on(
                "order_by", f"{item!r}: expected one of {', '.join(sorted(columns))}, then ASC or DESC"
            )
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise ValidationFailed.on("order_by", f"{item!r}: the direction is ASC or DESC")
        if columns[parts[0]] in named:
            raise ValidationFailed.on("order_by", f"{parts[0]}: its field is named twice")
        named.add(columns[parts[0]])
        field = F(columns[parts[0]])
        out.append(field.desc() if direction == "DESC" else field.asc())
    out.append(F("pk").asc())
    return out


def max_results(raw: Any, default: int, threshold: int, *, page_limit: int = PAGE_LIMIT) -> int:
    """The page size: ``max_results`` (MLflow's default and upper bound for this search), at
    most ``page_limit``."""
    if raw in (None, ""):
        return min(default, page_limit)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationFailed.on("max_results", "must be a whole number") from None
    if not 1 <= value <= threshold:
        raise ValidationFailed.on("max_results", f"must be between 1 and {threshold}")
    return min(value, page_limit)


# MLflow's marker of a prompt: its client searches models with ``!= 'true'`` (or ``= 'false'``)
# on it, meaning "not a prompt", so there a row without the tag matches.
PROMPT_TAG = "mlflow.prompt.is_prompt"
MAX_OFFSET = 10**9


def page_offset(token: str | None) -> int:
    """Page tokens are opaque to clients; inside, the offset of the next page."""
    if not token:
        return 0
    try:
        if len(token) > 64:  # ours are under 40 characters
            raise ValueError(token)
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        raise ValidationFailed.on("page_token", "not a page token this server returned") from None
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise ValidationFailed.on("page_token", "not a page token this server returned")
    return offset


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()
