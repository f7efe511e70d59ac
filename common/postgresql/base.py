"""Django's PostgreSQL backend (``ENGINE = "common.postgresql"``), with fewer round trips: a
health check that sends nothing, and a transaction's ``BEGIN`` and ``COMMIT`` that travel with
other statements.

**The health check.** With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first
statement of every request that reuses a connection, so that a connection the server has closed
(a restart, a failover, ``pg_terminate_backend``, an idle timeout) is replaced instead of failing
the request: one round trip per request, 8% of a gunicorn worker's samples in a version search.
Here the connection's socket is polled instead. An idle connection is sent nothing by the server
except the notice that it is being closed (or a changed run-time parameter, which is harmless to
act on), so if anything is waiting to be read, or the driver already knows the connection is
closed, it is closed and the request opens a new one. go-sql-driver/mysql checks a connection
before reuse the same way. Neither check notices a connection whose network went silent: its
first statement waits for the TCP timeout either way. After an error Django still runs the full
check (``is_usable``) before reusing the connection.

**The transaction's ends.** psycopg2 begins a transaction by sending ``BEGIN`` on its own and
waiting for the answer before the first statement, and ends it with a ``COMMIT`` of its own:
each a round trip, on a machine where one costs about 0.3 ms. Here the driver stays in
autocommit and this backend sends ``BEGIN`` itself, in front of the transaction's first
statement, in the same message (PostgreSQL's simple query protocol runs the statements of one
message in order, and stops at the first error). A statement whose answer nobody reads can wait
for the next one in the same way (``send_with_next``: the audit trail's pending event), and
``COMMIT`` carries what waits ahead of it and what must follow it (``send_after_commit``: the
trail's wait for durability, ``audit.services._release_early``). A version written through the
API is then three round trips (its token; ``BEGIN`` with the model's lock; the version's insert,
which needs no answer either, its event, ``COMMIT`` and the wait) instead of seven. A transaction that sent nothing ends
without a word; one whose statement failed, its error caught, is rolled back and its commit
raises. ``set_autocommit(False)`` called directly still hands the transaction to the driver, as
in Django's own backend.

**Prepared statements lost.** The server's answer that a prepared statement does not exist (the
session lost them to ``DEALLOCATE`` or ``DISCARD ALL``) is noticed on the driver's connection,
which also keeps the names ``common.statements`` has prepared on it, so that they are prepared
again.

What differs inside a transaction: a server-side cursor (``QuerySet.iterator()``) is declared
``WITH HOLD``, as Django declares it outside one, since psycopg2 declares no other kind in
autocommit. So ``select_for_update().iterator()`` is refused, and a cursor left open at
``COMMIT`` is computed to its end then. And if the wait sent after ``COMMIT`` fails (cancelled,
or the connection lost), the commit is reported failed though it was made, as with a connection
lost during any ``COMMIT``.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2.errorcodes
import psycopg2.extensions
from django.db import DatabaseError
from django.db.backends.postgresql import base, operations
from django.db.backends.postgresql.psycopg_any import IsolationLevel
from django.db.backends.utils import debug_transaction


class _Connection(psycopg2.extensions.connection):
    """The driver's connection, holding what is to travel in front of the next statement."""

    begin: str | None = None  # "BEGIN …", when the transaction has sent nothing yet
    ahead: list[str]  # statements of the transaction not yet sent (``DatabaseWrapper.send_with_next``)
    prepared: set[str]  # names of the statements prepared on this session (``common.statements``)
    lost_statements = False  # the server named one of them unknown: DEALLOCATE, DISCARD ALL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ahead, self.prepared = [], set()

    @contextmanager
    def noticing(self) -> Iterator[None]:
        """Notice the server saying that a prepared statement does not exist: the session lost
        what was prepared on it, and ``common.statements`` prepares it all again."""
        try:
            yield
        except psycopg2.Error as error:
            if error.pgcode == psycopg2.errorcodes.INVALID_SQL_STATEMENT_NAME:
                self.lost_statements = True
            raise

    def waiting(self) -> str:
        """What is to be sent in front of the next statement, as one text ("" if nothing)."""
        return "; ".join([self.begin, *self.ahead] if self.begin is not None else self.ahead)

    def take(self) -> str:
        """What waits, taken to be sent."""
        waiting = self.waiting()
        self.begin, self.ahead = None, []
        return waiting

    @contextmanager
    def sending(self) -> Iterator[str]:
        """Take what waits, for a message that carries it in front of a statement. If the
        message fails with nothing of it run (a parse error, or the driver refusing it), the
        transaction has not begun: what waited still waits, and the next statement brings it."""
        begin, ahead = self.begin, self.ahead
        try:
            yield self.take()
        except BaseException:
            if begin is not None and self.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                self.begin, self.ahead = begin, ahead
            raise


class _Cursor(psycopg2.extensions.cursor):
    """Every cursor of the connection, Django's and the driver's alike, sends what waits ahead."""

    connection: _Connection
    sent_first = ""  # what the last ``execute`` sent in front of the query it was given

    def execute(self, query: Any, vars: Any = None) -> None:
        with self.connection.noticing():
            self._execute(query, vars)

    def _execute(self, query: Any, vars: Any) -> None:
        self.sent_first = ""
        if not self.connection.waiting():
            return super().execute(query, vars)
        if self.name is not None or not isinstance(query, str):
            self._send_ahead()  # a named cursor's DECLARE, or composed SQL: a message of its own
            return super().execute(query, vars)
        if vars is not None:  # the values put in first: a value the driver refuses takes nothing
            query = self.mogrify(query, vars).decode()
        with self.connection.sending() as waiting:
            self.sent_first = f"{waiting}; "
            return super().execute(self.sent_first + query)

    def _send_ahead(self) -> None:
        if self.connection.waiting():
            with self.connection.noticing(), self.connection.sending() as waiting:
                psycopg2.extensions.cursor.execute(self.connection.cursor(), waiting)

    def executemany(self, query: Any, vars_list: Any) -> None:
        self._send_ahead()
        super().executemany(query, vars_list)

    def callproc(self, procname: Any, parameters: Any = None) -> Any:
        self._send_ahead()
        return super().callproc(procname, parameters)

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> None:
        self._send_ahead()
        super().copy_expert(sql, file, size)

    def copy_from(self, *args: Any, **kwargs: Any) -> None:
        self._send_ahead()
        super().copy_from(*args, **kwargs)

    def copy_to(self, *args: Any, **kwargs: Any) -> None:
        self._send_ahead()
        super().copy_to(*args, **kwargs)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: Any, params: Any) -> str:
        """The statement as the caller gave it, without what was sent in front of it."""
        text = super().last_executed_query(cursor, sql, params)
        first = getattr(cursor, "sent_first", "")
        return text[len(first) :] if text and first and text.startswith(first) else text


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    connection: _Connection | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_commit: list[str] = []

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        params.update(connection_factory=_Connection, cursor_factory=_Cursor)
        return params

    def _start_transaction_under_autocommit(self) -> None:
        """``atomic``'s start: the driver stays in autocommit, and the first statement brings ``BEGIN``."""
        level = self.settings_dict["OPTIONS"].get("isolation_level")
        begin = "BEGIN" if level is None else f"BEGIN ISOLATION LEVEL {IsolationLevel(level).name.replace('_', ' ')}"
        with debug_transaction(self, "BEGIN"):  # logged now, as Django's backend logs it, and sent later
            self.connection.begin = begin  # type: ignore[union-attr]
        self.after_commit = []

    def send_with_next(self, sql: str) -> bool:
        """Send ``sql`` (a whole statement, its values in the text) in front of this
        transaction's next statement, in the same message, or with its ``COMMIT``; a rollback
        drops it. Its error, if any, is raised by the statement it travels with. False, and
        nothing done, when this transaction is the driver's own (``set_autocommit(False)``)."""
        if not self._ours():
            return False
        self.connection.ahead.append(sql)  # type: ignore[union-attr]
        return True

    def send_after_commit(self, sql: str) -> bool:
        """Send ``sql`` (no parameters) with this transaction's ``COMMIT``, to run once it has
        committed, in autocommit; a rollback drops it. False, and nothing done, when this
        transaction is the driver's own."""
        if not self._ours():
            return False
        if sql not in self.after_commit:
            self.after_commit.append(sql)
        return True

    def _ours(self) -> bool:
        return self.connection is not None and self.connection.autocommit and not self.get_autocommit()

    def _end(self, verb: str) -> None:
        """Send ``COMMIT`` (with what waits ahead of it and what follows it) or ``ROLLBACK``;
        nothing when the transaction sent nothing, or a failed ``COMMIT`` already ended it. A
        transaction one of whose statements failed, its error caught, is rolled back and its
        commit raises: PostgreSQL would answer its ``COMMIT`` with a silent rollback."""
        connection = self.connection
        assert connection is not None
        after, self.after_commit = self.after_commit, []
        status = connection.info.transaction_status
        if connection.begin is not None:
            if verb == "ROLLBACK" or not connection.ahead:
                connection.begin, connection.ahead = None, []
                return
        elif status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            connection.ahead = []
            return
        failed = verb == "COMMIT" and status == psycopg2.extensions.TRANSACTION_STATUS_INERROR
        if verb == "ROLLBACK" or failed:
            connection.ahead = []
            self._send("ROLLBACK")
            if failed:
                raise DatabaseError("not committed: a statement of the transaction failed, so it was rolled back")
            return
        self._send("; ".join(filter(None, [connection.take(), "COMMIT", *after])))

    def _send(self, sql: str) -> None:
        assert self.connection is not None
        connection = self.connection
        with (
            debug_transaction(self, sql),
            self.wrap_database_errors,
            connection.noticing(),
            connection.cursor() as cursor,
        ):
            psycopg2.extensions.cursor.execute(cursor, sql)

    def _commit(self) -> None:
        if self._ours():
            self._end("COMMIT")
        else:
            super()._commit()  # type: ignore[misc]

    def _rollback(self) -> None:
        if self._ours():
            self._end("ROLLBACK")
        else:
            super()._rollback()  # type: ignore[misc]

    def _set_autocommit(self, autocommit: bool) -> None:
        if self.connection is not None:
            self.connection.begin, self.connection.ahead = None, []
        super()._set_autocommit(autocommit)  # type: ignore[misc]

    def close_if_health_check_failed(self) -> None:
        checked = not self.health_check_enabled or self.health_check_done  # type: ignore[attr-defined,has-type]
        if self.connection is None or checked or self.pool:
            return
        if self.connection.closed or self._readable():
            self.close()
        self.health_check_done = True

    def _readable(self) -> bool:
        """Whether the server has sent something unasked (it closed the connection, or is about
        to): ``poll``, which any descriptor number suits (``select`` refuses those past 1023)."""
        assert self.connection is not None
        descriptor = self.connection.fileno()
        if descriptor < 0:
            return True
        poller = select.poll()
        poller.register(descriptor, select.POLLIN)
        return bool(poller.poll(0))
