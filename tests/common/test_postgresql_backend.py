from __future__ import annotations

import select
import time

import pytest
from django.db import connection, connections

from tests.conftest import on_postgres

pytestmark = pytest.mark.skipif(not on_postgres(), reason="the PostgreSQL backend's health check")


def _new_request(wrapper) -> int:
    """What Django does when a request starts and first uses the database; the server's process id."""
    wrapper.close_if_unusable_or_obsolete()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_connection_the_server_closed_is_replaced_before_a_request_uses_it(db):
    wrapper = connections.create_connection("default")
    assert wrapper.settings_dict["CONN_HEALTH_CHECKS"]
    try:
        first = _new_request(wrapper)
        assert _new_request(wrapper) == first  # a healthy connection is kept
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        deadline = time.monotonic() + 5
        while not select.select([wrapper.connection], [], [], 0.05)[0] and time.monotonic() < deadline:
            pass  # the server's notice that it closed the connection is on its way
        second = _new_request(wrapper)  # no error: the check saw the notice and reconnected
        assert second != first
        assert _new_request(wrapper) == second
    finally:
        wrapper.close()
