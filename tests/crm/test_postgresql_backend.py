"""crm.core.postgresql: the per-request health check asks the server only when it has spoken."""

import select
import time

import pytest
from django.db import close_old_connections, connection, connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.fixture
def checks(monkeypatch):
    """Counts the `SELECT 1` health checks (Django's is_usable) of the default connection."""
    calls = []
    is_usable = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: calls.append(1) or is_usable())
    return calls


def test_a_quiet_connection_is_kept_without_a_round_trip(checks):
    first = backend_pid()

    close_old_connections()  # what Django does when a request starts
    second = backend_pid()

    assert second == first
    assert checks == []


def test_a_connection_the_server_ended_is_replaced_before_the_next_query(checks):
    ended = backend_pid()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [ended])
    finally:
        other.close()
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    deadline = time.monotonic() + 5
    while not poller.poll(50) and time.monotonic() < deadline:
        pass

    close_old_connections()
    replaced = backend_pid()

    assert replaced != ended
    assert checks == [1]
