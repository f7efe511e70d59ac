"""Plain statements that run on nearly every request, prepared once per connection on PostgreSQL.

PostgreSQL plans a statement each time it receives its text, and for the short lookups made on
every request, planning costs more than running: the API token with its user, or a model by name
with its owner and team, takes about 0.3 ms to plan and 0.1 ms to run here. Prepared, the plan is
made once per connection (after five runs PostgreSQL keeps a generic plan when it is no worse),
and the lookup costs the run and the round trip: 0.45 → 0.15 ms for the model by name.

Prepared statements belong to the database session and outlive its transactions, rolled back or
not. A pooler in front of PostgreSQL must therefore keep sessions (PgBouncer's session mode),
as the audit trail's prepared appends already require. A session that loses them all the same
(``DEALLOCATE``, ``DISCARD ALL``, a pooler's reset query) is noticed by Warden's backend at the
first statement that names one it lost (``common.postgresql``): the next statement here clears
the session's prepared statements and prepares each again as it comes. A statement that found its
name lost outside a transaction is then run again at once; inside one, the transaction has failed.

The names prepared on a session are kept on the driver's connection, which Warden's backend
gives them; on another backend, and on other databases, the text is run as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

_NAMED: dict[str, tuple[str, str, str]] = {}  # text → (name, PREPARE, EXECUTE)


def execute(cursor: Any, sql: str, params: Sequence[Any] = ()) -> None:
    """Run ``sql`` (``%s`` placeholders, as for ``cursor.execute``) on ``cursor``, a cursor of
    Django's connection, prepared on its session the first time it runs there."""
    session = cursor.db.connection  # the driver's connection, with the names prepared on it
    if getattr(session, "prepared", None) is None:
        cursor.execute(sql, params)
        return
    name, prepare, run = _named(sql)
    _prepare(cursor, session, name, prepare)
    try:
        cursor.execute(run, params)
    except DatabaseError:
        if not session.lost_statements or session.info.transaction_status != TRANSACTION_STATUS_IDLE:
            raise
        _prepare(cursor, session, name, prepare)  # lost outside a transaction: nothing ran, so again
        cursor.execute(run, params)


def _named(sql: str) -> tuple[str, str, str]:
    """(name, PREPARE, EXECUTE) of ``sql``; the name is a hash of its text."""
    if sql not in _NAMED:
        assert "%%" not in sql, "a prepared statement's text takes no literal %"
        pieces = sql.split("%s")
        name = "warden_" + hashlib.blake2s(sql.encode(), digest_size=8).hexdigest()
        text = "".join(piece + (f"${n}" if n < len(pieces) else "") for n, piece in enumerate(pieces, start=1))
        slots = f" ({', '.join(['%s'] * (len(pieces) - 1))})" if len(pieces) > 1 else ""
        _NAMED[sql] = (name, f"PREPARE {name} AS {text}", f"EXECUTE {name}{slots}")
    return _NAMED[sql]


def _prepare(cursor: Any, session: Any, name: str, prepare: str) -> None:
    if session.lost_statements:  # start afresh: preparing a name the session still holds would fail
        cursor.execute("DEALLOCATE ALL")
        session.prepared.clear()
        session.lost_statements = False
    if name not in session.prepared:
        cursor.execute(prepare)
        session.prepared.add(name)


def send_with_next(cursor: Any, sql: str, params: Sequence[Any] = ()) -> bool:
    """Let ``sql``, once prepared on the session, travel in front of the transaction's next
    statement or its ``COMMIT`` (``common.postgresql``: one round trip fewer); its error, if
    any, is then raised there. False, and nothing done, when it cannot: run it with ``execute``."""
    connection = cursor.db
    session, named = connection.connection, _NAMED.get(sql)
    if named is None or named[0] not in (getattr(session, "prepared", None) or ()) or session.lost_statements:
        return False
    return bool(connection.send_with_next(cursor.mogrify(named[2], params).decode()))


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
