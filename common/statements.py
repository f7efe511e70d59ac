"""Plain statements that run on nearly every request, prepared once per connection on PostgreSQL.

PostgreSQL plans a statement each time it receives its text, and for the short lookups made on
every request, planning costs more than running: the API token with its user, or a model by name
with its owner and team, takes about 0.3 ms to plan and 0.1 ms to run here. Prepared, the plan is
made once per connection (after five runs PostgreSQL keeps a generic plan when it is no worse),
and the lookup costs the run and the round trip: 0.45 → 0.15 ms for the model by name.

Prepared statements belong to the database session and outlive its transactions, rolled back or
not. A pooler in front of PostgreSQL must therefore keep sessions (PgBouncer's session mode),
as the audit trail's prepared appends already require. A session that loses them all the same
(``DEALLOCATE ALL``, ``DISCARD ALL``, a pooler's reset query) is noticed at the first statement
that finds its name unknown: what the connection took as prepared is forgotten and prepared again,
at once outside a transaction, and from the next statement on inside one (whose statement failed,
so the transaction fails). Other databases run the text as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError

UNKNOWN_STATEMENT = "26000"  # invalid_sql_statement_name: the session has no statement of that name
_NAMED: dict[str, tuple[str, str, str]] = {}  # text → (name, PREPARE, EXECUTE)


def execute(cursor: Any, sql: str, params: Sequence[Any] = ()) -> None:
    """Run ``sql`` (``%s`` placeholders, as for ``cursor.execute``) on ``cursor``, a cursor of
    Django's connection, prepared on its session the first time it runs there."""
    connection = cursor.db
    if connection.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    if sql not in _NAMED:
        assert "%%" not in sql, "a prepared statement's text takes no literal %"
        pieces = sql.split("%s")
        name = "warden_" + hashlib.blake2s(sql.encode(), digest_size=8).hexdigest()
        text = "".join(piece + (f"${n}" if n < len(pieces) else "") for n, piece in enumerate(pieces, start=1))
        slots = f" ({', '.join(['%s'] * (len(pieces) - 1))})" if len(pieces) > 1 else ""
        _NAMED[sql] = (name, f"PREPARE {name} AS {text}", f"EXECUTE {name}{slots}")
    name, prepare, run = _NAMED[sql]
    session = connection.connection  # the driver's connection: a new one has none prepared
    prepared = getattr(connection, "prepared_statements", None)
    if prepared is None or prepared[0] is not session:
        prepared = connection.prepared_statements = (session, set[str]())
    if name not in prepared[1]:
        cursor.execute(prepare)
        prepared[1].add(name)
    try:
        cursor.execute(run, params)
    except DatabaseError as error:
        if getattr(error.__cause__, "pgcode", None) != UNKNOWN_STATEMENT:
            raise
        prepared[1].clear()  # the session lost what was prepared on it: prepare each again
        if connection.in_atomic_block:
            raise  # the transaction failed with this statement
        cursor.execute(prepare)
        prepared[1].add(name)
        cursor.execute(run, params)


def send_with_next(cursor: Any, sql: str, params: Sequence[Any] = ()) -> bool:
    """Let ``sql``, once prepared on the session, travel in front of the transaction's next
    statement or its ``COMMIT`` (``common.postgresql``: one round trip fewer); its error, if
    any, is then raised there. False, and nothing done, when it cannot: run it with ``execute``."""
    connection = cursor.db
    send = getattr(connection, "send_with_next", None)
    named = _NAMED.get(sql)
    prepared = getattr(connection, "prepared_statements", None)
    if send is None or named is None or prepared is None or prepared[0] is not connection.connection:
        return False
    return named[0] in prepared[1] and bool(send(cursor.mogrify(named[2], params).decode()))


def prepared_text(sql: str) -> str:
    """What a captured ``EXECUTE warden_… (…)`` runs: the text it was prepared from (``$n`` for
    its parameters); any other SQL as it is. For tests and query logs."""
    if sql.startswith("EXECUTE warden_"):
        name = sql.split()[1]
        for known, prepare, _ in _NAMED.values():
            if known == name:
                return prepare.split(" AS ", 1)[1]
    return sql


def any_of(connection: Any, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``("= ANY(%s)", [values])`` on PostgreSQL, where one prepared statement then serves any
    number of values; ``("IN (%s, …)", values)`` elsewhere. For ``column {sql}``; not empty."""
    if connection.vendor == "postgresql":
        return "= ANY(%s)", [list(values)]
    return f"IN ({', '.join(['%s'] * len(values))})", list(values)
