"""A throwaway PostgreSQL server for tests and benchmarks: app.targets.pgcluster in a temporary folder.

Tuned for speed (no fsync), with a Unix socket in its folder; as root the
server runs as the `postgres` OS user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from app.targets.pgcluster import Cluster, PostgresUnavailable, find_bin_dir
from tests.support.ports import free_port

__all__ = ["PostgresUnavailable", "TempPostgres", "find_bin_dir", "free_port"]

SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=300")


class TempPostgres:
    user = "rewind"

    def __init__(self, *settings: str) -> None:
        """settings: more `name=value` lines for the server, after SETTINGS."""
        self.root = Path(tempfile.mkdtemp(prefix="rewind-pg-"))
        self.port = free_port()
        self.cluster = Cluster(self.root, self.port, user=self.user, socket_dir=self.root, settings=SETTINGS + settings)
        self.bin = self.cluster.bin
        self.data = self.cluster.data

    def start(self) -> TempPostgres:
        try:
            self.cluster.init()
            self.cluster.start()
        except PostgresUnavailable:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    def stop(self) -> None:
        """Stops the server at once; its folder is deleted by a detached `rm`, since a test session's hundreds of
        databases take seconds to delete and nothing needs to wait for that."""
        try:
            self.cluster.stop("immediate")
        finally:
            subprocess.Popen(
                ["rm", "-rf", "--", str(self.root)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    def url(self, dbname: str = "postgres") -> str:
        return self.cluster.url(dbname)

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            conn.execute(sql)
        return self.url(name)
