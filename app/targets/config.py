"""The targets file: one TOML table per managed environment, checked key by key.

Reading is strict on purpose: an unknown key is a typo until proven
otherwise, and every error names the file, the target and the key, so a
broken file is fixed in one pass rather than discovered mid-incident. Any
string may be written `env:NAME` to read it from the environment at start-up,
so the file itself can be committed without secrets, and `envfile:NAME` to
read it from the target's own env file, so the application and Rewind read
one value (a database URL written once, in the `.env`).
"""

from __future__ import annotations

import difflib
import os
import re
import signal
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.targets.envfile import EnvFileError, read_parsed
from app.targets.gpg import check_passphrase

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
PROBE_TIMEOUT_S = 2.0  # how long one health probe waits for an answer, unless health.probe_timeout says


class TargetsFileError(ValueError):
    """One problem in the targets file, located as precisely as possible."""

    def __init__(self, path: Path, problem: str, target: str | None = None, key: str | None = None) -> None:
        where = str(path)
        if target:
            where += f": target {target!r}"
        if key:
            where += f": key {key!r}"
        super().__init__(f"{where}: {problem}")
        self.path, self.target, self.key, self.problem = path, target, key, problem


@dataclass(frozen=True)
class RepoConfig:
    path: Path
    branch: str = "main"
    remote: str | None = None
    force_push: bool = False


@dataclass(frozen=True)
class ProcessConfig:
    """Either argv commands (systemd, supervisor…) or a command Rewind starts and supervises itself."""

    start: tuple[str, ...] | None = None
    stop: tuple[str, ...] | None = None
    restart: tuple[str, ...] | None = None
    status: tuple[str, ...] | None = None  # exit status 0 means running; with start/stop/restart only
    command: tuple[str, ...] | None = None
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    pid_file: Path | None = None  # managed mode; default under Rewind's instance folder
    log_file: Path | None = None
    reload: str | None = None  # managed mode: signal name (e.g. "HUP") that makes a restart a graceful reload
    env_file: bool = False  # the target's env file is part of every command's environment
    stop_timeout: float = 10.0  # managed mode: seconds between SIGTERM and SIGKILL (gunicorn drains for 30 s)

    @property
    def managed(self) -> bool:
        return self.command is not None


@dataclass(frozen=True)
class ReleaseConfig:
    """Commands run in the checkout after every code change and before the restart (pip install …)."""

    commands: tuple[tuple[str, ...], ...] = ()
    timeout: float = 600.0  # seconds each command may take


@dataclass(frozen=True)
class HealthConfig:
    url: str
    status: int = 200
    json: dict[str, Any] | None = None
    timeout: float = 30.0
    smoke: tuple[str, ...] | None = None
    failure_threshold: int = 3  # 5xx answers in a row that fail a verification before its timeout
    ca_file: Path | None = None  # a PEM certificate (or its CA) to trust for an https health URL, e.g. self-signed
    # How long one probe waits for an answer. A slower answer is not a failure while `timeout` has not passed: the
    # check asks again. An app whose every answer (not only its first) takes longer needs this raised.
    probe_timeout: float = PROBE_TIMEOUT_S
    # A JSON field of the answer (dots for nested ones) naming the commit the app runs: a verification then passes
    # only when it is the checkout's, so a restart command that exits 0 without restarting is caught.
    commit_field: str | None = None


@dataclass(frozen=True)
class FlagColumns:
    """Column names of the application's flags table; `tag` is optional (it enables "kill everything tagged X")."""

    name: str = "name"
    enabled: str = "enabled"
    description: str = "description"
    updated_at: str = "updated_at"
    tag: str | None = None


@dataclass(frozen=True)
class DatabaseConfig:
    url: str
    migrations: Path | None = None
    flask: tuple[str, ...] | None = None
    flask_app: str | None = None
    key_tables: tuple[str, ...] = ()
    flags_table: str | None = None
    flags_columns: FlagColumns = field(default_factory=FlagColumns)
    pg_bin: Path | None = None  # the folder of pg_dump/pg_restore/psql; default: the newest fitting install
    migrate_on_deploy: bool = False  # run `flask db upgrade` after a deploy's code change, before the restart


@dataclass(frozen=True)
class BackupsConfig:
    dir: Path
    gpg_home: Path | None = None
    recipients: tuple[str, ...] = ()
    passphrase: str | None = field(default=None, repr=False)  # a secret: never in a repr or traceback
    rpo_minutes: int | None = None  # the newest verified backup may be at most this old
    reserve_mb: int = 64  # free space kept beyond a scratch copy's size when restoring
    interval_minutes: int | None = None  # a scheduled backup is due this long after the newest one
    keep_last: int | None = None  # retention: the newest N backups Rewind made …
    keep_daily_days: int = 0  # … and the newest of each day for this many days
    keep_copies_hours: int = 24  # scratch, pre-restore and undone copies are kept this long (the cleanup's default)
    # A restore test may fill its copy as Rewind's own database user when that user cannot act as the live
    # database's owner. Off by default: code in the backup (a CHECK constraint's function, an index expression)
    # then runs as Rewind's user, not as the owner who wrote it.
    test_as_own_user: bool = False


@dataclass(frozen=True)
class BlueGreenConfig:
    slots: dict[str, str]  # slot name -> health URL of that slot
    switch: tuple[str, ...] | None = None  # argv; the slot name is appended
    link: Path | None = None  # or: an atomic symlink swap of link -> slot_dirs[slot]
    slot_dirs: dict[str, Path] = field(default_factory=dict)
    keep_previous_minutes: int = 60


@dataclass(frozen=True)
class TargetConfig:
    name: str
    repo: RepoConfig
    process: ProcessConfig | None = None
    health: HealthConfig | None = None
    database: DatabaseConfig | None = None
    backups: BackupsConfig | None = None
    env_file: Path | None = None
    bluegreen: BlueGreenConfig | None = None
    release: ReleaseConfig | None = None
    protected: bool = False
    auto_rollback: bool = False
    # values read through env: and envfile:, masked in every job log; secrets, so in no repr
    secrets: tuple[str, ...] = field(default=(), repr=False)
    reads_env_file: bool = False  # envfile: values: the file's changes reload the configuration
    # why envfile: values come from a stored version of the env file, not the file (it does not parse)
    env_stale: str | None = None


# A stored version of a target's env file that parses, for when the file does not: (its values, which version in
# words), or None when there is none. Given by the app (Rewind keeps the versions); this module stays Flask-free.
EnvFallback = Callable[[str, Path], tuple[dict[str, str | None], str] | None]


class _Table:
    """Reads one TOML table, remembering which keys were used so leftovers can be reported."""

    def __init__(
        self, data: Any, path: Path, target: str, prefix: str, env: dict[str, str], fallback: EnvFallback | None = None
    ) -> None:
        if not isinstance(data, dict):
            raise TargetsFileError(path, "must be a table", target, prefix or None)
        self.data, self.path, self.target, self.prefix, self.env = data, path, target, prefix, env
        self.used: set[str] = set()
        self.secrets: list[str] = []
        # shared by every table of one target: its env file, once known, its values once read, and why they come
        # from a stored version of it when the file does not parse
        self.env_file: dict[str, Any] = {"path": None, "parsed": None, "read": False, "kept": False, "stale": []}
        self.fallback = fallback

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> TargetsFileError:
        return TargetsFileError(self.path, problem, self.target, self.key(name))

    def _resolve(self, name: str, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("env:"):
            var = value[4:]
            if var not in self.env:
                raise self.fail(name, f"environment variable {var} is not set")
            self.secrets.append(self.env[var])
            return self.env[var]
        if isinstance(value, str) and value.startswith("envfile:"):
            return self._from_env_file(name, value[8:])
        return value

    def _from_env_file(self, name: str, var: str) -> str:
        shared = self.env_file
        path = shared["path"]
        if path is None:
            raise self.fail(name, f"envfile:{var} reads the target's env file: set env_file first")
        if shared["parsed"] is None:
            try:
                shared["parsed"] = read_parsed(path)
            except EnvFileError as exc:  # missing, unreadable, not text: no version stands in for that
                raise self.fail(name, f"envfile:{var} cannot be read: {exc.message}") from None
            shared["read"] = True
        parsed = shared["parsed"]
        values = parsed.values()  # the good lines of a file with bad ones too: what the application reads
        if var not in values and not parsed.ok:
            # QA: a syntax error in the app's env file stopped Rewind from starting, and every command with it,
            # restoring a good version of the file (the fix) included. A value on a bad line is read from the newest
            # stored version that parses, said on the target's pages, until the file is fixed.
            if shared["kept"] is False:  # looked up once per target, however many values it names
                shared["kept"] = self.fallback(self.target, path) if self.fallback else None
            kept = shared["kept"]
            if kept is None or kept[0].get(var) is None:
                try:
                    parsed.check(str(path))
                except EnvFileError as exc:
                    raise self.fail(name, f"envfile:{var} cannot be read: {exc.message}") from None
            stored, where = kept
            values = {var: stored[var]}
            shared["stale"].append((var, where))
        if var not in values:
            raise self.fail(name, f"{var} is not set in the env file {path}")
        found = values[var]
        if found is None:
            raise self.fail(name, f"{var} is named without a value in the env file {path}")
        self.secrets.append(found)
        return found

    def get(self, name: str, kind: type | tuple, default: Any = None, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.fail(name, "is required")
            return default
        value = self._resolve(name, self.data[name])
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(name, f"expected {expected}, got {type(value).__name__} {value!r}")
        return value

    def text(self, name: str, required: bool = False, default: str | None = None) -> str | None:
        value = self.get(name, str, default, required)
        if required and not value:
            raise self.fail(name, "must not be empty")
        return value

    def path_(self, name: str, required: bool = False, must_exist: bool = False) -> Path | None:
        value = self.text(name, required)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (self.path.parent / path).resolve()
        if must_exist and not path.exists():
            raise self.fail(name, f"{path} does not exist")
        return path

    def argv(self, name: str, required: bool = False) -> tuple[str, ...] | None:
        if isinstance(self.data.get(name), str) and not self.data[name].startswith("env:"):
            raise self.fail(
                name, 'expected a list of arguments like ["systemctl", "restart", "app"], never a shell line'
            )
        value = self.get(name, list, None, required)
        if value is None:
            return None
        value = [self._resolve(name, item) for item in value]
        if not value or not all(isinstance(item, str) and item for item in value):
            raise self.fail(
                name, 'expected a list of arguments like ["systemctl", "restart", "app"], never a shell line'
            )
        return tuple(value)

    def words(self, name: str) -> tuple[str, ...]:
        value = self.get(name, list, [])
        if not all(isinstance(item, str) and item for item in value):
            raise self.fail(name, "expected a list of names")
        return tuple(value)

    def table(self, name: str) -> _Table | None:
        self.used.add(name)
        if name not in self.data:
            return None
        sub = _Table(self.data[name], self.path, self.target, self.key(name), self.env, self.fallback)
        sub.secrets = self.secrets  # one list per target
        sub.env_file = self.env_file
        return sub

    def done(self) -> None:
        for name in self.data:
            if name not in self.used:
                close = difflib.get_close_matches(name, sorted(self.used), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(name, f"unknown key{hint}")


def _http_url(table: _Table, key: str, url: str) -> str:
    """A health URL the checker can use as it is: http(s), a host, a valid port, and no credentials.

    A password in the URL would be sent in clear to whatever answers and shown wherever the URL is,
    so it is refused here, at load, and never echoed.
    """
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        shown = f"{parts.scheme}://…@{parts.hostname or ''}"
        raise table.fail(
            key,
            f"a health URL must hold no user or password ({shown}); "
            "give the application an unauthenticated health endpoint",
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise table.fail(key, f"expected an http:// or https:// URL with a host, got {url!r}")
    try:
        parts.port  # noqa: B018 - parses the port, raising on a bad one
    except ValueError:
        raise table.fail(key, f"{url!r} has an invalid port") from None
    return url


# Signals a reload may not use: they cannot be handled, or they stop rather than reload.
_NOT_RELOAD = {"SIGKILL", "SIGSTOP", "SIGTERM", "SIGINT", "SIGQUIT"}


def _signal_name(table: _Table, key: str) -> str | None:
    """A signal given by name ("HUP" or "SIGHUP"), returned as its full name; a number or a stop signal is refused."""
    value = table.text(key)
    if value is None:
        return None
    name = value.strip().upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    valid = {s.name for s in signal.Signals if not s.name.startswith("SIG_")} - _NOT_RELOAD
    if name not in valid:
        raise table.fail(
            key,
            f'expected the name of the signal that makes the application reload, like "HUP" for gunicorn '
            f"(one of {', '.join(sorted(n.removeprefix('SIG') for n in valid))}), got {value!r}",
        )
    return name


def _argv_list(table: _Table, key: str) -> tuple[tuple[str, ...], ...]:
    """A list of commands, each an argv list: [["pip", "install", "-r", "requirements.txt"], […]]."""
    example = 'expected a list of commands, each a list of arguments, like [["pip", "install", "-r", "req.txt"]]'
    value = table.get(key, list, required=True)
    commands = []
    for n, item in enumerate(value, 1):
        if isinstance(item, str):
            raise table.fail(key, f"command {n} is the string {item!r}; {example} — never a shell line")
        if not isinstance(item, list) or not item:
            raise table.fail(key, f"command {n} is not a non-empty list; {example}")
        argv = [table._resolve(key, arg) for arg in item]
        if not all(isinstance(arg, str) and arg for arg in argv):
            raise table.fail(key, f"command {n} holds an argument that is not a non-empty string; {example}")
        commands.append(tuple(argv))
    if not commands:
        raise table.fail(key, f"is empty; {example}, or leave out [release]")
    return tuple(commands)


def _stale_words(env_file: dict[str, Any]) -> str | None:
    """Which values come from a stored version of the env file, and why: None when every value is the file's."""
    if not env_file["stale"]:
        return None
    names = ", ".join(var for var, _ in env_file["stale"])
    where = env_file["stale"][0][1]
    lines = ", ".join(str(p.line) for p in env_file["parsed"].problems[:3])
    return (
        f"{names} {'is' if len(env_file['stale']) == 1 else 'are'} read from {where}: the env file {env_file['path']} "
        f"does not parse (line {lines}), so it is not what the application reads now; restore a version from the "
        "Config tab"
    )


def _target(name: str, raw: Any, path: Path, env: dict[str, str], fallback: EnvFallback | None = None) -> TargetConfig:
    if not set(name) <= NAME_CHARS or not name[:1].isalnum():
        raise TargetsFileError(
            path, "a target name uses lower-case letters, digits, '-' and '_', and starts with a letter or digit", name
        )
    top = _Table(raw, path, name, "", env, fallback)
    env_file = top.path_("env_file")  # first: envfile: values anywhere else read it
    top.env_file["path"] = env_file

    repo_t = top.table("repo")
    if repo_t is None:
        raise top.fail("repo", "is required: [targets.NAME.repo] with path and branch")
    repo = RepoConfig(
        path=repo_t.path_("path", required=True),
        branch=repo_t.text("branch", default="main"),
        remote=repo_t.text("remote"),
        force_push=repo_t.get("force_push", bool, False),
    )
    repo_t.done()

    process = None
    if proc_t := top.table("process"):
        env_table = proc_t.get("env", dict, {})
        process = ProcessConfig(
            start=proc_t.argv("start"),
            stop=proc_t.argv("stop"),
            restart=proc_t.argv("restart"),
            status=proc_t.argv("status"),
            command=proc_t.argv("command"),
            cwd=proc_t.path_("cwd"),
            env={str(k): str(proc_t._resolve("env", v)) for k, v in env_table.items()},
            pid_file=proc_t.path_("pid_file"),
            log_file=proc_t.path_("log_file"),
            reload=_signal_name(proc_t, "reload"),
            env_file=proc_t.get("env_file", bool, False),
            stop_timeout=proc_t.get("stop_timeout", float, 10.0),
        )
        if process.stop_timeout <= 0:
            raise proc_t.fail("stop_timeout", f"must be more than 0 seconds, got {process.stop_timeout:g}")
        if "stop_timeout" in proc_t.data and not process.command:
            raise proc_t.fail("stop_timeout", "belongs to a managed process (command); your stop command decides")
        if process.reload and not process.command:
            raise proc_t.fail(
                "reload", "belongs to a managed process (command); a service manager reloads by its restart command"
            )
        if process.env_file and env_file is None:
            raise proc_t.fail("env_file", f"takes the target's env file: set env_file in [targets.{name}]")
        if (process.pid_file or process.log_file) and not process.command:
            raise proc_t.fail("pid_file", "pid_file and log_file belong to a managed process (command)")
        if process.command and (process.start or process.stop or process.restart):
            raise proc_t.fail("command", "use either command (managed by Rewind) or start/stop/restart, not both")
        if process.command and process.status:
            raise proc_t.fail(
                "status", "belongs to start/stop/restart commands; Rewind knows a managed process from its pid file"
            )
        if not process.command and not (process.restart or (process.start and process.stop)):
            raise proc_t.fail("restart", "give restart, or start and stop, or command for a managed process")
        proc_t.done()

    health = None
    if health_t := top.table("health"):
        url = _http_url(health_t, "url", health_t.text("url", required=True))
        status = health_t.get("status", int, 200)
        if not 100 <= status <= 599:
            raise health_t.fail("status", f"expected an HTTP status, got {status}")
        timeout = health_t.get("timeout", float, 30.0)
        if timeout <= 0:
            raise health_t.fail("timeout", "must be more than 0 seconds")
        threshold = health_t.get("failure_threshold", int, 3)
        if threshold < 1:
            raise health_t.fail("failure_threshold", f"expected a count of probes, 1 or more, got {threshold}")
        ca_file = health_t.path_("ca_file")
        if ca_file is not None and not url.lower().startswith("https:"):
            raise health_t.fail("ca_file", "is only used with an https:// health URL")
        # By default 2 s, or all of a shorter timeout; set, it must fit in the timeout it is a part of.
        probe_timeout = health_t.get("probe_timeout", float, min(PROBE_TIMEOUT_S, timeout))
        if not 0 < probe_timeout <= timeout:
            limit = f"at most health.timeout ({timeout:g})"
            raise health_t.fail("probe_timeout", f"must be more than 0 seconds and {limit}, got {probe_timeout:g}")
        commit_field = health_t.text("commit_field")
        if commit_field is not None and not all(commit_field.split(".")):
            raise health_t.fail(
                "commit_field", f"expected a JSON field name, dots between nested ones; got {commit_field!r}"
            )
        health = HealthConfig(
            url,
            status,
            health_t.get("json", dict),
            timeout,
            health_t.argv("smoke"),
            threshold,
            ca_file,
            probe_timeout,
            commit_field,
        )
        health_t.done()

    database = None
    if db_t := top.table("database"):
        url = db_t.text("url", required=True)
        # An application's SQLAlchemy URL names its driver (postgresql+psycopg://, what Flask-SQLAlchemy needs for
        # psycopg 3), so envfile:DATABASE_URL reads one; Rewind picks its own driver, and reads the rest.
        if driver := re.match(r"(postgres(?:ql)?)\+[A-Za-z0-9_]+://", url):
            bare = "postgresql://" + url[driver.end() :]
            if url in db_t.secrets:
                db_t.secrets.append(bare)  # the form Rewind uses is masked too
            url = bare
        if not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise db_t.fail(
                "url",
                "expected postgresql://user:password@host:port/db (a driver, as in postgresql+psycopg://, is allowed)"
                " or sqlite:///path",
            )
        flask_app = db_t.text("flask_app")
        flags_table = db_t.text("flags_table")
        flags_columns = FlagColumns()
        if cols_t := db_t.table("flags_columns"):
            if not flags_table:
                raise db_t.fail("flags_columns", "names the columns of flags_table: set flags_table too")
            flags_columns = FlagColumns(
                **{
                    key: cols_t.text(key, default=getattr(flags_columns, key))
                    for key in ("name", "enabled", "description", "updated_at", "tag")
                }
            )
            for key in ("name", "enabled", "description", "updated_at"):
                if not getattr(flags_columns, key):
                    raise cols_t.fail(key, "must not be empty")
            cols_t.done()
        migrations = db_t.path_("migrations")
        migrate_on_deploy = db_t.get("migrate_on_deploy", bool, migrations is not None)
        if migrate_on_deploy and migrations is None:
            raise db_t.fail("migrate_on_deploy", "needs database.migrations: the folder holding versions/")
        database = DatabaseConfig(
            url=url,
            migrations=migrations,
            flask=db_t.argv("flask"),
            flask_app=flask_app,
            key_tables=db_t.words("key_tables"),
            flags_table=flags_table,
            flags_columns=flags_columns,
            pg_bin=db_t.path_("pg_bin"),
            migrate_on_deploy=migrate_on_deploy,
        )
        db_t.done()

    backups = None
    if bk_t := top.table("backups"):
        backups = BackupsConfig(
            dir=bk_t.path_("dir", required=True),
            gpg_home=bk_t.path_("gpg_home"),
            recipients=bk_t.words("recipients"),
            passphrase=bk_t.text("passphrase"),
            rpo_minutes=bk_t.get("rpo_minutes", int),
            reserve_mb=bk_t.get("reserve_mb", int, 64),
            interval_minutes=bk_t.get("interval_minutes", int),
            keep_last=bk_t.get("keep_last", int),
            keep_daily_days=bk_t.get("keep_daily_days", int, 0),
            keep_copies_hours=bk_t.get("keep_copies_hours", int, 24),
            test_as_own_user=bk_t.get("test_as_own_user", bool, False),
        )
        for key in ("interval_minutes", "keep_last", "keep_copies_hours"):
            if getattr(backups, key) is not None and getattr(backups, key) < 1:
                raise bk_t.fail(key, "must be 1 or more")
        if backups.keep_daily_days < 0:
            raise bk_t.fail("keep_daily_days", "must be 0 or more")
        if backups.passphrase is not None and (problem := check_passphrase(backups.passphrase)):
            raise bk_t.fail("passphrase", problem)  # the value itself is a secret: never in the message
        if backups.rpo_minutes is not None and backups.rpo_minutes <= 0:
            raise bk_t.fail("rpo_minutes", "must be a number of minutes above 0")
        if backups.reserve_mb < 0:
            raise bk_t.fail("reserve_mb", "must be 0 or more")
        bk_t.done()

    release = None
    if rel_t := top.table("release"):
        release = ReleaseConfig(_argv_list(rel_t, "commands"), rel_t.get("timeout", float, 600.0))
        if release.timeout <= 0:
            raise rel_t.fail("timeout", "must be more than 0 seconds")
        rel_t.done()

    bluegreen = None
    if bg_t := top.table("bluegreen"):
        slots = bg_t.get("slots", dict, required=True)
        if len(slots) != 2 or not all(isinstance(v, str) and v.startswith("http") for v in slots.values()):
            raise bg_t.fail(
                "slots", 'expected two slots with their health URLs, e.g. {blue = "http://…", green = "http://…"}'
            )
        for url in slots.values():
            _http_url(bg_t, "slots", url)
        dirs = {str(k): Path(str(v)) for k, v in bg_t.get("slot_dirs", dict, {}).items()}
        bluegreen = BlueGreenConfig(
            slots={str(k): v for k, v in slots.items()},
            switch=bg_t.argv("switch"),
            link=bg_t.path_("link"),
            slot_dirs=dirs,
            keep_previous_minutes=bg_t.get("keep_previous_minutes", int, 60),
        )
        if not bluegreen.switch and not bluegreen.link:
            raise bg_t.fail("switch", "give switch (a command) or link (a symlink swapped between slot_dirs)")
        if bluegreen.link and set(dirs) != set(bluegreen.slots):
            raise bg_t.fail("slot_dirs", f"name a directory for each slot: {', '.join(bluegreen.slots)}")
        bg_t.done()

    config = TargetConfig(
        name=name,
        repo=repo,
        process=process,
        health=health,
        database=database,
        backups=backups,
        env_file=env_file,
        bluegreen=bluegreen,
        release=release,
        protected=top.get("protected", bool, False),
        auto_rollback=top.get("auto_rollback", bool, False),
        secrets=tuple(s for s in top.secrets if s),
        reads_env_file=top.env_file["read"],
        env_stale=_stale_words(top.env_file),
    )
    top.done()
    return config


def parse_targets(
    text: str, path: Path, env: dict[str, str] | None = None, fallback: EnvFallback | None = None
) -> dict[str, TargetConfig]:
    """Every target in the file, or the first problem found."""
    env = dict(os.environ if env is None else env)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetsFileError(path, f"not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"targets"})
    if extra:
        raise TargetsFileError(path, f"unknown top-level key {extra[0]!r}; targets go under [targets.NAME]")
    targets = data.get("targets", {})
    if not isinstance(targets, dict):
        raise TargetsFileError(path, "[targets] must hold one table per target, e.g. [targets.staging]")
    return {name: _target(name, raw, path, env, fallback) for name, raw in sorted(targets.items())}


def load_targets(
    path: Path, env: dict[str, str] | None = None, fallback: EnvFallback | None = None
) -> dict[str, TargetConfig]:
    if not path.exists():
        return {}
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TargetsFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TargetsFileError(
            path, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    return parse_targets(text, path, env, fallback)
