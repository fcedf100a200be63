"""The demo sandbox, built for real: git repositories, Alembic migrations, GnuPG keys, running apps.

One demo is built for the module. The drill test leaves staging stopped (a
build without reset then starts it again) and the last test stops both; the
others leave it serving. Every demo app is stopped at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from app.backups.catalog import Catalog
from app.demo import DemoError, build_demo, load_demo, postgres, stop_demo
from app.demo.cli import demo as demo_command
from app.demo.history import BAD_BRANCH, HEAD_REVISION, MIGRATION_BRANCH, MIGRATION_BRANCH_REVISION, SAMPLEAPP
from app.demo.targetsfile import HEADER
from app.targets.config import load_targets
from app.targets.gpg import GpgHome
from app.targets.health import HealthCheck, Probe
from tests.support.apps import build_app

NAMES = ("staging", "production")


def git(repo: Path, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    argv = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@demo.invalid", *args]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=30)
    assert done.returncode in ok, done.stderr
    return done


def query(t, statement: str) -> list[tuple]:
    """Rows from the target's database, SQLite file or PostgreSQL, as its app reads it."""
    url = t.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def get_json(url: str) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def processes_under(root: Path) -> list[str]:
    """Live processes whose working directory or command line lies under root."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(str(root)) or str(root) in cmdline):
            found.append(f"{entry}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def built():
    # Under /tmp, open to other users: as root the demo's PostgreSQL runs as `postgres`, which must reach it.
    base = Path(tempfile.mkdtemp(prefix="rw-demo-"))
    base.chmod(0o711)
    root, targets_file = base / "instance" / "demo", base / "instance" / "rewind.toml"
    lines: list[str] = []
    try:
        demo = build_demo(root, targets_file, on_line=lines.append)
        yield {"root": root, "targets_file": targets_file, "demo": demo, "lines": lines}
    finally:
        stop_demo(root)
        shutil.rmtree(base, ignore_errors=True)


def test_both_apps_answer_healthy_on_their_own_ports(built):
    demo = built["demo"]
    assert list(demo) == list(NAMES)
    assert demo["staging"].port != demo["production"].port
    for t in demo.values():
        assert t.process().status().running
        verdict = t.health().wait_healthy()  # a worker's first answer may be slower than one probe
        assert verdict.ok, verdict.reason
        status, stats = get_json(f"{t.base_url}/stats")
        assert status == 200
        assert stats["users"] == 15 and stats["segments"] > 0 and stats["feature_flags"] == 5
        assert stats["plans"] == {"enterprise": 2, "free": 13}  # users.plan holds a value in every row
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(t.base_url + "/", timeout=5) as page:
            assert f"Environment: {t.name}" in page.read().decode()
    assert any("healthy" in line for line in built["lines"])


def test_each_repository_has_a_history_and_an_unmerged_bad_branch(built):
    for t in built["demo"].values():
        repo = t.app_dir
        assert int(git(repo, "rev-list", "--count", "main").stdout) >= 6
        subjects = git(repo, "log", "--format=%s", "main").stdout.splitlines()
        assert {"Add users and sessions", "Add segments API", "Add feature flags table"} <= set(subjects)
        assert set(git(repo, "log", "--format=%an <%ae>", "main").stdout.splitlines()) == {
            "Demo Developer <dev@demo.invalid>"
        }
        assert git(repo, "symbolic-ref", "--short", "HEAD").stdout.strip() == "main"
        assert git(repo, "rev-list", "--count", f"main..{BAD_BRANCH}").stdout.strip() == "1"
        assert git(repo, "merge-base", "--is-ancestor", BAD_BRANCH, "main", ok=(1,)).returncode == 1
        # The migration branch: one commit on main's head adding a revision file and the code that uses it.
        assert git(repo, "rev-list", "--count", f"main..{MIGRATION_BRANCH}").stdout.strip() == "1"
        assert git(repo, "merge-base", MIGRATION_BRANCH, "main").stdout == git(repo, "rev-parse", "main").stdout
        added = git(repo, "diff", "--name-status", "main", MIGRATION_BRANCH).stdout.splitlines()
        assert f"A\tmigrations/versions/{MIGRATION_BRANCH_REVISION}_add_last_seen_to_users.py" in added
        assert "M\tdemoapp/views.py" in added
        assert git(repo, "status", "--porcelain").stdout == ""  # .env and __pycache__ are ignored
        assert git(repo, "check-ignore", ".env").returncode == 0
        assert "migrations/env.py" in git(repo, "ls-files").stdout.splitlines()
        env = t.env_file.read_text()
        assert f"PORT={t.port}\n" in env and f"DATABASE_URL={t.database_url}\n" in env and "FEATURE_X=on" in env


def test_main_holds_the_files_of_the_sampleapp_folder(built):
    t = built["demo"]["production"]
    listed = git(t.app_dir, "ls-files").stdout.splitlines()
    on_disk = [p.relative_to(SAMPLEAPP) for p in SAMPLEAPP.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sorted(listed) == sorted(str(p) for p in on_disk)
    unstamped = re.compile(r"^Create Date: .*$", re.M)
    for path in listed:
        committed, expected = git(t.app_dir, "show", f"main:{path}").stdout, (SAMPLEAPP / path).read_text()
        if path.startswith("migrations/versions/"):
            assert unstamped.search(committed).group() != unstamped.search(expected).group()  # the commit's date
            committed, expected = unstamped.sub("", committed), unstamped.sub("", expected)
        assert committed == expected, path


def test_databases_are_built_by_the_apps_own_migrations_in_the_demos_postgresql(built):
    ports = {t.pg_port for t in built["demo"].values()}
    assert len(ports) == 1 and 0 not in ports  # one cluster for both targets (the test machine has the server)
    assert any(line.startswith("PostgreSQL ") and "loopback only" in line for line in built["lines"])
    for t in built["demo"].values():
        assert t.database_url == f"postgresql://rewind_demo@127.0.0.1:{t.pg_port}/{t.name}"
        assert not t.db_path.exists()
        tables = {row[0] for row in query(t, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"users", "sessions", "segments", "feature_flags", "alembic_version"} <= tables
        assert query(t, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
        assert query(t, "SELECT count(*) FROM users") == [(15,)]  # 12, and 3 sign-ups between the backups
        assert query(t, "SELECT count(*) FROM sessions")[0][0] > 0
        assert query(t, "SELECT count(*) FROM segments")[0][0] > 0
        flags = dict(query(t, "SELECT name, enabled FROM feature_flags"))
        assert flags["new_checkout"] is True and flags["beta_search"] is False
    # `flask db …` works in the app's environment, as the targets file tells Rewind to run it.
    t = built["demo"]["staging"]
    env = {"PATH": os.environ["PATH"], **t.process_env()}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"],
        cwd=t.app_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert f"{HEAD_REVISION} (head)" in done.stdout


def test_each_target_starts_with_two_verified_backups_around_new_signups(built):
    for t in built["demo"].values():
        backups = sorted(Catalog(t.backups_dir).backups(), key=lambda b: b.time)
        assert len(backups) == 2
        older, newest = backups
        for backup in backups:
            assert backup.manifest["made_by"] == "rewind" and backup.manifest["engine"] == "postgresql"
            assert backup.manifest["recipients"] == [t.recipient]
            assert backup.state == "verified" and backup.verified["ok"] and backup.verified["how"] == "quick"
            assert backup.path.read_bytes()[:1] != b"P"  # OpenPGP, not a plain custom-format dump ("PGDMP")
        assert older.manifest["counts"]["users"] == 12 and newest.manifest["counts"]["users"] == 15
        assert older.manifest["counts"]["sessions"] < newest.manifest["counts"]["sessions"]
        assert older.time < newest.time
        assert any(line.startswith(f"{t.name}: backups {older.id} and") for line in built["lines"])


def test_without_the_server_programs_the_demo_falls_back_to_sqlite_with_a_notice(tmp_path):
    lines: list[str] = []
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    assert postgres.create_cluster(tmp_path / "demo", lines.append, bin_dir=empty_bin) == 0
    assert len(lines) == 1
    assert lines[0].startswith("note: the demo runs on SQLite files, not PostgreSQL:")
    assert not (tmp_path / "demo" / "postgres").exists()  # nothing half-made left behind


def test_a_demo_folder_the_server_user_cannot_reach_falls_back_to_sqlite_saying_what_to_change(tmp_path):
    """As root the server runs as the postgres OS user, which cannot enter a folder closed to others (a home
    folder such as /root is): the notice names that folder and what would let the demo use PostgreSQL."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    lines: list[str] = []
    port = postgres.create_cluster(closed / "demo", lines.append)
    if os.geteuid() != 0:  # not root: the server runs as this user, who may enter the folder
        assert port and len(lines) == 1 and "PostgreSQL" in lines[0], lines
        postgres.stop(closed / "demo", lines.append)
        return
    assert port == 0
    assert lines == [
        f"note: the demo runs on SQLite files, not PostgreSQL: the postgres OS user cannot reach "
        f"{closed / 'demo' / 'postgres'}: {closed} is closed to other users "
        f"(chmod o+x {closed}, or put the instance folder elsewhere for PostgreSQL)"
    ]
    assert not (closed / "demo" / "postgres").exists()


def test_each_gnupg_home_holds_a_key_without_passphrase(built):
    for t in built["demo"].values():
        assert t.gpg_home.stat().st_mode & 0o777 == 0o700
        argv = ["gpg", "--batch", "--homedir", str(t.gpg_home), "--with-colons", "--list-secret-keys", t.recipient]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        subprocess.run(["gpgconf", "--homedir", str(t.gpg_home), "--kill", "all"], capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
        assert t.recipient in done.stdout
        assert any(line.startswith("ssb:") for line in done.stdout.splitlines())  # an encryption subkey
        assert t.backups_dir.is_dir()


def test_the_targets_file_declares_both_targets(built):
    path = built["targets_file"]
    assert path.read_text().splitlines()[0].startswith(HEADER)
    configs = load_targets(path, env={})
    assert sorted(configs) == sorted(NAMES)
    assert configs["production"].protected and not configs["staging"].protected
    for name, t in built["demo"].items():
        c = configs[name]
        assert c.auto_rollback
        assert c.repo.path == t.app_dir and c.repo.branch == "main"
        assert c.process.managed and list(c.process.command) == t.command()
        assert c.process.cwd == t.app_dir and c.process.env == t.process_env()
        assert c.process.pid_file == t.pid_file and c.process.log_file == t.log_file
        assert c.health.url == t.health_url and c.health.json == {"status": "healthy"} and c.health.timeout == 15
        assert c.database.url == t.database_url and c.database.migrations == t.migrations_dir
        assert c.database.flask_app == "wsgi" and c.database.flags_table == "feature_flags"
        assert c.database.key_tables == ("users", "sessions", "segments")
        assert c.database.migrate_on_deploy  # a deploy of the migration branch upgrades the schema
        assert c.backups.dir == t.backups_dir and c.backups.gpg_home == t.gpg_home
        assert c.backups.recipients == (t.recipient,)
        assert c.env_file == t.env_file
        assert c.process.reload == ("SIGHUP" if name == "production" else None)
    assert "gunicorn" in configs["production"].process.command and "flask" in configs["staging"].process.command


def test_merging_the_bad_branch_breaks_health(built):
    t = built["demo"]["staging"]
    good = git(t.app_dir, "rev-parse", "main").stdout.strip()
    process = t.process()
    try:
        git(t.app_dir, "merge", "--ff-only", BAD_BRANCH)
        process.restart()
        broken = HealthCheck(t.health_url, expect_status=500, expect_json={"status": "unhealthy"}, timeout_s=20)
        assert broken.wait_healthy().ok
        status, body = get_json(t.health_url)
        assert status == 500 and "signed_up_at" in body["error"]
        assert not t.health(timeout_s=0).probe().ok
    finally:
        git(t.app_dir, "reset", "--hard", good)
        process.stop()
    assert not process.status().running


def test_production_runs_under_gunicorn_and_a_restart_reloads_it_in_place(built):
    t = built["demo"]["production"]
    good = git(t.app_dir, "rev-parse", "main").stdout.strip()
    process = t.process()
    master = process.status().pid
    try:
        git(t.app_dir, "merge", "--ff-only", BAD_BRANCH)
        process.restart()
        assert process.status().pid == master, "a reload keeps gunicorn's master"
        # The old workers are gone: the first answer is the bad code's. The new workers' first requests may be
        # slower than one probe (as verification allows, until its deadline), never answered by the old code.
        seen: list[Probe] = []
        broken = HealthCheck(t.health_url, expect_status=500, expect_json={"status": "unhealthy"}, timeout_s=60)
        verdict = broken.wait_healthy(on_probe=seen.append)
        assert verdict.ok, verdict.reason
        assert all(p.timed_out for p in seen[:-1]), [str(p) for p in seen]
        assert "signed_up_at" in verdict.probe.body
    finally:
        git(t.app_dir, "reset", "--hard", good)
        process.restart()
    assert process.status().pid == master
    verdict = t.health().wait_healthy()
    assert verdict.ok, verdict.reason


def test_building_again_starts_what_is_stopped_and_rewrites_nothing(built):
    root, targets_file, before = built["root"], built["targets_file"], built["demo"]
    text = targets_file.read_text()
    heads = {name: git(t.app_dir, "rev-parse", "main").stdout.strip() for name, t in before.items()}
    env_files = {name: t.env_file.read_text() for name, t in before.items()}
    before["staging"].process().stop()
    lines: list[str] = []
    again = build_demo(root, targets_file, on_line=lines.append)
    assert {n: t.port for n, t in again.items()} == {n: t.port for n, t in before.items()}
    assert targets_file.read_text() == text
    assert {name: git(t.app_dir, "rev-parse", "main").stdout.strip() for name, t in again.items()} == heads
    assert {name: t.env_file.read_text() for name, t in again.items()} == env_files
    assert any(line.startswith("production: already running") for line in lines), lines
    assert any(line.startswith("staging: started") for line in lines), lines
    for t in again.values():
        assert t.health().wait_healthy().ok
    assert load_demo(root) == again


def test_the_demo_never_replaces_a_targets_file_it_did_not_write(tmp_path):
    targets_file = tmp_path / "rewind.toml"
    mine = '[targets.app.repo]\npath = "/srv/app"\n'
    targets_file.write_text(mine)
    with pytest.raises(DemoError, match="was not written by `flask rewind demo`"):
        build_demo(tmp_path / "demo", targets_file)
    assert targets_file.read_text() == mine
    assert not (tmp_path / "demo").exists()


def test_a_root_too_long_for_gpg_agent_is_refused_before_anything_is_built(tmp_path):
    root, targets_file = tmp_path / ("d" * 100) / "demo", tmp_path / "rewind.toml"
    home = GpgHome(root / "staging" / "gnupg")
    if home.socket_dir() != home.home:  # /run/user/<uid> exists: the agent's sockets go there, any root works
        home.check_socket_path()
        return
    with pytest.raises(DemoError, match=r"cannot be built in .*too long a path"):
        build_demo(root, targets_file)
    assert not root.exists() and not targets_file.exists()


def test_the_cli_command(short_tmp):
    instance = short_tmp / "instance"
    instance.mkdir()
    (instance / "rewind.toml").write_text('[targets.app.repo]\npath = "/srv/app"\n')
    app = build_app(instance)
    runner = app.test_cli_runner()

    refused = runner.invoke(demo_command, [])
    assert refused.exit_code == 1
    assert "was not written by `flask rewind demo`" in refused.output
    skipped = runner.invoke(demo_command, ["--skip-if-configured"])
    assert skipped.exit_code == 0 and "your own targets file" in skipped.output

    (instance / "rewind.toml").unlink()
    try:
        built = runner.invoke(demo_command, ["--no-start", "--sqlite"])
        assert built.exit_code == 0, built.output
        assert sorted(load_targets(instance / "rewind.toml", env={})) == sorted(NAMES)
        demo = load_demo(instance / "demo")
        assert demo is not None and not any(t.process().status().running for t in demo.values())
        for t in demo.values():  # on SQLite: the files, and backups of them made the same way
            assert t.pg_port == 0 and t.db_path.is_file()
            assert query(t, "SELECT count(*) FROM users") == [(15,)]
            backups = Catalog(t.backups_dir).backups()
            assert len(backups) == 2 and all(b.manifest["engine"] == "sqlite" for b in backups)
        assert not (instance / "demo" / "postgres").exists()
        assert f"Databases: {demo['staging'].database_url}" in built.output
        stopped = runner.invoke(demo_command, ["--stop"])
        assert stopped.exit_code == 0 and "no demo app was running" in stopped.output
    finally:
        stop_demo(instance / "demo")


def gone(pid: int) -> bool:
    """Dead, or a zombie nobody reaps (PID 1 in some containers never does)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_reset_rebuilds_from_scratch(built):
    root, targets_file, before = built["root"], built["targets_file"], built["demo"]
    pids = [t.process().status().pid for t in before.values()]
    staging = before["staging"]
    query(staging, "DELETE FROM sessions")
    query(staging, "DELETE FROM users")
    (staging.app_dir / "scratch.txt").write_text("left over")

    after = build_demo(root, targets_file, reset=True, on_line=lambda line: None)
    assert all(pid is not None and gone(pid) for pid in pids)
    assert not (after["staging"].app_dir / "scratch.txt").exists()
    assert query(after["staging"], "SELECT count(*) FROM users") == [(15,)]
    assert after["staging"].pg_port and len(Catalog(after["staging"].backups_dir).backups()) == 2
    configs = load_targets(targets_file, env={})
    for name, t in after.items():
        assert t.health(timeout_s=0).probe().ok
        assert configs[name].health.url == t.health_url
    built["demo"] = after


def test_stop_demo_leaves_nothing_running(built):
    root = built["root"]
    assert sorted(stop_demo(root)) == sorted(NAMES)
    for t in built["demo"].values():
        assert not t.pid_file.exists()
        assert not t.health(timeout_s=0).probe().ok
    assert not postgres.cluster(root, 0).running()
    assert processes_under(root) == []  # the PostgreSQL server included
    assert stop_demo(root) == []
