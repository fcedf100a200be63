"""Backups encrypted to a key with a passphrase (backups.passphrase): backup, verify, restore and undo; a wrong
or missing passphrase refused without blaming the backup; the passphrase in no log, result, audit row or argv."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.backups.catalog import manifest_path
from app.extensions import db
from app.targets.command import run_command
from app.targets.config import TargetsFileError, parse_targets
from tests.backups.test_runbooks import app_pid, backup_now, copies
from tests.conftest import wait_for
from tests.deployments.test_runbooks import health, log_text, run
from tests.support.gpg import LOCKED_RECIPIENT, PASSPHRASE, forget_passphrase
from tests.support.targets import write_targets_file


def _leaks(app, jobs) -> list[str]:
    """Where the passphrase shows, among the jobs' logs and results and every audit row."""
    found = []
    for job, view in jobs:
        if PASSPHRASE in log_text(view):
            found.append(f"log of job {job.id}")
        if PASSPHRASE in (job.result or "") or PASSPHRASE in (job.verification_detail or ""):
            found.append(f"result of job {job.id}")
    with app.app_context():
        found += [f"audit {a.action}" for a in db.session.scalars(select(AuditEvent)) if PASSPHRASE in a.details]
    return found


def test_a_key_with_a_passphrase_backs_up_verifies_restores_and_undoes(app, runner, locked_target):
    target = locked_target
    forget_passphrase(target.home)  # each decryption below must unlock the key itself, not find it cached
    before = target.snapshot()
    jobs = []
    name = backup_now(app, target)  # made and quick-verified (decrypted to its end)
    tested = run(app, "verify_backup", target.name, backup=name, level="restore-test")
    jobs.append(tested)
    assert tested[0].state == "succeeded", log_text(tested[1])
    assert "user 20, orders 20" in tested[0].verification_detail
    target.execute('DELETE FROM "user" WHERE id <= 5')
    changed = target.snapshot()

    restored = run(app, "restore_backup", target.name, backup=name)
    jobs.append(restored)
    assert restored[0].state == "succeeded", (restored[0].result, log_text(restored[1]))
    assert target.snapshot() == before
    (pre,) = copies(target)
    undone = run(app, "undo_restore", target.name, pre_restore=pre)
    jobs.append(undone)
    assert undone[0].state == "succeeded", log_text(undone[1])
    assert target.snapshot() == changed
    assert _leaks(app, jobs) == []


def _refused_without_blame(app, target, name: str, words: str) -> None:
    """verify and restore both fail saying `words`; the backup's record stays verified; live is untouched."""
    forget_passphrase(target.home)
    path = manifest_path(target.backup_dir / name)
    record = json.loads(path.read_text())["verified"]
    before = target.snapshot()
    pid = app_pid(app, target)
    for level in ("quick", "restore-test"):
        job, view = run(app, "verify_backup", target.name, backup=name, level=level)
        assert job.state == "failed", (level, log_text(view))
        assert words in job.result, (level, job.result)
        assert json.loads(path.read_text())["verified"] == record, "the backup is fine: nothing recorded against it"
    job, view = run(app, "restore_backup", target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert words in job.result, job.result
    assert "nothing was decrypted" in job.result
    assert view.steps[0].state == "failed" and all(s.state == "not_run" for s in view.steps[1:])
    assert target.snapshot() == before
    assert copies(target) == []
    assert app_pid(app, target) == pid
    assert health(target.code)[0] == 200
    assert json.loads(path.read_text())["verified"] == record


def test_a_wrong_passphrase_is_refused_naming_the_key_and_the_setting(app, runner, locked_target):
    name = backup_now(app, locked_target)
    wrong = "not the passphrase at all"
    locked_target.backups_extra = f"passphrase = {json.dumps(wrong)}\n"
    write_targets_file(app, locked_target.toml())
    _refused_without_blame(
        app, locked_target, name, "the secret key of locked@example.invalid in " + str(locked_target.home.home)
    )
    job, view = run(app, "verify_backup", locked_target.name, backup=name)
    assert "does not unlock with backups.passphrase" in job.result
    assert "set backups.passphrase in the targets file" in job.result
    assert wrong not in log_text(view) and wrong not in job.result  # a literal passphrase is masked too


def test_a_key_with_a_passphrase_and_none_configured_says_to_set_it(app, runner, locked_target):
    name = backup_now(app, locked_target)
    locked_target.backups_extra = ""
    write_targets_file(app, locked_target.toml())
    _refused_without_blame(app, locked_target, name, "has a passphrase, and the targets file gives none")
    job, _view = run(app, "verify_backup", locked_target.name, backup=name)
    assert "set backups.passphrase" in job.result


def test_a_passphrase_for_a_key_without_one_does_no_harm(app, runner, data_target):
    data_target.backups_extra = 'passphrase = "unneeded passphrase"\n'
    write_targets_file(app, data_target.toml())
    before = data_target.snapshot()
    name = backup_now(app, data_target)
    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded", log_text(view)
    data_target.execute("UPDATE orders SET total = 0")
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", log_text(view)
    assert data_target.snapshot() == before


@pytest.mark.parametrize("locked_target", ["sqlite"], indirect=True)
def test_targets_check_says_whether_the_passphrase_unlocks_the_key(app, locked_target):
    forget_passphrase(locked_target.home)
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    said = f"staging: backups.passphrase: ok — the secret key of {LOCKED_RECIPIENT} unlocks with backups.passphrase"
    assert said in result.output, result.output
    assert PASSPHRASE not in result.output
    locked_target.backups_extra = 'passphrase = "a wrong one"\n'
    write_targets_file(app, locked_target.toml())
    forget_passphrase(locked_target.home)
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    assert result.exit_code == 1
    assert "staging: backups.passphrase: WRONG — the secret key of" in result.output, result.output
    assert "does not unlock with backups.passphrase" in result.output


@pytest.mark.parametrize("value", ["two\nlines", "carriage\rreturn", ""])
def test_a_passphrase_gpg_cannot_take_is_refused_in_the_targets_file(tmp_path, value):
    text = '[targets.staging.repo]\npath = "r"\n\n[targets.staging.backups]\ndir = "b"\n'
    text += f"passphrase = {json.dumps(value)}\n"
    with pytest.raises(TargetsFileError) as refused:
        parse_targets(text, tmp_path / "targets.toml")
    assert "backups.passphrase" in str(refused.value)
    assert ("one line" if value else "is empty") in str(refused.value)
    if value:
        assert value not in str(refused.value)


@contextmanager
def _expired(home) -> Iterator[None]:
    """The home's key (and its encryption subkey) expired for the block, as a key made with an expiry date is one
    day: nothing can be encrypted to it any more, while what was encrypted to it still decrypts. The home is the
    session's: the key never expires again after the block."""

    listing = run_command(
        ["gpg", "--homedir", str(home.home), "--list-keys", "--with-colons"], timeout=60, env=home.env, capture=True
    ).stdout.splitlines()
    primary = next(line.split(":")[9] for line in listing if line.startswith("fpr:"))
    # '*' would not select a subkey once expired: it is named by its fingerprint, the line after its "sub" line
    subkey = next(listing[i + 1].split(":")[9] for i, line in enumerate(listing) if line.startswith("sub:"))

    def set_expiry(when: str) -> None:
        argv = ["gpg", "--homedir", str(home.home), "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0"]
        result = run_command(
            [*argv, "--quick-set-expire", primary, when, subkey],
            timeout=60,
            env=home.env,
            stdin=(PASSPHRASE + "\n").encode(),
            capture=True,
        )
        assert result.ok, result.stderr
        result = run_command(
            [*argv, "--quick-set-expire", primary, when],
            timeout=60,
            env=home.env,
            stdin=(PASSPHRASE + "\n").encode(),
            capture=True,
        )
        assert result.ok, result.stderr

    set_expiry("seconds=1")
    try:
        wait_for(lambda: not home.recipients(), timeout=30)  # expired: no longer a key to encrypt to
        yield
    finally:
        set_expiry("0")
        assert home.recipients() == [LOCKED_RECIPIENT]


def test_a_wrong_passphrase_for_an_expired_key_is_nothing_against_a_good_backup(app, runner, locked_target):
    # The check that tells a locked key from damaged data encrypts a few bytes to the key: it cannot once the key
    # has expired, and then the backup must not be blamed for what may be the passphrase.
    target = locked_target
    name = backup_now(app, target)
    path = manifest_path(target.backup_dir / name)
    record = json.loads(path.read_text())["verified"]
    with _expired(target.home):
        target.backups_extra = 'passphrase = "not the passphrase at all"\n'
        write_targets_file(app, target.toml())
        for level in ("quick", "restore-test"):
            forget_passphrase(target.home)
            job, view = run(app, "verify_backup", target.name, backup=name, level=level)
            assert job.state == "failed", log_text(view)
            assert "whether the secret key unlocks could not be checked" in job.result, job.result
            assert json.loads(path.read_text())["verified"] == record, "nothing is recorded against the backup"
