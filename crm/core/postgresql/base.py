"""Django's PostgreSQL backend with a health check that costs no round trip while the
connection is quiet.

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of every request: one
extra round trip per request, a third of a partner API read's time with PostgreSQL. A server
that ends a connection (restart, `pg_terminate_backend`, `idle_session_timeout`) first sends
its FATAL message or closes the socket, so an idle connection with nothing to read is as good
as a `SELECT 1` answered; only when something is waiting on the socket is the real check run
(it then reconnects, as Django's does). A peer that vanished without a word (no FIN) is not
noticed here, as `SELECT 1` would hang on it too.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and self.pool is None
            and _quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()


def _quiet(connection) -> bool:
    """Whether the connection is open, idle and has nothing from the server waiting to be read."""
    if connection.closed or connection.info.transaction_status != base.Database.pq.TransactionStatus.IDLE:
        return False
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return not poller.poll(0)
