"""Django's PostgreSQL backend (``ENGINE = "common.postgresql"``), whose per-request health check
makes no round trip.

With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first statement of every request
that reuses a connection, so that a connection the server has closed (a restart, a failover,
``pg_terminate_backend``, an idle timeout) is replaced instead of failing the request: one round
trip per request, 8% of a gunicorn worker's samples in a version search. Here the connection's
socket is polled instead. An idle connection is sent nothing by the server except the notice
that it is being closed (or a changed run-time parameter, which is harmless to act on), so if
anything is waiting to be read, or the driver already knows the connection is closed, it is
closed and the request opens a new one. go-sql-driver/mysql checks a connection before reuse
the same way. Neither check notices a connection whose network went silent: its first statement
waits for the TCP timeout either way. After an error Django still runs the full check
(``is_usable``) before reusing the connection."""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
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
        descriptor = self.connection.fileno()
        if descriptor < 0:
            return True
        poller = select.poll()
        poller.register(descriptor, select.POLLIN)
        return bool(poller.poll(0))
