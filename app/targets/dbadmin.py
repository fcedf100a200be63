"""A target database seen from outside the application: its server, its copies, its key tables.

What backups and restores need of a database: the server's version and the
client programs that fit it, creating, dropping and renaming whole databases
(a restore fills a scratch database and swaps it in by renaming), row counts
of the key tables, and the Alembic revision. PostgreSQL is reached with
psycopg for SQL and with its own client programs for dumps and restores;
those programs get the password through PGPASSWORD in their environment,
never on their command line. SQLite is a file, read with the standard
library. Every identifier is quoted: a table named `user` is not
`current_user`.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql

from app.targets.command import CommandTimedOut, run_command, shown
from app.targets.errors import TargetError

PG_INSTALLS = "/usr/lib/postgresql/*/bin"
CONNECT_TIMEOUT_S = 10
VERSION_TIMEOUT_S = 20
LOCK_WAIT_S = 10.0  # how long a read of a key table waits for another session's lock on it
RENAME_ATTEMPTS = 5  # each waits up to 5 s (the server's own wait) for ended sessions to go
MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names silently; a swap must never act on a truncated one
# A row stamped after a moment by any of these was written (added or changed) after it: a restore rolls it back.
TIME_COLUMNS = ("created_at", "inserted_at", "updated_at", "modified_at")
FLOAT4_WHOLE = 2**24  # pg_class.reltuples is a float4: above this not every whole number is held exactly
TOOL_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class DatabaseError(TargetError):
    """The target database cannot be read or changed as asked; the message says what to do."""


class DamagedFile(DatabaseError):
    """A SQLite file that is not a database, or whose pages are damaged: what a restore is there to replace."""


@dataclass(frozen=True)
class PgUrl:
    """The parts of a postgresql:// URL; the password is kept for the environment, never for argv."""

    host: str
    port: int
    user: str
    password: str | None
    dbname: str
    sslmode: str | None = None

    @classmethod
    def parse(cls, url: str) -> PgUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise DatabaseError(f"not a PostgreSQL URL: {parts.scheme}://…", fix="write postgresql://user@host/db")
        query = parse_qs(parts.query)
        host = unquote(parts.hostname or "") or (query.get("host") or [""])[0] or "localhost"
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise DatabaseError("the database URL names no database", fix="end it with /DBNAME")
        return cls(
            host=host,
            port=parts.port or 5432,
            user=unquote(parts.username or "") or os.environ.get("USER", "postgres"),
            password=unquote(parts.password) if parts.password else None,
            dbname=dbname,
            sslmode=(query.get("sslmode") or [None])[0],
        )

    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def connect_kwargs(self, dbname: str | None = None) -> dict:
        kwargs = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": dbname or self.dbname,
            "connect_timeout": CONNECT_TIMEOUT_S,
        }
        if self.password:
            kwargs["password"] = self.password
        if self.sslmode:
            kwargs["sslmode"] = self.sslmode
        return kwargs

    def tool_args(self, dbname: str | None = None) -> list[str]:
        """Connection options for pg_dump, pg_restore and psql: no password among them."""
        return [
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--username",
            self.user,
            "--dbname",
            dbname or self.dbname,
        ]

    def tool_env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base) | {"PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S)}
        if self.password:
            env["PGPASSWORD"] = self.password
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        return env


def _major(version_num: int) -> int:
    return version_num // 10000 if version_num >= 100000 else version_num // 100


def check_identifier(name: str) -> str:
    if not name or len(name.encode()) > MAX_IDENTIFIER:
        raise DatabaseError(
            f"the database name {name!r} is longer than PostgreSQL's {MAX_IDENTIFIER} bytes",
            fix="use a shorter database name for the target",
        )
    return name


_PART = r'"(?:[^"]|"")+"|[^".]+'
_TABLE_NAME = re.compile(rf"(?:({_PART})\.)?({_PART})")


def table_parts(table: str) -> tuple[str, ...]:
    """A key table's schema (if given) and name, as the targets file writes them: `orders`, `billing.invoices`,
    `"Orders"`, `billing."line.items"`. A bare part is the exact name (no case folding); a part in double quotes
    is what is inside them (`""` for a quote), so a name may hold a dot."""
    found = _TABLE_NAME.fullmatch(table)
    if found is None:
        return tuple(table.split(".", 1))
    return tuple(p[1:-1].replace('""', '"') if p.startswith('"') else p for p in found.groups() if p is not None)


def _table_ident(table: str) -> sql.Composable:
    return sql.Identifier(*table_parts(table))


@dataclass(frozen=True)
class DatabaseShape:
    owner: str
    encoding: str
    collate: str
    ctype: str
    user: str  # Rewind's own database user
    may_act_as_owner: bool  # it is the owner, a member of the owner's role, or a superuser
    locale_provider: str = "c"  # pg_database.datlocprovider (PG 15+): c libc, i ICU, b builtin (PG 17+)
    locale: str | None = None  # the ICU (or builtin) locale: daticulocale on PG 15/16, datlocale on PG 17+
    icu_rules: str | None = None  # daticurules (PG 16+): tailoring of the ICU collation
    server_num: int = 0  # the server's version as a number (150008): which of the words above it knows
    superuser: bool = False  # Rewind's user is a superuser: it may restore each object as its own owner

    def locale_clause(self) -> sql.Composable:
        """The words of CREATE DATABASE that give a new database this one's locale provider (PG 15+).

        Said even for libc: a new database otherwise takes template0's provider, which an ICU cluster has.
        """
        if self.server_num < 150000:
            return sql.SQL("")
        if self.locale_provider == "i":
            clause = sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(self.locale or ""))
            if self.icu_rules:
                clause = sql.SQL("{} ICU_RULES {}").format(clause, sql.Literal(self.icu_rules))
            return clause
        if self.locale_provider == "b":
            return sql.SQL(" LOCALE_PROVIDER builtin BUILTIN_LOCALE {}").format(sql.Literal(self.locale or "C"))
        return sql.SQL(" LOCALE_PROVIDER libc")


# Settings whose value is a list of names, each stored quoted as needed: each is given back as its own literal
# (one literal of the whole list would become a single name, e.g. a schema called '"$user", public').
LIST_SETTINGS = frozenset(
    {
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    }
)
DATABASE_PRIVILEGES = frozenset({"CREATE", "CONNECT", "TEMPORARY"})


def split_setting_list(value: str) -> list[str]:
    """The names of a list setting as stored (`"$user", public`): split at commas, double quotes undone."""
    names: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == '"':
            i += 1
            name = []
            while i < n:
                if value[i] == '"':
                    if i + 1 < n and value[i + 1] == '"':
                        name.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                name.append(value[i])
                i += 1
            names.append("".join(name))
        else:
            start = i
            while i < n and value[i] != "," and not value[i].isspace():
                i += 1
            names.append(value[start:i])
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == ",":
            i += 1
    return names


def pasteable(name: str) -> str:
    """A name as it must be typed in SQL: as it is when it is a plain lower-case word, else double-quoted."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Setting:
    """One `ALTER DATABASE … SET` (role None) or `ALTER ROLE … IN DATABASE … SET` of a database."""

    role: str | None
    name: str
    value: str

    def statement(self, dbname: str) -> sql.Composable:
        if self.name in LIST_SETTINGS:
            value = sql.SQL(", ").join(sql.Literal(v) for v in split_setting_list(self.value))
        else:
            value = sql.Literal(self.value)
        return sql.SQL("{} SET {} TO {}").format(self._alter(dbname), sql.Identifier(self.name), value)

    def _alter(self, dbname: str) -> sql.Composable:
        if self.role is None:
            return sql.SQL("ALTER DATABASE {}").format(sql.Identifier(dbname))
        return sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(self.role), sql.Identifier(dbname))

    def words(self, dbname: str) -> str:
        """The setting as a person would type it (ALTER ROLE app IN DATABASE shop SET statement_timeout …)."""
        return f"{self._who(dbname)} SET {self.name} = {self.value}"

    def reset(self, dbname: str) -> str:
        return f"{self._who(dbname)} RESET {self.name}"

    def _who(self, dbname: str) -> str:
        """The ALTER of a statement to paste: names quoted where psql would need them."""
        database = pasteable(dbname)
        return (
            f"ALTER DATABASE {database}"
            if self.role is None
            else f"ALTER ROLE {pasteable(self.role)} IN DATABASE {database}"
        )


@dataclass(frozen=True)
class Grant:
    """One privilege on a database; grantee None is PUBLIC."""

    grantee: str | None
    privilege: str
    grantable: bool

    def statement(self, dbname: str) -> sql.Composable:
        if self.privilege not in DATABASE_PRIVILEGES:
            raise DatabaseError(f"unknown database privilege {self.privilege!r} on {dbname}")
        to = sql.SQL("PUBLIC") if self.grantee is None else sql.Identifier(self.grantee)
        option = sql.SQL(" WITH GRANT OPTION") if self.grantable else sql.SQL("")
        return sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
            sql.SQL(self.privilege), sql.Identifier(dbname), to, option
        )


@dataclass(frozen=True)
class DatabaseConfig:
    """What a database carries beside its contents, which a dump without --create leaves out."""

    settings: tuple[Setting, ...]
    acl: tuple[Grant, ...] | None  # None: never granted or revoked, the default (PUBLIC may connect)


MADE_KEYS = ("owner", "encoding", "collate", "ctype", "locale_provider", "locale", "icu_rules")


def _made_config(made: Mapping) -> DatabaseConfig:
    """The settings and privileges of a made_record, once every part of it is what made_record writes."""
    for key in MADE_KEYS:
        value = made.get(key)
        if not (isinstance(value, str) or (value is None and key in ("locale", "icu_rules"))):
            raise ValueError(f"{key} is {value!r}")
    return DatabaseConfig(
        settings=tuple(Setting(*_strings(entry, 3, nullable=0)) for entry in made.get("settings") or ()),
        acl=None if made.get("acl") is None else tuple(_grant(entry) for entry in made["acl"]),
    )


def _strings(entry, size: int, *, nullable: int | None = None) -> list:
    """A recorded list of `size` texts (the one at `nullable` may be null); ValueError otherwise."""
    if not isinstance(entry, list) or len(entry) != size:
        raise ValueError(f"{entry!r} is not a list of {size}")
    for i, value in enumerate(entry):
        if not (isinstance(value, str) or (value is None and i == nullable)):
            raise ValueError(f"{entry!r} holds {value!r}")
    return entry


def _grant(entry) -> Grant:
    if not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[2], bool):
        raise ValueError(f"{entry!r} is not a recorded grant")
    grantee, privilege = _strings(entry[:2], 2, nullable=0)
    return Grant(grantee, privilege, entry[2])


def made_record(shape: DatabaseShape, config: DatabaseConfig) -> dict:
    """How a database was made, for a backup's manifest: what a dump without --create leaves out, so that a
    database dropped by mistake can be made again as it was before its backup is restored into it."""
    return {
        **{key: getattr(shape, key) for key in MADE_KEYS},
        "settings": [[s.role, s.name, s.value] for s in config.settings],
        "acl": None if config.acl is None else [[g.grantee, g.privilege, g.grantable] for g in config.acl],
    }


# Who owns what a dump holds, outside the system's schemas and extensions: one example object per owner.
OTHER_OWNERS = """
SELECT pg_get_userbyid(o.owner), min(o.what) FROM (
    SELECT c.relowner, 'table ' || c.oid::regclass::text, c.relnamespace, 'pg_class'::regclass, c.oid
    FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    UNION ALL
    SELECT p.proowner, 'function ' || p.oid::regprocedure::text, p.pronamespace, 'pg_proc'::regclass, p.oid
    FROM pg_proc p
    UNION ALL
    SELECT t.typowner, 'type ' || t.oid::regtype::text, t.typnamespace, 'pg_type'::regclass, t.oid
    FROM pg_type t WHERE t.typtype IN ('e', 'd', 'r')
    UNION ALL
    SELECT n.nspowner, 'schema ' || n.nspname, n.oid, 'pg_namespace'::regclass, n.oid
    FROM pg_namespace n WHERE n.nspname <> 'public'
    UNION ALL
    SELECT l.lomowner, 'large object ' || l.oid::text, NULL, 'pg_largeobject'::regclass, l.oid
    FROM pg_largeobject_metadata l
) AS o(owner, what, namespace, catalog, id)
LEFT JOIN pg_namespace s ON s.oid = o.namespace
WHERE pg_get_userbyid(o.owner) <> %s
AND (o.namespace IS NULL OR (s.nspname NOT IN ('pg_catalog', 'information_schema') AND s.nspname NOT LIKE 'pg\\_%%'))
AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.catalog AND d.objid = o.id AND d.deptype = 'e')
GROUP BY 1 ORDER BY 1
"""


class DatabaseBusy(DatabaseError):
    """A database could not be renamed: sessions on it could not be ended, or kept coming back."""

    def __init__(self, message: str, sessions: list[str], fix: str = "") -> None:
        super().__init__(message, fix=fix)
        self.sessions = sessions


class TableLocked(DatabaseError):
    """A key table stayed locked by another session for longer than Rewind waits to read it."""

    def __init__(self, message: str, sessions: list[str], fix: str = "") -> None:
        super().__init__(message, fix=fix)
        self.sessions = sessions


class SpaceUnknown(DatabaseError):
    """The free space of the server's data directory cannot be read from here (a remote server, no permission,
    no connection)."""


class SettingRefused(DatabaseError):
    """Rewind's database user may not give a copy one of the live database's settings."""

    def __init__(self, message: str, setting: Setting, fix: str = "") -> None:
        super().__init__(message, fix=fix)
        self.setting = setting


@dataclass(frozen=True)
class Survey:
    """What one visit to a database read: rows per key table (None: not there), rows newer than a moment, revision."""

    counts: dict[str, int | None]
    newer: dict[str, int]
    revision: str | None
    built: tuple[str, ...] = ()  # tables whose count the restore's index builds made (Postgres.built_counts)


class Postgres:
    """One PostgreSQL target database and the server it lives on."""

    def __init__(self, url: str | PgUrl, env: Mapping[str, str], pg_bin: Path | None = None) -> None:
        self.url = url if isinstance(url, PgUrl) else PgUrl.parse(url)
        self.env = dict(env)
        self.pg_bin = pg_bin

    @property
    def name(self) -> str:
        return self.url.dbname

    def sibling(self, dbname: str) -> Postgres:
        """Another database on the same server, reached as this one is (a restore's copy of it)."""
        check_identifier(dbname)
        return Postgres(replace(self.url, dbname=dbname), self.env, self.pg_bin)

    def connect(self, dbname: str | None = None) -> psycopg.Connection:
        try:
            return psycopg.connect(**self.url.connect_kwargs(dbname), autocommit=True)
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to database {dbname or self.name!r} on {self.url.where()}: {str(exc).strip()}",
                fix="check database.url (host, port, user, password) and that the server is running",
            ) from None

    def _one(self, query, params=(), dbname: str | None = None):
        with self.connect(dbname) as conn:
            try:
                row = conn.execute(query, params).fetchone()
            except psycopg.Error as exc:
                raise DatabaseError(f"{self.url.where()}: {str(exc).strip()}") from None
        return row[0] if row else None

    # --- the server and its programs ---------------------------------------------------------

    def server_version(self) -> tuple[int, str]:
        """(major, full text) of the server, e.g. (15, "15.8"); asked of the maintenance database when live cannot
        be reached (dropped, or closed while a restore makes it again)."""
        try:
            conn = self.connect()
        except DatabaseError:
            conn = self.connect("postgres")
        with conn:
            num = int(conn.execute("SHOW server_version_num").fetchone()[0])
            text = conn.execute("SHOW server_version").fetchone()[0]
        return _major(num), str(text).split()[0]

    def tool(self, program: str) -> str:
        """The path of pg_dump/pg_restore/psql of at least the server's major version; DatabaseError says which."""
        major, full = self.server_version()
        found: list[tuple[int, str]] = []
        unknown: list[str] = []
        for folder in self._tool_dirs():
            path = os.path.join(folder, program)
            if not os.access(path, os.X_OK):
                continue
            version, why = _tool_major(path, self.env)
            if version is None:
                unknown.append(why)
                continue
            found.append((version, path))
            if version >= major:
                return path
        seen = ", ".join(f"{v} ({p})" for v, p in found) or "none"
        where = f"database.pg_bin = {self.pg_bin}" if self.pg_bin else f"{PG_INSTALLS} and PATH"
        raise DatabaseError(
            f"{program} {major} or newer is needed for the PostgreSQL {full} server at {self.url.where()}; "
            f"found in {where}: {seen}" + "".join(f"; {why}" for why in unknown),
            fix=f"install postgresql-client-{major} (or newer), or point database.pg_bin at its bin folder",
        )

    def _tool_dirs(self) -> list[str]:
        if self.pg_bin is not None:
            return [str(self.pg_bin)]
        installs = sorted(glob.glob(PG_INSTALLS), key=_install_major, reverse=True)
        on_path = [os.path.dirname(p) for p in [shutil.which("pg_dump", path=self.env.get("PATH"))] if p]
        return [*installs, *on_path]

    # --- whole databases ---------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return bool(self._one("SELECT 1 FROM pg_database WHERE datname = %s", (name,), dbname="postgres"))

    def databases(self, like: re.Pattern[str]) -> list[str]:
        with self.connect("postgres") as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY datname")]
        return [n for n in names if like.fullmatch(n)]

    def size(self, name: str | None = None) -> int:
        return int(self._one("SELECT pg_database_size(%s)", (name or self.name,), dbname="postgres") or 0)

    def data_directory_free(self) -> int:
        """Free bytes where the server keeps its data; SpaceUnknown says why they cannot be read from here."""
        if self.url.host not in ("localhost", "127.0.0.1", "::1") and not self.url.host.startswith("/"):
            raise SpaceUnknown(f"the server is on {self.url.host}, not on this host: its disks are not seen from here")
        try:
            conn = self.connect("postgres")
        except DatabaseError as exc:  # the server is down, the login refused: no GRANT would help
            raise SpaceUnknown(f"could not connect: {exc.message}", fix=exc.fix) from None
        with conn:
            try:
                folder = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
            except psycopg.errors.InsufficientPrivilege as exc:
                raise SpaceUnknown(
                    f"the server does not tell {self.url.user} where its data directory is "
                    f"({self.url.where()}: {str(exc).strip()})",
                    fix=f"GRANT pg_read_all_settings TO {self.url.user}",
                ) from None
            except psycopg.Error as exc:
                raise SpaceUnknown(
                    f"could not ask {self.url.where()} where its data directory is: {str(exc).strip()}"
                ) from None
        try:
            return shutil.disk_usage(folder).free
        except OSError as exc:
            raise SpaceUnknown(
                f"its data directory {folder} cannot be read from here: {exc.strerror or exc}",
                fix="run Rewind as a user that may read the server's data directory",
            ) from None

    def create(
        self,
        name: str,
        like: str | None = None,
        *,
        shape: DatabaseShape | None = None,
        config: DatabaseConfig | None = None,
    ) -> None:
        """A new empty database; `like` names one whose owner, encoding, locale and privileges it takes (a
        restore's scratch must be what the application's role can use after the swap, and sort as the database
        it replaces). Its settings are not copied here: see copy_settings. `shape` and `config`: `like`'s, when
        the caller has just read them (each read is a connection of its own)."""
        check_identifier(name)
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
        if like is not None or shape is not None:
            shape = shape or self.shape(like)
            config = config or (self.config(like) if like is not None else DatabaseConfig((), None))
            statement = sql.SQL("{} OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}{}").format(
                statement,
                sql.Identifier(shape.owner),
                sql.Literal(shape.encoding),
                sql.Literal(shape.collate),
                sql.Literal(shape.ctype),
                shape.locale_clause(),
            )
        self._ddl(statement, f"create {name}")
        if shape is not None:
            try:  # before anything is in it: who may connect is the live database's choice from the start
                self.copy_acl(config, shape.owner, name)
            except DatabaseError:
                self.drop(name)  # made just now by this call: like `like`, or not at all
                raise

    def remake(self, name: str, made: Mapping) -> DatabaseShape:
        """Create `name` empty, as `made` (made_record) says it was: owner, encoding, locale, privileges, settings.
        For a live database that is gone; a failure leaves nothing made."""
        try:  # a manifest is JSON a person can edit: its record must have the shape Rewind wrote, or nothing is made
            config = _made_config(made)
        except (TypeError, ValueError) as exc:
            raise DatabaseError(
                f"the backup's record of how {name} was made is not as Rewind writes it ({exc})",
                fix="create the database by hand as it was, then restore again",
            ) from None
        with self.connect("postgres") as conn:
            num = conn.info.server_version
            user, superuser = conn.execute(
                "SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)"
            ).fetchone()
            owner = made["owner"]
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() is None:
                raise DatabaseError(
                    f"{name} belonged to the role {owner}, which is not on {self.url.where()} either",
                    fix=f"create the role first (CREATE ROLE {pasteable(owner)} LOGIN), then restore again",
                )
            member = conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (owner,)).fetchone()[0]
        shape = DatabaseShape(
            **{key: made.get(key) for key in MADE_KEYS},
            user=user,
            may_act_as_owner=bool(member or superuser),
            server_num=num,
            superuser=bool(superuser),
        )
        self.create(name, shape=shape, config=config)
        try:
            self.copy_settings(config, name)
            # Closed until a swap renames it away: an application restarting meanwhile must not begin writing
            # into an empty database (its start script's `flask db upgrade` would make the schema and serve).
            self._ddl(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)), "close")
        except DatabaseError:
            self.drop(name)
            raise
        return shape

    def allows_connections(self, name: str) -> bool:
        return bool(self._one("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,), dbname="postgres"))

    def has_tables(self, name: str) -> bool:
        """Any table outside the system's schemas: a database made empty has been written to since."""
        query = "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
        query += "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' LIMIT 1"
        return bool(self._one(query, dbname=name))

    def config(self, name: str) -> DatabaseConfig:
        """The database's own settings (for every role, or per role) and its ACL, as the catalogs hold them."""
        with self.connect("postgres") as conn:
            found = conn.execute("SELECT d.datacl IS NULL FROM pg_database d WHERE d.datname = %s", (name,)).fetchone()
            if found is None:
                raise DatabaseError(f"there is no database {name!r} on {self.url.where()}", fix="check database.url")
            settings = conn.execute(
                "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, c.entry "
                "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, "
                "unnest(s.setconfig) WITH ORDINALITY AS c(entry, n) "
                "WHERE d.datname = %s ORDER BY s.setrole <> 0, 1, c.n",
                (name,),
            ).fetchall()
            grants = conn.execute(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
                "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1, 2",
                (name,),
            ).fetchall()
        return DatabaseConfig(
            settings=tuple(Setting(role, *entry.split("=", 1)) for role, entry in settings),
            acl=None if found[0] else tuple(Grant(*row) for row in grants),
        )

    def check_settings(self, name: str) -> DatabaseConfig:
        """The database's config, once each of its settings is known to be one Rewind's user may give a copy.

        Each is set again, to the value it has, on the database itself in a transaction that is rolled back:
        the server's own privilege rules answer (superuser-only settings, other roles' settings), nothing changes.
        SettingRefused names the first it may not.
        """
        config = self.config(name)
        with self.connect("postgres") as conn:
            for setting in config.settings:
                try:
                    with conn.transaction(force_rollback=True):
                        conn.execute(setting.statement(name))
                except psycopg.Error as exc:
                    raise SettingRefused(
                        f"Rewind's database user {self.url.user} may not give a copy of {name} its setting "
                        f"`{setting.words(name)}` ({str(exc).strip()}): a restored copy would be without it",
                        setting,
                        fix=_setting_fix(setting, name, self.url.user),
                    ) from None
        return config

    def copy_acl(self, config: DatabaseConfig, owner: str, name: str) -> None:
        """Give a database the privileges `config` holds, in place of the default ones (one transaction)."""
        if config.acl is None:
            return
        statements = [
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)),
            sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(name), sql.Identifier(owner)),
            *(grant.statement(name) for grant in config.acl),
        ]
        self._in_one_transaction(statements, f"give {name} the privileges of its live database")

    def copy_public_schema(self, source: str, name: str) -> None:
        """Give a new database's `public` schema the owner and grants it has in `source`, before a dump is restored
        into it object by object as each one's owner: the migration role granted CREATE there must be able to
        create its tables before the dump's own GRANTs, which come last, are restored."""
        with self.connect(source) as conn:
            found = conn.execute(
                "SELECT pg_get_userbyid(n.nspowner), "
                "CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
                "a.is_grantable FROM pg_namespace n LEFT JOIN LATERAL aclexplode(n.nspacl) a ON true "
                "WHERE n.nspname = 'public'"
            ).fetchall()
        if not found:
            return
        statements: list[sql.Composable] = []
        owner = found[0][0]
        if owner != "pg_database_owner":
            statements.append(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
        for _, grantee, privilege, grantable in found:
            if privilege not in ("USAGE", "CREATE"):
                continue
            to = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
            option = sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")
            statements.append(sql.SQL("GRANT {} ON SCHEMA public TO {}{}").format(sql.SQL(privilege), to, option))
        if not statements:
            return
        with self.connect(name) as conn:
            try:
                with conn.transaction():
                    for statement in statements:
                        conn.execute(statement)
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"could not give {name}'s schema public the owner and grants it has in {source} on "
                    f"{self.url.where()}: {str(exc).strip()}"
                ) from None

    def copy_settings(self, config: DatabaseConfig, name: str) -> None:
        """Give a database the settings `config` holds (ALTER DATABASE/ROLE … SET), in one transaction."""
        self._in_one_transaction(
            [setting.statement(name) for setting in config.settings], f"give {name} the settings of its live database"
        )

    def _in_one_transaction(self, statements: list[sql.Composable], what: str) -> None:
        if not statements:
            return
        with self.connect("postgres") as conn:
            try:
                with conn.transaction():
                    for statement in statements:
                        conn.execute(statement)
            except psycopg.Error as exc:
                raise DatabaseError(f"could not {what} on {self.url.where()}: {str(exc).strip()}") from None

    def other_owners(self, name: str, owner: str) -> dict[str, str]:
        """Roles other than `owner` that own objects in the database (an extension's aside), each with one of them."""
        with self.connect(name) as conn:
            rows = conn.execute(OTHER_OWNERS, (owner,)).fetchall()
        return dict(rows)

    def shape(self, name: str) -> DatabaseShape:
        """Who owns a database, its encoding and locale (provider included), and whether Rewind's user may act
        as that owner. The locale provider's columns differ by server version: read the ones this server has."""
        with self.connect("postgres") as conn:
            num = conn.info.server_version
            provider = "d.datlocprovider::text" if num >= 150000 else "'c'"
            locale = "d.datlocale" if num >= 170000 else "d.daticulocale" if num >= 150000 else "NULL"
            rules = "d.daticurules" if num >= 160000 else "NULL"
            row = conn.execute(
                sql.SQL(
                    "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, "
                    "current_user, pg_has_role(current_user, d.datdba, 'MEMBER'), {}, {}, {}, "
                    "(SELECT rolsuper FROM pg_roles WHERE rolname = session_user) "
                    "FROM pg_database d WHERE d.datname = %s"
                ).format(sql.SQL(provider), sql.SQL(locale), sql.SQL(rules)),
                (name,),
            ).fetchone()
        if row is None:
            raise DatabaseError(f"there is no database {name!r} on {self.url.where()}", fix="check database.url")
        return DatabaseShape(*row[:9], server_num=num, superuser=bool(row[9]))

    def drop(self, name: str) -> None:
        check_identifier(name)
        self.end_connections(name)
        self._ddl(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)), f"drop {name}")

    def rename(self, old: str, new: str, attempts: int = RENAME_ATTEMPTS) -> None:
        """Rename a database after ending its sessions (a rename needs it idle); DatabaseError if it stays busy.

        The sessions are ended once more in the rename's own round trip: a pool that reconnects as soon as its
        connections are ended was otherwise back before the rename, which then waited for it and gave up. Once
        the rename holds the database's lock, a connection that comes waits for it, then finds no such database.
        """
        check_identifier(old)
        check_identifier(new)
        statement = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
        for _ in range(attempts):
            refused = self.end_connections(old)
            try:
                self._ddl(sql.SQL("{}; {}").format(_end_sessions(old), statement), f"rename {old} to {new}")
                return
            except DatabaseError as exc:
                if "being accessed by other users" not in exc.message:
                    raise
                if refused:
                    raise DatabaseBusy(
                        f"could not rename {old} to {new} on {self.url.where()}: {len(refused)} session(s) on {old} "
                        f"that Rewind's database user {self.url.user} may not end: {'; '.join(refused)}",
                        refused,
                        fix=f"end them (pg_terminate_backend as a superuser), or grant {self.url.user} the "
                        "pg_signal_backend role, then try again",
                    ) from None
        still = self.sessions(old)
        raise DatabaseBusy(
            f"could not rename {old} to {new} on {self.url.where()}: new sessions kept connecting to {old} as fast "
            f"as they were ended ({attempts} attempts)" + (f": {'; '.join(still)}" if still else ""),
            still,
            fix=f"stop what keeps connecting to {old} (another copy of the application, a worker, a pooler such as "
            "pgbouncer) and try again; nothing was renamed",
        )

    def sessions(self, name: str) -> list[str]:
        """The other sessions on a database, in words (pid, user, application, client)."""
        with self.connect("postgres") as conn:
            rows = conn.execute(
                "SELECT pid, usename, application_name, client_addr::text FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() ORDER BY pid",
                (name,),
            ).fetchall()
        return [_session_words(*row) for row in rows]

    def end_connections(self, name: str) -> list[str]:
        """End every other session on the database; the ones this user may not end, in words (pid, user, app)."""
        refused = []
        try:
            with self.connect("postgres") as conn:
                sessions = conn.execute(
                    "SELECT pid, usename, application_name FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                ).fetchall()
                for pid, user, application in sessions:
                    try:
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    except psycopg.errors.InsufficientPrivilege:
                        refused.append(_session_words(pid, user, application))
        except psycopg.Error as exc:
            raise DatabaseError(
                f"could not end the sessions on {name} on {self.url.where()}: {str(exc).strip()}",
                fix="check that the server is up and that Rewind's database user may connect to it",
            ) from None
        return refused

    def _ddl(self, statement: sql.Composable, what: str) -> None:
        with self.connect("postgres") as conn:
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"could not {what} on {self.url.where()}: {str(exc).strip()}",
                    fix="the database user needs the CREATEDB privilege and must own the target database",
                ) from None

    # --- what is inside ----------------------------------------------------------------------

    def counts(
        self, tables: Sequence[str], dbname: str | None = None, *, as_built: bool = False
    ) -> dict[str, int | None]:
        """Rows per table; None for a table that is not there. `as_built`: see built_counts."""
        found: dict[str, int | None] = {}
        with self._reading(dbname) as conn:
            if as_built:
                found.update(self.built_counts(conn, tables))
            for table in tables:
                if table in found:
                    continue
                try:
                    query = sql.SQL("SELECT count(*) FROM {}").format(_table_ident(table))
                    found[table] = int(self._locked_said(conn, table, dbname, query).fetchone()[0])
                except psycopg.errors.UndefinedTable:
                    found[table] = None
        return found

    def _reading(self, dbname: str | None) -> psycopg.Connection:
        """A connection for reading the key tables that waits at most LOCK_WAIT_S for a table's lock: a session
        holding one (a migration left idle in its transaction) must not hold a job up for as long as it stays."""
        conn = self.connect(dbname)
        try:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{int(LOCK_WAIT_S * 1000)}ms")))
        except psycopg.Error as exc:
            conn.close()
            raise DatabaseError(f"{self.url.where()}: {str(exc).strip()}") from None
        return conn

    def _locked_said(self, conn: psycopg.Connection, table: str, dbname: str | None, query, params=()):
        """Run a read of `table`; TableLocked names the sessions holding a lock it waited for in vain."""
        try:
            return conn.execute(query, params)
        except psycopg.errors.LockNotAvailable:
            holders = conn.execute(
                "SELECT DISTINCT a.pid, a.usename, a.application_name, a.client_addr::text, a.state FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted AND l.mode = 'AccessExclusiveLock' "
                "AND l.relation = to_regclass(%s) AND a.pid <> pg_backend_pid() ORDER BY a.pid",
                (_table_ident(table).as_string(conn),),
            ).fetchall()
            sessions = [_session_words(*row[:4]) + (f", {row[4]}" if row[4] else "") for row in holders]
            where = dbname or self.name
            # the very statement to paste, with the pid(s) just named; none named (gone meanwhile): its shape
            end = "; ".join(f"SELECT pg_terminate_backend({row[0]})" for row in holders)
            end = end or "SELECT pg_terminate_backend(pid)"
            raise TableLocked(
                f"could not read {table} in {where} on {self.url.where()}: locked for more than {LOCK_WAIT_S:g} s"
                + (f" by {'; '.join(sessions)}" if sessions else ""),
                sessions,
                fix=f"let that session finish (commit or roll back), or end it ({end}), then try again",
            ) from None

    def revision(self, dbname: str | None = None) -> str | None:
        """The Alembic revision(s) recorded in the database, or None without alembic_version."""
        with self.connect(dbname) as conn:
            try:
                rows = conn.execute("SELECT version_num FROM alembic_version ORDER BY 1").fetchall()
            except psycopg.errors.UndefinedTable:
                return None
        return ",".join(r[0] for r in rows) or None

    def survey(
        self,
        tables: Sequence[str],
        since: datetime | None = None,
        dbname: str | None = None,
        *,
        as_built: bool = False,
    ) -> Survey:
        """Counts, rows newer than `since` and the revision on one connection, one scan per table.

        The count and the newer-than count share the table's scan. `as_built` (no `since`): see built_counts.
        """
        counts: dict[str, int | None] = {}
        newer: dict[str, int] = {}
        built: dict[str, int] = {}
        with self._reading(dbname) as conn:
            if as_built and since is None:
                built = self.built_counts(conn, tables)
            try:
                rows = self._locked_said(
                    conn, "alembic_version", dbname, "SELECT version_num FROM alembic_version ORDER BY 1"
                ).fetchall()
                revision = ",".join(r[0] for r in rows) or None
            except psycopg.errors.UndefinedTable:
                revision = None
            for table in tables:
                if table in built:
                    counts[table] = built[table]
                    continue
                columns = self._time_columns(conn, table) if since is not None else []
                if not columns:
                    query = sql.SQL("SELECT count(*), 0 FROM {}").format(_table_ident(table))
                    params: tuple = ()
                else:
                    written = sql.SQL(" OR ").join(sql.SQL("{} > %s").format(sql.Identifier(c)) for c, _ in columns)
                    query = sql.SQL("SELECT count(*), count(*) FILTER (WHERE {}) FROM {}").format(
                        written, _table_ident(table)
                    )
                    # A column without a zone holds UTC wall times (as Rewind's own do): compared as such, never
                    # through the session's TimeZone, which a server set to another zone would shift it by.
                    params = tuple(
                        since if kind == "timestamp with time zone" else since.astimezone(UTC).replace(tzinfo=None)
                        for _, kind in columns
                    )
                try:
                    total, recent = self._locked_said(conn, table, dbname, query, params).fetchone()
                except psycopg.errors.UndefinedTable:
                    counts[table] = None
                    continue
                counts[table] = int(total)
                if columns:
                    newer[table] = int(recent)
        return Survey(counts, newer, revision, tuple(built))

    @staticmethod
    def built_counts(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, int]:
        """Rows per table as the index builds of a copy pg_restore has just filled counted them.

        Building an index reads every row of its table and records how many it found (pg_class.reltuples), and
        pg_restore builds them after all the data is in: counting such a copy again scans it a second time, a third
        of a restore's compare step at 200 MB. A table's figure is taken only where it still stands: a plain table
        with an index, as many pages as that build saw, never vacuumed or analyzed (either puts an estimate there;
        the lock keeps one from starting while it is read), and a number a float4 holds exactly. Not for a table
        with inheritance children or row security (count(*) sees other rows than its own heap), nor on PostgreSQL
        before 15 (whose vacuum and analyze counters lag behind pg_class) or from 18 (whose pg_restore can write an
        archive's statistics there). Every other table is left out, for the caller to count; so is every table
        when one is locked or missing.
        """
        found: dict[str, int] = {}
        if not tables:
            return found
        try:
            with conn.transaction():
                idents = sql.SQL(", ").join(_table_ident(t) for t in tables)
                conn.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE NOWAIT").format(idents))
                for table in tables:
                    row = conn.execute(
                        "SELECT c.reltuples FROM pg_class c JOIN pg_stat_all_tables s ON s.relid = c.oid "
                        "WHERE c.oid = to_regclass(%s) AND c.relkind = 'r' AND c.relhasindex "
                        "AND NOT c.relhassubclass AND NOT c.relrowsecurity "
                        "AND current_setting('server_version_num')::int BETWEEN 150000 AND 179999 "
                        "AND c.reltuples >= 0 AND c.reltuples < %s "
                        "AND c.relpages = pg_relation_size(c.oid) / current_setting('block_size')::int "
                        "AND s.vacuum_count + s.autovacuum_count + s.analyze_count + s.autoanalyze_count = 0",
                        (_table_ident(table).as_string(conn), FLOAT4_WHOLE),
                    ).fetchone()
                    if row is not None:
                        found[table] = int(row[0])
        except (
            psycopg.errors.LockNotAvailable,
            psycopg.errors.UndefinedTable,
            psycopg.errors.WrongObjectType,
            psycopg.errors.InsufficientPrivilege,
        ):
            return {}
        return found

    @staticmethod
    def _time_columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
        """The table's timestamp columns of TIME_COLUMNS, with their types: a row is newer than a moment when any
        of them is (an updated_at tells a changed row from an old one, which a created_at alone does not)."""
        *schema, name = table_parts(table)
        schema = schema[0] if schema else ""
        types = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = coalesce(nullif(%s, ''), current_schema())",
                (name, schema),
            )
        }
        return [(c, types[c]) for c in TIME_COLUMNS if "timestamp" in types.get(c, "")]


def _session_words(pid: int, user: str | None, application: str | None, client: str | None = None) -> str:
    said = f"pid {pid} of user {user or 'unknown'}" + (f' ("{application}")' if application else "")
    return said + (f" from {client}" if client else "")


def _end_sessions(dbname: str) -> sql.Composable:
    """A DO block ending every other session on a database (the ones this user may not end are left, not fatal):
    sent with the rename, in one round trip."""
    body = sql.SQL(
        "DECLARE p integer; BEGIN FOR p IN SELECT pid FROM pg_stat_activity WHERE datname = {} "
        "AND pid <> pg_backend_pid() LOOP BEGIN PERFORM pg_terminate_backend(p); "
        "EXCEPTION WHEN insufficient_privilege THEN NULL; END; END LOOP; END"
    ).format(sql.Literal(dbname))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(None)))


def _setting_fix(setting: Setting, dbname: str, user: str) -> str:
    if setting.role is not None:
        may = (
            f"let {user} set {setting.role}'s defaults (CREATEROLE; from PostgreSQL 16 also ADMIN OPTION on "
            f"{setting.role}: GRANT {setting.role} TO {user} WITH ADMIN OPTION), or put a superuser's login in "
            "database.url"
        )
    else:
        may = f"GRANT SET ON PARAMETER {setting.name} TO {user}; or put a superuser's login in database.url"
    return f"{may}; or, if {dbname} does not need it, {setting.reset(dbname)}"


def _install_major(folder: str) -> int:
    try:
        return int(Path(folder).parent.name)
    except ValueError:
        return 0


_versions: dict[str, tuple[int | None, str]] = {}


def _tool_major(path: str, env: Mapping[str, str]) -> tuple[int | None, str]:
    """The major version a pg tool reports, or None and why it told none (a wrapper that exits without a word)."""
    if path not in _versions:
        argv = [path, "--version"]
        try:
            result = run_command(argv, timeout=VERSION_TIMEOUT_S, env=dict(env), capture=True)
        except OSError as exc:
            return None, f"`{shown(argv)}` cannot run: {exc.strerror or exc}"
        except CommandTimedOut:
            return None, f"`{shown(argv)}` did not answer within {VERSION_TIMEOUT_S:g} s"
        match = TOOL_VERSION.search(result.stdout)
        if result.ok and match:
            _versions[path] = int(match.group(1)), ""
        else:
            said = (result.stderr.strip() or result.stdout.strip()).splitlines()
            how = "did not name a PostgreSQL version" if result.ok else result.ended
            words = f": {said[-1]}" if said else " and printed nothing"
            _versions[path] = None, f"`{shown(argv)}` {how}{words}"
    return _versions[path]


class Sqlite:
    """One SQLite target database: a file."""

    def __init__(self, url: str) -> None:
        if not url.startswith("sqlite:///"):
            raise DatabaseError(f"not a SQLite URL: {url}", fix="write sqlite:///path/to/file.db")
        self.path = Path(url[len("sqlite:///") :])

    @property
    def name(self) -> str:
        return self.path.name

    def sibling(self, name: str) -> Sqlite:
        """Another file in the same folder (a restore's copy of this database)."""
        if not name or "/" in name or name in (".", ".."):
            raise DatabaseError(f"not a file name beside {self.path.name}: {name!r}", fix="name a file, not a path")
        return Sqlite(f"sqlite:///{self.path.with_name(name)}")

    def connect(self, path: Path | None = None, *, readonly: bool = True) -> sqlite3.Connection:
        path = path or self.path
        if not path.exists():
            raise DatabaseError(f"there is no SQLite database at {path}", fix="check database.url")
        mode = "ro" if readonly else "rw"
        try:
            return sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open {path}: {exc}") from None

    @contextmanager
    def _reading(self, path: Path | None = None) -> Iterator[sqlite3.Connection]:
        """A read-only connection whose failures are the adapter's, said with the file: DamagedFile for a file that
        is not a database or has a damaged page, DatabaseError for the rest; a missing table stays each caller's."""
        conn = self.connect(path)
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            said = f"cannot read {path or self.path}: {exc}"
            if getattr(exc, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise DamagedFile(said, fix="restore a backup: the damaged file is kept beside it") from None
            raise DatabaseError(said) from None
        finally:
            conn.close()

    def copy_to(self, dest: Path) -> None:
        """A consistent copy while the application keeps writing: SQLite's online backup API."""
        source = self.connect()
        try:
            copy = sqlite3.connect(dest)
            try:
                source.backup(copy)
            finally:
                copy.close()
        except sqlite3.Error as exc:
            raise DatabaseError(f"could not copy {self.path}: {exc}") from None
        finally:
            source.close()

    def snapshot(self) -> bytes:
        """A consistent copy as the bytes of a database file, never written anywhere: the online backup
        API into an in-memory database, serialised. Costs about twice the database's size in memory."""
        source = self.connect()
        try:
            copy = sqlite3.connect(":memory:")
            try:
                source.backup(copy)
                return copy.serialize()
            finally:
                copy.close()
        except sqlite3.Error as exc:
            raise DatabaseError(f"could not copy {self.path}: {exc}") from None
        finally:
            source.close()

    def size(self, path: Path | None = None) -> int:
        return (path or self.path).stat().st_size

    def integrity(self, path: Path | None = None) -> str:
        conn = self.connect(path)
        try:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            return str(exc)
        finally:
            conn.close()

    def counts(
        self, tables: Sequence[str], path: Path | None = None, *, as_built: bool = False
    ) -> dict[str, int | None]:
        """Rows per table; None for a table that is not there. `as_built` is Postgres's: SQLite keeps no count of
        an index build's, so every table is counted."""
        found: dict[str, int | None] = {}
        with self._reading(path) as conn:
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                try:
                    found[table] = int(conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0])  # noqa: S608
                except sqlite3.OperationalError:
                    found[table] = None
        return found

    def revision(self, path: Path | None = None) -> str | None:
        with self._reading(path) as conn:
            try:
                rows = conn.execute("SELECT version_num FROM alembic_version ORDER BY 1").fetchall()
            except sqlite3.OperationalError:
                return None
        return ",".join(r[0] for r in rows) or None

    def survey(
        self,
        tables: Sequence[str],
        since: datetime | None = None,
        path: Path | None = None,
        *,
        as_built: bool = False,
    ) -> Survey:
        """Counts, rows newer than `since` and the revision of the file (a local file: no round trips to save).
        `as_built`: as counts()."""
        newer = self.rows_newer_than(tables, since, path) if since is not None else {}
        return Survey(self.counts(tables, path), newer, self.revision(path))

    def rows_newer_than(self, tables: Sequence[str], when: datetime, path: Path | None = None) -> dict[str, int]:
        newer: dict[str, int] = {}
        with self._reading(path) as conn:
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                try:
                    columns = {r[1] for r in conn.execute(f"PRAGMA table_info({quoted})")}
                except sqlite3.OperationalError:
                    continue
                stamped = [c for c in TIME_COLUMNS if c in columns]
                if not stamped:
                    continue
                stamp = when.strftime("%Y-%m-%d %H:%M:%S")
                written = " OR ".join(f'"{c}" > ?' for c in stamped)
                query = f"SELECT count(*) FROM {quoted} WHERE {written}"  # noqa: S608 (quoted; columns are ours)
                newer[table] = int(conn.execute(query, (stamp,) * len(stamped)).fetchone()[0])
        return newer


def open_database(url: str, env: Mapping[str, str], pg_bin: Path | None = None) -> Postgres | Sqlite:
    return Sqlite(url) if url.startswith("sqlite:///") else Postgres(url, env, pg_bin)
