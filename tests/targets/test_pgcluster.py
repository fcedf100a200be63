"""The PostgreSQL cluster Rewind runs itself (the demo's, the tests'): loopback only, and clear errors."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from app.targets.pgcluster import Cluster, PostgresUnavailable
from tests.support.ports import free_port


@pytest.fixture
def open_dir():
    # Under /tmp and open to other users: as root the server runs as `postgres`, which must reach it.
    folder = Path(tempfile.mkdtemp(prefix="rw-pgc-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_cluster_without_socket_listens_on_loopback_only_and_stops(open_dir):
    cluster = Cluster(open_dir / "pg", free_port(), user="someone", socket_dir=None)
    assert not cluster.initialised() and not cluster.running()
    cluster.init()
    cluster.start()
    try:
        assert cluster.running()
        with psycopg.connect(cluster.url(), connect_timeout=10) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("SHOW unix_socket_directories").fetchone() == ("",)
            assert conn.execute("SELECT current_user").fetchone() == ("someone",)
        hba = (cluster.data / "pg_hba.conf").read_text()
        assert "local" not in hba.replace("# written by Rewind: loopback only", "")
    finally:
        cluster.stop()
    assert not cluster.running()
    cluster.stop()  # stopping a stopped cluster is nothing


def test_missing_server_programs_are_named_with_the_package_to_install(open_dir):
    empty = open_dir / "bin"
    empty.mkdir()
    cluster = Cluster(open_dir / "pg", free_port(), bin_dir=empty)
    with pytest.raises(PostgresUnavailable, match="initdb is not installed") as caught:
        cluster.init()
    assert caught.value.fix == "apt-get install postgresql"
    assert not cluster.running()


def test_a_server_program_that_fails_without_a_word_is_named_with_its_command(open_dir):
    folder = open_dir / "bin"
    folder.mkdir()
    folder.chmod(0o755)
    initdb = folder / "initdb"
    initdb.write_text("#!/bin/sh\nexit 1\n")
    initdb.chmod(0o755)
    cluster = Cluster(open_dir / "pg", free_port(), bin_dir=folder)
    with pytest.raises(PostgresUnavailable) as caught:
        cluster.init()
    message = caught.value.message
    assert message.startswith("initdb failed (exit status 1) and it printed nothing — run it by hand"), message
    assert f"{initdb} -D {cluster.data} -U rewind --auth=trust -E UTF8`" in message, message
