"""pg_dump, pg_restore and psql that exit 1 without a word (a wrapper script, logging sent elsewhere): each job
names the tool, how it ended, that it said nothing, and the exact command to run by hand; nothing is left behind."""

from __future__ import annotations

import shlex
import shutil

import pytest

from app.backups.catalog import Catalog
from app.jobs.engine import current_targets
from app.targets.dbadmin import Postgres
from app.targets.environment import inherited_env
from tests.backups.conftest import RECIPIENT
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import run
from tests.support.targets import write_targets_file

postgres_only = pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)


def assert_still_verified(target, name: str) -> None:
    """A tool that failed without a word said nothing of the backup: its verification on record stands."""
    backup = Catalog(target.backup_dir).get(name)
    assert backup.state == "verified", backup.verified


def silent_tools(folder, real: Postgres, body: str = "exit 1", *, reads: bool = False) -> None:
    """pg_dump, pg_restore and psql that answer --version as the real ones (so they are chosen), then fail mute.

    `reads`: pg_restore still reads an archive to /dev/null (a backup's check passes); only writing fails."""
    folder.mkdir()
    for name in ("pg_dump", "pg_restore", "psql"):
        tool, real_tool = folder / name, shlex.quote(real.tool(name))
        passes = '"$1" = --version' + (' -o "$1" = --file' if reads else "")
        tool.write_text(f'#!/bin/sh\nif [ {passes} ]; then exec {real_tool} "$@"; fi\n{body}\n')
        tool.chmod(0o755)


def with_pg_bin(target, folder) -> str:
    line = 'key_tables = ["user", "orders"]'
    toml = target.toml()
    assert line in toml
    return toml.replace(line, f'{line}\npg_bin = "{folder}"', 1)


@postgres_only
def test_a_mute_pg_dump_fails_the_backup_with_its_command_and_leaves_no_file(app, runner, data_target, tmp_path):
    real = Postgres(data_target.url, inherited_env())
    silent_tools(tmp_path / "bin", real)
    write_targets_file(app, with_pg_bin(data_target, tmp_path / "bin"))
    job, _ = run(app, "backup", data_target.name)
    assert job.state == "failed", job.result
    dump = str(tmp_path / "bin" / "pg_dump")
    assert (
        "pg_dump exited with status 1 and it printed nothing on stderr — run it by hand as Rewind's user" in job.result
    )
    assert f"to see why: `{dump} --format=custom --lock-wait-timeout=10000 --no-password --host " in job.result, (
        job.result
    )
    assert "status 1:" not in job.result
    assert [p.name for p in data_target.backup_dir.iterdir() if not p.name.startswith(".")] == []


@postgres_only
def test_a_mute_pg_restore_fails_the_check_as_the_tools_fault_not_the_backups(app, runner, data_target, tmp_path):
    name = backup_now(app, data_target)
    real = Postgres(data_target.url, inherited_env())
    silent_tools(tmp_path / "bin", real)
    write_targets_file(app, with_pg_bin(data_target, tmp_path / "bin"))
    job, _ = run(app, "verify_backup", data_target.name, backup=name)
    assert job.state == "failed", job.result
    restore = str(tmp_path / "bin" / "pg_restore")
    assert (
        "decrypts, but its reader failed: pg_restore exited with status 1 and it printed nothing on stderr"
        in job.result
    )
    assert f"`{restore} --file /dev/null`" in job.result, job.result
    assert "points at the tool, not at the backup" in job.result and "damaged" not in job.result, job.result
    assert_still_verified(data_target, name)


@postgres_only
def test_a_mute_pg_restore_fails_the_restore_with_its_command_and_live_untouched(app, runner, data_target, tmp_path):
    name = backup_now(app, data_target)
    real = Postgres(data_target.url, inherited_env())
    silent_tools(tmp_path / "bin", real, reads=True)
    write_targets_file(app, with_pg_bin(data_target, tmp_path / "bin"))
    before = data_target.snapshot()
    restore = str(tmp_path / "bin" / "pg_restore")
    job, _ = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", job.result
    assert "pg_restore exited with status 1 and it printed nothing on stderr" in job.result, job.result
    # the test session's login is a superuser: each object is filled as its owner
    assert f"`{restore} --use-set-session-authorization" in job.result, job.result
    assert "--exit-on-error --no-password --host" in job.result
    assert "the live database was not touched" in job.result
    assert data_target.snapshot() == before and copies(data_target) == []


@postgres_only
def test_a_restore_tool_killed_by_a_signal_is_named_so(app, runner, data_target, tmp_path):
    name = backup_now(app, data_target)
    real = Postgres(data_target.url, inherited_env())
    silent_tools(tmp_path / "bin", real, body="kill -KILL $$", reads=True)
    write_targets_file(app, with_pg_bin(data_target, tmp_path / "bin"))
    job, _ = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", job.result
    assert "pg_restore was killed by SIGKILL and it printed nothing on stderr" in job.result, job.result
    assert "status -9" not in job.result
    with app.app_context():
        assert current_targets().open(data_target.name).health().wait_healthy().ok


def mute_gpg(folder, when: str) -> str:
    """A `gpg` first on the target's PATH that passes through to the real one, but exits 1 silently on `when`."""
    folder.mkdir()
    real = shutil.which("gpg")
    tool = folder / "gpg"
    tool.write_text(f'#!/bin/sh\ncase " $* " in *" {when} "*) exit 1;; esac\nexec {real} "$@"\n')
    tool.chmod(0o755)
    return f"{folder}:/usr/bin:/bin"


def with_path(target, path: str) -> str:
    toml = target.toml()
    assert "pid_file =" in toml
    return toml.replace("pid_file =", f'env = {{ PATH = "{path}" }}\npid_file =', 1)


@pytest.mark.parametrize("data_target", ["sqlite"], indirect=True)
def test_a_mute_gpg_fails_backup_and_check_naming_gpg_not_the_file(app, runner, data_target, tmp_path):
    name = backup_now(app, data_target)
    write_targets_file(app, with_path(data_target, mute_gpg(tmp_path / "encrypt", "--encrypt")))
    job, _ = run(app, "backup", data_target.name)
    assert job.state == "failed", job.result
    assert "gpg exited with status 1 and it printed nothing on stderr" in job.result, job.result
    assert f"to see why: `gpg --batch --no-tty --quiet --homedir {data_target.home.home} " in job.result
    assert sorted(p.name for p in data_target.backup_dir.iterdir() if p.name.endswith(".gpg")) == [name]

    write_targets_file(app, with_path(data_target, mute_gpg(tmp_path / "decrypt", "--decrypt")))
    job, _ = run(app, "verify_backup", data_target.name, backup=name)
    assert job.state == "failed", job.result
    assert f"{name} does not decrypt: gpg exited with status 1 and it printed nothing on stderr" in job.result, (
        job.result
    )
    assert "points at gpg or its home" in job.result and "damaged" not in job.result, job.result
    assert f"< {data_target.backup_dir / name}" in job.result
    assert_still_verified(data_target, name)


@pytest.mark.parametrize("data_target", ["sqlite"], indirect=True)
def test_a_gpg_that_cannot_list_keys_mute_is_not_taken_for_a_wrong_recipient(app, runner, data_target, tmp_path):
    name = backup_now(app, data_target)
    write_targets_file(app, with_path(data_target, mute_gpg(tmp_path / "list", "--list-keys")))
    job, _ = run(app, "verify_backup", data_target.name, backup=name)
    assert job.state == "failed", job.result
    assert "gpg exited with status 1 and it printed nothing" in job.result, job.result
    assert f"--with-colons --list-keys {RECIPIENT}`" in job.result, job.result
    assert f"check the GnuPG home {data_target.home.home}" in job.result
    assert "is not encrypted to" not in job.result
    assert_still_verified(data_target, name)
