"""Building Rewind apps on fresh ops databases, quickly.

Migrations run once per database kind into a template; each test then gets a
copy (a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL).
"""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

from flask import Flask
from flask_migrate import upgrade
from jinja2 import BytecodeCache
from werkzeug.routing import Rule

from app import create_app
from app.audit.store import Actor
from app.auth import accounts
from app.auth.roles import Role
from app.migrating import enable
from app.settings import load_settings

_counter = itertools.count(1)


# Every test app shares these, so a template database's audit rows verify in any copy of it.
TEST_KEYS = {"REWIND_AUDIT_KEY": "test-audit-key-" + "a" * 32, "REWIND_SECRET_KEY": "test-secret-key-" + "s" * 32}


class SharedTemplateCode(BytecodeCache):
    """Templates compiled once per test process, not once per app: a test builds its own app, and compiling the
    pages it renders again was a fifth of a view test's CPU. Jinja checks each entry against its template's
    source, so an edited template is compiled afresh."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if (code := self._code.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CODE = SharedTemplateCode()

_compile_builder = Rule._compile_builder
_BUILDERS: dict[tuple, object] = {}


def _shared_builder(rule: Rule, append_unknown: bool = True):
    """Werkzeug generates and compiles the URL builder of each rule of each app: with a new app per test, a
    quarter of a view test's CPU. The builder is a function of the rule's parts and of the text its converters
    make of the defaults it folds in, so rules alike in those share it."""
    try:
        folded = tuple(
            (name, rule._converters[name].to_url(value))
            for name, value in sorted((rule.defaults or {}).items())
            if name in rule._converters
        )
        key = (tuple(rule._trace), folded, append_unknown)
        built = _BUILDERS.get(key)
    except Exception:  # a default its converter or a dict cannot take: Werkzeug's own way, unshared
        return _compile_builder(rule, append_unknown)
    if built is None:
        built = _BUILDERS[key] = _compile_builder(rule, append_unknown)
    return built


Rule._compile_builder = _shared_builder


def build_app(instance_dir: Path, database_url: str | None = None, **env: str) -> Flask:
    # No periodic tasks unless a test asks: a scheduled backup must not appear in the middle of another test.
    values = {"REWIND_INSTANCE_DIR": str(instance_dir), "REWIND_SCHEDULER": "0", **TEST_KEYS, **env}
    if database_url:
        values["REWIND_DATABASE_URL"] = database_url
    app = create_app(load_settings(values))
    app.jinja_env.bytecode_cache = TEMPLATE_CODE
    return app


def migrate(app: Flask) -> None:
    """Apply Rewind's migrations, then close every connection (copying needs a quiet database)."""
    from app.extensions import db

    enable(app)
    with app.app_context():
        upgrade()
        db.engine.dispose()


class SqliteTemplate:
    def __init__(self, root: Path, seed=None) -> None:
        """Migrate once; seed(app), when given, adds rows every copy starts with."""
        self.path = root / "template.db"
        app = build_app(root / "template-instance", f"sqlite:///{self.path}")
        migrate(app)
        if seed is not None:
            seed(app)
            from app.extensions import db

            with app.app_context():
                db.engine.dispose()

    def new_url(self, where: Path) -> str:
        target = where / "rewind.db"
        shutil.copyfile(self.path, target)
        return f"sqlite:///{target}"


class PostgresTemplate:
    def __init__(self, server, root: Path) -> None:
        self.server = server
        url = server.create_database("rewind_template")
        migrate(build_app(root / "pg-template-instance", url))

    def new_url(self, where: Path) -> str:
        return self.server.create_database(f"rewind_{next(_counter)}", template="rewind_template")


def add_role_users(app: Flask) -> dict[Role, int]:
    """One account per role, named after it, all with the same password."""
    return {role: add_user(app, role.label, role) for role in Role}


def add_user(app: Flask, name: str, role: Role, password: str = "correct-horse-battery") -> int:
    with app.app_context():
        user, _ = accounts.create_user(name, role, Actor.system(), password)
        return user.id


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf_token(client) -> str:
    # a 404 is the base layout alone; an ended session is sent on to the sign-in page, which has a token too
    page = client.get("/csrf-token-of-this-session", follow_redirects=True).get_data(as_text=True)
    match = CSRF_META.search(page)
    assert match, "no CSRF meta tag on the page"
    return match.group(1)


def login(client, name: str, password: str = "correct-horse-battery"):
    return client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(client)})


def post(client, url: str, data: dict | None = None, **kwargs):
    """POST like a browser form does: with the session's CSRF token."""
    return client.post(url, data={**(data or {}), "csrf_token": csrf_token(client)}, **kwargs)
