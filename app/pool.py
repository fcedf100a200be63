"""Pinging pooled ops-database connections only when they have been idle, not before every request.

SQLAlchemy's pool_pre_ping costs one round trip per checkout, so one per request. A connection handed back
a moment ago was alive a moment ago; one idle for longer (a server restart, an idle timeout, a failover) is
pinged first and, if dead, replaced before the request uses it. A server that restarts within IDLE_S of a
connection's last use fails the request handed that connection, and its error invalidates the whole pool
(SQLAlchemy does so on any disconnect), so the requests after it start on fresh connections.
"""

from __future__ import annotations

import time

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

IDLE_S = 1.0
_USED = "rewind_used"


def ping_when_idle(engine: Engine, idle_s: float = IDLE_S) -> None:
    """Install the check on an engine created without pool_pre_ping."""

    @event.listens_for(engine, "connect")
    def fresh(dbapi_connection, record) -> None:
        record.info[_USED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection, record) -> None:
        if record is not None:
            record.info[_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def taken(dbapi_connection, record, proxy) -> None:
        used = record.info.get(_USED)
        if used is not None and time.monotonic() - used < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise DisconnectionError(f"pooled connection found dead: {exc}") from exc
            raise
