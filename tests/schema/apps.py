"""A real Flask + Flask-SQLAlchemy + Flask-Migrate application in a temporary git repository.

Its env.py imports the application through `current_app`, as Flask-Migrate
generates it, so only `flask db …` in the application's environment can run
it. The revisions are written by hand so the graph has a branch and a merge;
each commit of the repository adds some of them.
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.support.postgres import free_port
from tests.support.targets import commit, git

APP = """\
import os

from flask import Flask, jsonify
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

db = SQLAlchemy()
migrate = Migrate()


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True)

    @app.get("/health")
    def health():
        db.session.execute(text("SELECT 1"))
        return jsonify(status="healthy")

    return app
"""

ENV = """\
import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
fileConfig(config.config_file_name)
logging.getLogger("alembic.env")


def engine():
    return current_app.extensions["migrate"].db.engine


def online():
    with engine().connect() as connection:
        context.configure(connection=connection, **current_app.extensions["migrate"].configure_args)
        with context.begin_transaction():
            context.run_migrations()


online()
"""

INI = """\
[alembic]

[loggers]
keys = root,alembic,flask_migrate

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = {level}
handlers = console
qualname =

[logger_alembic]
level = {level}
handlers =
qualname = alembic

[logger_flask_migrate]
level = {level}
handlers =
qualname = flask_migrate

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

REVISION = '''\
"""{message}

Revision ID: {rev}
Revises: {docstring_down}
Create Date: 2001-01-01 00:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = {depends!r}


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''

# rev: (message, down_revision, upgrade body, downgrade body)
REVISIONS = {
    "a1000001": (
        "create user",
        None,
        'op.create_table("user", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(80)))',
        'op.drop_table("user")',
    ),
    "b2000002": (
        "add user.token",
        "a1000001",
        'with op.batch_alter_table("user") as batch_op:\n'
        '        batch_op.add_column(sa.Column("token", sa.String(40), nullable=True))',
        'with op.batch_alter_table("user") as batch_op:\n        batch_op.drop_column("token")',
    ),
    "c3aaaaa3": (
        "add post",
        "b2000002",
        'op.create_table("post", sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.Text))',
        'op.drop_table("post")',
    ),
    "c3bbbbb3": (
        "index user names",
        "b2000002",
        'op.create_index("ix_user_name", "user", ["name"])',
        'op.drop_index("ix_user_name", table_name="user")',
    ),
    "d4000004": ("merge post and index", ("c3aaaaa3", "c3bbbbb3"), "pass", "pass"),
    "e5000005": (
        "add user.email",
        "d4000004",
        'with op.batch_alter_table("user") as batch_op:\n'
        '        batch_op.add_column(sa.Column("email", sa.String(120), nullable=True))',
        'with op.batch_alter_table("user") as batch_op:\n        batch_op.drop_column("email")',
    ),
    "f6000006": (
        "a revision that fails",
        "d4000004",
        'op.execute("SELECT * FROM no_such_table")',
        "pass",
    ),
}


def revision_file(rev: str, *, down=None, depends=None, lie_in_docstring: bool = False) -> str:
    message, default_down, up, downgrade = REVISIONS[rev]
    down = default_down if down is None else down
    return REVISION.format(
        message=message,
        rev=rev,
        down=down,
        docstring_down="zzzzzzzz" if lie_in_docstring else down,
        depends=depends,
        upgrade="    " + up,
        downgrade="    " + downgrade,
    )


@dataclass(frozen=True)
class Backups:
    """A [targets.X.backups] section: a folder, a GnuPG home, the recipients."""

    dir: Path
    gpg_home: Path
    recipients: tuple[str, ...]

    def toml(self, name: str) -> str:
        recipients = ", ".join(f'"{r}"' for r in self.recipients)
        return (
            f'\n[targets.{name}.backups]\ndir = "{self.dir}"\ngpg_home = "{self.gpg_home}"\n'
            f"recipients = [{recipients}]\nreserve_mb = 1\n"
        )


@dataclass
class MigrateApp:
    name: str
    root: Path
    repo: Path
    url: str
    port: int
    commits: dict[str, str] = field(default_factory=dict)

    @property
    def migrations(self) -> Path:
        return self.repo / "migrations"

    def add_revisions(self, message: str, *revs: str, **options) -> str:
        files = {f"migrations/versions/{rev}_x.py": revision_file(rev, **options) for rev in revs}
        for name, text in files.items():
            (self.repo / name).write_text(text)
        sha = commit(self.repo, message)
        self.commits[message] = sha
        return sha

    def toml(
        self, *, protected: bool = False, migrate_on_deploy: bool | None = None, backups: Backups | None = None
    ) -> str:
        state = self.root / "run"
        extra = "" if migrate_on_deploy is None else f"migrate_on_deploy = {str(migrate_on_deploy).lower()}\n"
        if backups is not None:
            extra += backups.toml(self.name)
        return f"""
[targets.{self.name}]
protected = {str(protected).lower()}

[targets.{self.name}.repo]
path = "{self.repo}"
branch = "main"

[targets.{self.name}.process]
command = ["{sys.executable}", "-m", "flask", "run", "--port", "{self.port}"]
cwd = "{self.repo}"
pid_file = "{state}/app.pid"
log_file = "{state}/app.log"
env = {{ DATABASE_URL = "{self.url}", FLASK_APP = "shop:create_app" }}

[targets.{self.name}.health]
url = "http://127.0.0.1:{self.port}/health"
json = {{ status = "healthy" }}
timeout = 20

[targets.{self.name}.database]
url = "{self.url}"
migrations = "{self.migrations}"
flask = ["{sys.executable}", "-m", "flask"]
flask_app = "shop:create_app"
{extra}"""

    def execute(self, statement: str) -> None:
        if self.url.startswith("sqlite:///"):
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
                conn.execute(statement)
        else:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(statement)

    def versions(self) -> set[str]:
        from app.targets.schema_db import current_revisions

        return current_revisions(self.url)


def database_url(kind: str, root: Path, request) -> str:
    if kind == "sqlite":
        return f"sqlite:///{root / 'shop.db'}"
    server = request.getfixturevalue("pg_server")
    return server.create_database(f"shop_{free_port()}")


def make_migrate_app(root: Path, url: str, name: str = "shop", *, silent: bool = False) -> MigrateApp:
    """Three commits: the app with `create user`; `add user.token`; a branch and its merge."""
    repo = root / "repo"
    (repo / "migrations" / "versions").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("__pycache__/\n*.db\n")
    (repo / "shop.py").write_text(APP)
    (repo / "migrations" / "env.py").write_text(ENV)
    (repo / "migrations" / "alembic.ini").write_text(INI.format(level="CRITICAL" if silent else "INFO"))
    app = MigrateApp(name, root, repo, url, free_port())
    app.add_revisions("the app", "a1000001")
    app.add_revisions("tokens", "b2000002")
    app.add_revisions("posts and index", "c3aaaaa3", "c3bbbbb3", "d4000004")
    return app
