"""The ops database pool pings a connection only after it sat idle, and replaces a dead one before use."""

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app.pool import ping_when_idle


@pytest.fixture
def pg_url(pg_server, request):
    url = pg_server.create_database(f"pool_{request.node.name[5:40]}")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _backend(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_an_idle_connection_found_dead_is_replaced_before_use(pg_url):
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_s=0)  # every checkout counts as idle
    try:
        first = _backend(engine)
        _terminate(pg_url, first)
        assert _backend(engine) != first  # the ping found it dead: a fresh connection answered
    finally:
        engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(pg_url):
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_s=3600)
    try:
        first = _backend(engine)
        _terminate(pg_url, first)
        with pytest.raises(OperationalError):  # no round trip was spent on a ping: the request itself finds out
            _backend(engine)
        assert _backend(engine) != first  # and the pool was invalidated, so the next one is fresh
    finally:
        engine.dispose()
