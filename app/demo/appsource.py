"""The demo application's source, as the commits of its history.

A small Flask app (Flask + SQLAlchemy Core + Alembic, nothing else, so it runs
with Rewind's own interpreter): a home page, `/health`, `/stats` and a segments
API over a SQLite database, with `flask db …` commands that run its Alembic
migrations like Flask-Migrate's would. Each commit lists the files it writes
(full contents); `@CREATED@` in a file is replaced by the commit's date.

The history ends on `main`; BAD_COMMIT sits on a branch of its own and breaks
`/health` (it reads a column that does not exist), for rollback drills.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BAD_BRANCH = "feature/rollback-drill-bad-code"
HEAD_REVISION = "a92f6e1b3c58"  # the newest migration on main
REVISIONS = ("4c1d2e8f9a01", "7b3e5a90c2d4", HEAD_REVISION)


@dataclass(frozen=True)
class DemoCommit:
    subject: str
    body: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return f"{self.subject}\n\n{self.body}\n" if self.body else f"{self.subject}\n"


# --- files that are written once -------------------------------------------------------------------

GITIGNORE = """\
__pycache__/
*.pyc
.env
*.db
"""

REQUIREMENTS = """\
Flask>=3.0
SQLAlchemy>=2.0
alembic>=1.13
"""

WSGI = '''\
"""The WSGI entry point: `flask --app wsgi run`, or any WSGI server pointed at wsgi:app."""

from demoapp import create_app

app = create_app()
'''

DB = '''\
"""The database: one SQLAlchemy engine per app, a fresh connection per request."""

import sqlite3
from urllib.parse import quote

from flask import Flask, current_app
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        # Open the existing file only: a missing database is an error, never a new empty one.
        return create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, check_same_thread=False),
            poolclass=NullPool,
        )
    return create_engine(url, poolclass=NullPool)


def init_app(app: Flask) -> None:
    app.extensions["demo_engine"] = make_engine(app.config["DATABASE_URL"])


def engine() -> Engine:
    return current_app.extensions["demo_engine"]
'''

CLI = '''\
"""`flask db …`: the app's Alembic migrations, run with the app's own settings.

The same commands and arguments as Flask-Migrate's (upgrade, downgrade,
current, history, heads, stamp), without the extra dependency.
"""

from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import current_app
from flask.cli import AppGroup

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

db_cli = AppGroup("db", help="Database migrations (Alembic).")
directory_option = click.option("-d", "--directory", default=None, help="migrations folder (default: migrations/)")


def alembic_config(directory: str | None = None) -> Config:
    folder = Path(directory) if directory else MIGRATIONS
    config = Config(str(folder / "alembic.ini"))
    config.set_main_option("script_location", str(folder))
    config.attributes["database_url"] = current_app.config["DATABASE_URL"]
    return config


@db_cli.command()
@directory_option
@click.option("--sql", is_flag=True, help="print the SQL instead of running it")
@click.option("--tag", default=None, help="a tag for custom env.py scripts")
@click.argument("revision", default="head")
def upgrade(directory, sql, tag, revision):
    """Upgrade to a later revision (default: head)."""
    command.upgrade(alembic_config(directory), revision, sql=sql, tag=tag)


@db_cli.command(context_settings={"ignore_unknown_options": True})  # so `downgrade -1` reads -1 as a revision
@directory_option
@click.option("--sql", is_flag=True, help="print the SQL instead of running it")
@click.option("--tag", default=None, help="a tag for custom env.py scripts")
@click.argument("revision", default="-1")
def downgrade(directory, sql, tag, revision):
    """Revert to a previous revision (default: one step back)."""
    command.downgrade(alembic_config(directory), revision, sql=sql, tag=tag)


@db_cli.command()
@directory_option
@click.option("-v", "--verbose", is_flag=True)
def current(directory, verbose):
    """Show the database's current revision."""
    command.current(alembic_config(directory), verbose=verbose)


@db_cli.command()
@directory_option
@click.option("-r", "--rev-range", default=None, help="a range like base:head")
@click.option("-v", "--verbose", is_flag=True)
def history(directory, rev_range, verbose):
    """List the revisions in order."""
    command.history(alembic_config(directory), rev_range, verbose=verbose)


@db_cli.command()
@directory_option
@click.option("-v", "--verbose", is_flag=True)
def heads(directory, verbose):
    """Show the newest revisions."""
    command.heads(alembic_config(directory), verbose=verbose)


@db_cli.command()
@directory_option
@click.argument("revision", default="head")
def stamp(directory, revision):
    """Record a revision as current without running migrations."""
    command.stamp(alembic_config(directory), revision)
'''

ALEMBIC_INI = """\
# Alembic settings for the demo app. The database URL is not kept here: env.py
# takes it from `flask db …` (the app's settings), else DATABASE_URL in the
# environment, else the app's .env file.
#
#   python -m alembic -c migrations/alembic.ini upgrade head
#   flask --app wsgi db upgrade

[alembic]
script_location = %(here)s
path_separator = os

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
"""

ALEMBIC_ENV = '''\
"""Alembic environment for the demo app.

The database URL comes from `flask db …` (the app's own settings), else from
DATABASE_URL in the environment, else from the .env file beside the app.
"""

import os
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = None


def database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if url:
        return url
    env_file = Path(__file__).resolve().parent.parent / ".env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key.removeprefix("export ").strip() == "DATABASE_URL":
                return value.strip().strip("'\\"")
    raise RuntimeError("set DATABASE_URL (e.g. sqlite:////srv/app/data/app.db) or add it to the app's .env file")


def run_migrations_offline() -> None:
    context.configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

SCRIPT_MAKO = '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
'''

MIGRATION_USERS = '''\
"""Add users and sessions

Revision ID: 4c1d2e8f9a01
Revises:
Create Date: @CREATED@

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "4c1d2e8f9a01"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(255), nullable=False, unique=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])


def downgrade():
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("users")
'''

MIGRATION_SEGMENTS = '''\
"""Add segments

Revision ID: 7b3e5a90c2d4
Revises: 4c1d2e8f9a01
Create Date: @CREATED@

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "7b3e5a90c2d4"
down_revision = "4c1d2e8f9a01"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()),
    )


def downgrade():
    op.drop_table("segments")
'''

MIGRATION_FLAGS = '''\
"""Add feature flags table

Revision ID: a92f6e1b3c58
Revises: 7b3e5a90c2d4
Create Date: @CREATED@

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "a92f6e1b3c58"
down_revision = "7b3e5a90c2d4"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "feature_flags",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()),
    )


def downgrade():
    op.drop_table("feature_flags")
'''

FLAGS = '''\
"""Feature flags, read from the feature_flags table on every request (flip one and the next page sees it)."""

from sqlalchemy import text

from demoapp.db import engine


def all_flags() -> list[tuple[str, bool]]:
    with engine().connect() as conn:
        rows = conn.execute(text("SELECT name, enabled FROM feature_flags ORDER BY name")).all()
    return [(name, bool(enabled)) for name, enabled in rows]


def is_enabled(name: str) -> bool:
    with engine().connect() as conn:
        value = conn.execute(text("SELECT enabled FROM feature_flags WHERE name = :name"), {"name": name}).scalar()
    return bool(value)
'''

# --- files that change along the history -----------------------------------------------------------

CONFIG_V1 = '''\
"""Settings: the environment first, then the .env file beside the app."""

import os
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"
DEFAULTS = {
    "APP_ENV": "development",
    "DATABASE_URL": "sqlite:///app.db",
    "PORT": "5000",
    "SECRET_KEY": "dev",
    "FEATURE_X": "off",
}


def load() -> dict:
    values = dict(DEFAULTS)
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    for key in values:
        if key in os.environ:
            values[key] = os.environ[key]
    return values
'''

CONFIG_V2 = '''\
"""Settings, read once at start-up.

The .env file beside the app holds its configuration: KEY=value lines, # comments,
optional quotes and an optional `export`. A variable set in the environment wins
over the file. A malformed file stops start-up with the line that is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"
KEYS = ("APP_ENV", "DATABASE_URL", "PORT", "SECRET_KEY", "FEATURE_X")


@dataclass(frozen=True)
class Settings:
    database_url: str
    port: int = 5000
    secret_key: str = "dev"
    app_env: str = "development"
    feature_x: bool = False


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load(env_file: Path = ENV_FILE) -> Settings:
    values = read_env_file(env_file)
    values.update({key: os.environ[key] for key in KEYS if key in os.environ})
    try:
        port = int(values.get("PORT", "5000"))
    except ValueError:
        raise ValueError(f"PORT must be a number, got {values['PORT']!r}") from None
    return Settings(
        database_url=values.get("DATABASE_URL", "sqlite:///app.db"),
        port=port,
        secret_key=values.get("SECRET_KEY", "dev"),
        app_env=values.get("APP_ENV", "development"),
        feature_x=values.get("FEATURE_X", "off").lower() in ("on", "1", "true", "yes"),
    )
'''


def _package_init(version: str, *, with_cli: bool, tidy_config: bool) -> str:
    if tidy_config:
        settings = """\
    settings = config.load()
    app = Flask(__name__)
    app.config.update(
        VERSION=__version__,
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url,
        APP_ENV=settings.app_env,
        FEATURE_X=settings.feature_x,
    )
"""
    else:
        settings = """\
    settings = config.load()
    app = Flask(__name__)
    app.config.update(
        VERSION=__version__,
        SECRET_KEY=settings["SECRET_KEY"],
        DATABASE_URL=settings["DATABASE_URL"],
        APP_ENV=settings["APP_ENV"],
        FEATURE_X=settings["FEATURE_X"] == "on",
    )
"""
    imports = "from demoapp import config, db, views\n"
    if with_cli:
        imports += "from demoapp.cli import db_cli\n"
    register = "    app.register_blueprint(views.bp)\n"
    if with_cli:
        register += "    app.cli.add_command(db_cli)\n"
    return (
        '"""The demo app: users, sessions, segments and feature flags behind a small Flask app."""\n\n'
        "from flask import Flask\n\n"
        f"{imports}\n"
        f'__version__ = "{version}"\n\n\n'
        "def create_app() -> Flask:\n"
        f"{settings}"
        "    db.init_app(app)\n"
        f"{register}"
        "    return app\n"
    )


def _views(stage: int, *, bad: bool = False) -> str:
    """views.py as of a stage of the history: 1 home+health, 2 users, 3 segments, 4 flags, 5 stats counts."""
    parts = ['"""Pages and API: home, health, stats and segments."""\n\n']
    parts.append("from flask import Blueprint, current_app, jsonify, render_template_string\n")
    parts.append("from sqlalchemy import text\nfrom sqlalchemy.exc import SQLAlchemyError\n\n")
    parts.append("from demoapp import flags\n" if stage >= 4 else "")
    parts.append("from demoapp.db import engine\n\n")
    parts.append('bp = Blueprint("views", __name__)\n\n')
    if stage >= 5:
        parts.append('TABLES = ("users", "sessions", "segments", "feature_flags")\n\n')
    elif stage >= 2:
        parts.append('TABLES = ("users", "sessions")\n\n')
    links = ['<a href="/health">/health</a>']
    if stage >= 2:
        links.append('<a href="/stats">/stats</a>')
    if stage >= 3:
        links.append('<a href="/api/segments">/api/segments</a>')
    flag_html = ""
    if stage >= 4:
        flag_html = (
            "<p>Checkout: {{ 'new' if new_checkout else 'classic' }}.</p>\n"
            "<h2>Feature flags</h2>\n<ul>\n"
            "{% for name, on in flags %}<li>{{ name }}: {{ 'on' if on else 'off' }}</li>\n{% endfor %}"
            "</ul>\n"
        )
    parts.append(
        'HOME = """<!doctype html>\n'
        "<title>Demo app</title>\n"
        "<h1>Demo app {{ version }}</h1>\n"
        "<p>Environment: {{ env }}. Feature X is {{ 'on' if feature_x else 'off' }}.</p>\n"
        f"{flag_html}"
        f"<p>{' · '.join(links)}</p>\n"
        '"""\n\n\n'
    )
    home_args = [
        'version=current_app.config["VERSION"]',
        'env=current_app.config["APP_ENV"]',
        'feature_x=current_app.config["FEATURE_X"]',
    ]
    if stage >= 4:
        home_args += ['new_checkout=flags.is_enabled("new_checkout")', "flags=flags.all_flags()"]
    parts.append(
        '@bp.get("/")\ndef home():\n    return render_template_string(\n        HOME,\n'
        + "".join(f"        {arg},\n" for arg in home_args)
        + "    )\n\n\n"
    )
    if stage == 1:
        check = '            conn.execute(text("SELECT 1"))\n'
        answer = '    return jsonify(status="healthy", version=current_app.config["VERSION"])\n'
    else:
        check = '            users = conn.execute(text("SELECT count(*) FROM users")).scalar_one()\n'
        answer = '    return jsonify(status="healthy", version=current_app.config["VERSION"], users=users)\n'
        if bad:
            check += '            newest = conn.execute(text("SELECT max(signed_up_at) FROM users")).scalar()\n'
            answer = (
                "    return jsonify(\n"
                '        status="healthy", version=current_app.config["VERSION"], users=users, newest_signup=newest\n'
                "    )\n"
            )
    parts.append(
        '@bp.get("/health")\n'
        "def health():\n"
        '    """Healthy when the database answers; the load balancer and Rewind both ask."""\n'
        "    try:\n"
        "        with engine().connect() as conn:\n"
        f"{check}"
        "    except SQLAlchemyError as exc:\n"
        '        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]\n'
        '        return jsonify(status="unhealthy", error=reason), 500\n'
        f"{answer}"
    )
    if stage >= 2:
        extra = ""
        if stage >= 5:
            extra = (
                '        counts["flags_enabled"] = conn.execute('
                'text("SELECT count(*) FROM feature_flags WHERE enabled")).scalar_one()\n'
            )
        parts.append(
            "\n\n"
            '@bp.get("/stats")\n'
            "def stats():\n"
            '    """Row counts, for dashboards and for checking a restore."""\n'
            "    counts = {}\n"
            "    with engine().connect() as conn:\n"
            "        for table in TABLES:  # names from the fixed list above, never from a request\n"
            '            counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()\n'
        )
        parts.append(extra)
        parts.append("    return jsonify(counts)\n")
    if stage >= 3:
        parts.append(
            "\n\n"
            '@bp.get("/api/segments")\n'
            "def segments():\n"
            "    with engine().connect() as conn:\n"
            '        rows = conn.execute(text("SELECT id, name, description, rule FROM segments ORDER BY name"))'
            ".mappings().all()\n"
            "    return jsonify(segments=[dict(row) for row in rows])\n"
        )
    return "".join(parts)


def _readme(*, migrations: bool, changelog: bool) -> str:
    text = """\
# Demo app

A small Flask app with users, sessions, segments and feature flags on SQLite.
It is the application Rewind's demo sandbox rolls back.

## Run it

Settings live in `.env` beside this file (not in git): `DATABASE_URL`,
`PORT`, `SECRET_KEY`, `FEATURE_X`, `APP_ENV`. A variable set in the
environment wins over the file.

    flask --app wsgi run --port 5000

`/health` answers `{"status": "healthy"}` when the database answers.
"""
    if migrations:
        text += """
## Migrations

Alembic, in `migrations/`:

    flask --app wsgi db upgrade          # or: python -m alembic -c migrations/alembic.ini upgrade head
    flask --app wsgi db downgrade -1
    flask --app wsgi db current
"""
    if changelog:
        text += """
## Changes

- 1.4: segment counts on `/stats`, feature flags table, tidier config loading.
- 1.3: moved into its own repository.
"""
    return text


# --- the history -----------------------------------------------------------------------------------

MIGRATION_FILES = {
    "users": "migrations/versions/4c1d2e8f9a01_add_users_and_sessions.py",
    "segments": "migrations/versions/7b3e5a90c2d4_add_segments.py",
    "flags": "migrations/versions/a92f6e1b3c58_add_feature_flags_table.py",
}

HISTORY: tuple[DemoCommit, ...] = (
    DemoCommit(
        "Import the app into its own repository",
        "Home page and a /health check that asks the database; settings from .env.",
        {
            ".gitignore": GITIGNORE,
            "README.md": _readme(migrations=False, changelog=False),
            "requirements.txt": REQUIREMENTS,
            "wsgi.py": WSGI,
            "demoapp/__init__.py": _package_init("1.3.0", with_cli=False, tidy_config=False),
            "demoapp/config.py": CONFIG_V1,
            "demoapp/db.py": DB,
            "demoapp/views.py": _views(1),
        },
    ),
    DemoCommit(
        "Add users and sessions",
        "Alembic migrations in migrations/, run with `flask db upgrade`.\n"
        "/health now counts users, so it fails when the schema is missing.",
        {
            "migrations/alembic.ini": ALEMBIC_INI,
            "migrations/env.py": ALEMBIC_ENV,
            "migrations/script.py.mako": SCRIPT_MAKO,
            MIGRATION_FILES["users"]: MIGRATION_USERS,
            "demoapp/cli.py": CLI,
            "demoapp/__init__.py": _package_init("1.3.0", with_cli=True, tidy_config=False),
            "demoapp/views.py": _views(2),
            "README.md": _readme(migrations=True, changelog=False),
        },
    ),
    DemoCommit(
        "Add segments API",
        "GET /api/segments lists the audience segments.",
        {
            MIGRATION_FILES["segments"]: MIGRATION_SEGMENTS,
            "demoapp/views.py": _views(3),
        },
    ),
    DemoCommit(
        "Add feature flags table",
        "Flags are read per request; new_checkout picks the checkout shown on the home page.",
        {
            MIGRATION_FILES["flags"]: MIGRATION_FLAGS,
            "demoapp/flags.py": FLAGS,
            "demoapp/views.py": _views(4),
        },
    ),
    DemoCommit(
        "Show segment counts on /stats",
        "",
        {"demoapp/views.py": _views(5)},
    ),
    DemoCommit(
        "Tidy config loading",
        "One Settings object; quotes, `export` and comments in .env are understood,\n"
        "and a malformed line stops start-up with its line number.",
        {
            "demoapp/config.py": CONFIG_V2,
            "demoapp/__init__.py": _package_init("1.3.0", with_cli=True, tidy_config=True),
        },
    ),
    DemoCommit(
        "Bump version to 1.4",
        "",
        {
            "demoapp/__init__.py": _package_init("1.4.0", with_cli=True, tidy_config=True),
            "README.md": _readme(migrations=True, changelog=True),
        },
    ),
)

BAD_COMMIT = DemoCommit(
    "Report the newest signup on /health",
    "Lets the uptime dashboard show when the last user signed up.",
    {"demoapp/views.py": _views(5, bad=True)},
)
