"""A secret key with a passphrase, unlocked by python-gnupg's argument or, in a pipeline, through a pipe descriptor:
never on argv, in the environment, or left open."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from app.targets.command import Stage, run_pipeline
from app.targets.gpg import GpgError, GpgHome, PassphraseError, secret_pipe
from tests.support.gpg import LOCKED_RECIPIENT, PASSPHRASE, forget_passphrase

# Lists the command lines and environments of the other processes of its own group (the pipeline's), then reads
# stdin to its end: gpg is still running while it looks, since its output does not fit the pipe between them.
WATCHER = """
import json, os, sys
group, seen = os.getpgrp(), []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
        if int(stat.rsplit(")", 1)[1].split()[2]) == group and int(pid) != os.getpid():
            seen.append({"argv": open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"),
                         "environ": open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")})
    except OSError:
        pass
size = len(sys.stdin.buffer.read())
print(json.dumps({"seen": seen, "size": size}))
"""


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def sealed(home: GpgHome, data: bytes) -> bytes:
    out = io.BytesIO()
    home.encrypt(data, out, [LOCKED_RECIPIENT])
    return out.getvalue()


def with_passphrase(home: GpgHome, passphrase: str | None) -> GpgHome:
    return GpgHome(home.home, env=home.env, passphrase=passphrase)


def test_python_gnupg_decrypts_with_the_passphrase_and_names_a_wrong_or_missing_one(locked_home):
    data = sealed(locked_home, b"the rows\n")
    forget_passphrase(locked_home)
    for passphrase, configured, words in ((None, False, "gives none"), ("wrong one", True, "does not unlock")):
        with pytest.raises(PassphraseError) as refused:
            with_passphrase(locked_home, passphrase).decrypt(data, io.BytesIO())
        assert refused.value.configured is configured and words in refused.value.message
        assert LOCKED_RECIPIENT in refused.value.message and "backups.passphrase" in refused.value.in_words()
    out = io.BytesIO()
    with_passphrase(locked_home, PASSPHRASE).decrypt(data, out)
    assert out.getvalue() == b"the rows\n"


def test_a_pipeline_s_gpg_reads_the_passphrase_from_a_pipe_never_from_argv_or_its_environment(locked_home, tmp_path):
    payload = random.Random(7).randbytes(1 << 20)  # incompressible and larger than a pipe: gpg waits on the reader
    source = tmp_path / "backup.gpg"
    source.write_bytes(sealed(locked_home, payload))
    forget_passphrase(locked_home)
    home = with_passphrase(locked_home, PASSPHRASE)
    before = open_fds()
    with source.open("rb") as stdin, (tmp_path / "seen.json").open("wb") as stdout, home.decrypt_stage() as gpg:
        assert PASSPHRASE not in " ".join(gpg.argv) and "--passphrase-fd" in gpg.argv
        assert gpg.pass_fds and gpg.argv[gpg.argv.index("--passphrase-fd") + 1] == str(gpg.pass_fds[0])
        watcher = Stage.of([sys.executable, "-c", WATCHER], "watcher")
        result = run_pipeline([gpg, watcher], stdin=stdin, stdout=stdout, timeout=60)
    assert result.ok, [s.failure() for s in result.stages if not s.ok]
    assert open_fds() == before, "the passphrase pipe is closed after the run"
    report = json.loads((tmp_path / "seen.json").read_text())
    assert report["size"] == len(payload)  # decrypted whole, unlocked by the pipe alone (nothing was cached)
    (seen,) = [p for p in report["seen"] if "--decrypt" in p["argv"]]
    assert "--passphrase-fd" in seen["argv"]
    assert PASSPHRASE not in seen["argv"] and PASSPHRASE not in seen["environ"]


def test_a_wrong_passphrase_fails_the_stage_and_leaves_no_descriptor_open(locked_home, tmp_path):
    source = tmp_path / "backup.gpg"
    source.write_bytes(sealed(locked_home, b"rows"))
    forget_passphrase(locked_home)
    home = with_passphrase(locked_home, "wrong one")
    before = open_fds()
    with source.open("rb") as stdin, home.decrypt_stage() as gpg:
        result = run_pipeline([gpg], stdin=stdin, timeout=60)
    assert not result.ok and result.failed.name == "gpg"
    assert open_fds() == before
    with pytest.raises(PassphraseError) as caught:
        home.check_unlocks([LOCKED_RECIPIENT])
    assert caught.value.configured
    with_passphrase(locked_home, PASSPHRASE).check_unlocks([LOCKED_RECIPIENT])


def test_a_wrong_passphrase_is_caught_even_while_the_agent_keeps_the_right_one(locked_home, tmp_path):
    """gpg-agent keeps a passphrase that unlocked the key (10 minutes by default) and then takes any other: the
    check must not report a wrong one, set since, as unlocking. Decryptions meanwhile still use the cache."""
    source = tmp_path / "backup.gpg"
    source.write_bytes(sealed(locked_home, b"rows"))
    with_passphrase(locked_home, PASSPHRASE).check_unlocks([LOCKED_RECIPIENT])  # the agent now keeps it
    wrong = with_passphrase(locked_home, "changed since")
    with pytest.raises(PassphraseError):
        wrong.check_unlocks([LOCKED_RECIPIENT])
    with_passphrase(locked_home, PASSPHRASE).check_unlocks([LOCKED_RECIPIENT])
    out = io.BytesIO()
    with_passphrase(locked_home, PASSPHRASE).decrypt(source.read_bytes(), out)
    assert out.getvalue() == b"rows"


def test_the_check_forgets_only_the_recipients_passphrases_in_a_shared_home(tmp_path):
    root = short_root()
    home = GpgHome.create(root / "s")
    try:
        home.generate_key("Backups", "backups@example.invalid", passphrase="for backups")
        home.generate_key("Signing", "signing@example.invalid", passphrase="for signing")
        to_signing = io.BytesIO()
        home.encrypt(b"signed off\n", to_signing, ["signing@example.invalid"])
        with_passphrase(home, "for signing").decrypt(to_signing.getvalue(), io.BytesIO())  # the agent keeps it
        with_passphrase(home, "for backups").check_unlocks(["backups@example.invalid"])
        with pytest.raises(PassphraseError):
            with_passphrase(home, "wrong").check_unlocks(["backups@example.invalid"])
        kept = io.BytesIO()
        with_passphrase(home, "wrong").decrypt(to_signing.getvalue(), kept)  # still unlocked from the agent's cache
        assert kept.getvalue() == b"signed off\n"
    finally:
        home.stop_agent()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("reads", [True, False])
def test_a_secret_longer_than_a_pipe_s_buffer_is_fed_whole_or_given_up_when_unread(tmp_path, reads):
    secret = random.Random(3).randbytes(200_000)
    before = open_fds()
    out = tmp_path / "out"
    with secret_pipe(secret) as fd, out.open("wb") as stdout:
        code = f"import os, sys; sys.stdout.buffer.write(os.fdopen({fd}, 'rb').read())" if reads else "pass"
        result = run_pipeline([Stage.of([sys.executable, "-c", code], "reader", pass_fds=(fd,))], stdout=stdout)
    assert result.ok
    assert out.read_bytes() == (secret if reads else b"")
    assert open_fds() == before  # both ends closed; the feeding thread stopped by the closed read end


def test_a_passphrase_beyond_ascii_unlocks_the_same_in_python_gnupg_and_in_a_pipeline(tmp_path):
    # python-gnupg writes text as Latin-1, a pipeline's gpg gets UTF-8: were they to differ, a good backup would fail
    # its verification as damaged while the key check said the key unlocks.
    passphrase = "pässwörd € 7"
    root = short_root()
    home = GpgHome.create(root / "u")
    try:
        home.generate_key("Unicode backups", "utf8@example.invalid", passphrase=passphrase)
        sealed_file = tmp_path / "backup.gpg"
        out = io.BytesIO()
        home.encrypt(b"the rows\n", out, ["utf8@example.invalid"])
        sealed_file.write_bytes(out.getvalue())
        forget_passphrase(home)
        unlocked = with_passphrase(home, passphrase)
        with (
            sealed_file.open("rb") as stdin,
            (tmp_path / "plain").open("wb") as stdout,
            unlocked.decrypt_stage() as gpg,
        ):
            result = run_pipeline([gpg], stdin=stdin, stdout=stdout, timeout=60)
        assert result.ok, result.failed and result.failed.stderr_tail
        assert (tmp_path / "plain").read_bytes() == b"the rows\n"
        forget_passphrase(home)
        plain = io.BytesIO()
        unlocked.decrypt(sealed_file.read_bytes(), plain)
        assert plain.getvalue() == b"the rows\n"
        forget_passphrase(home)
        unlocked.check_unlocks(["utf8@example.invalid"])
        forget_passphrase(home)
        with pytest.raises(PassphraseError) as caught:
            with_passphrase(home, "passwort € 7").check_unlocks(["utf8@example.invalid"])
        assert caught.value.configured
    finally:
        home.stop_agent()
        shutil.rmtree(root, ignore_errors=True)


def short_root() -> Path:
    """A short folder for a new home: gpg-agent's socket paths must stay short."""
    return Path(tempfile.mkdtemp(prefix="rwu-", dir="/tmp"))


def test_an_agent_that_will_not_forget_in_time_fails_the_check_as_a_gpg_error(locked_home, tmp_path, monkeypatch):
    """check_unlocks says GpgError (or PassphraseError) and nothing else: its callers catch those alone."""
    with_passphrase(locked_home, PASSPHRASE).check_unlocks([LOCKED_RECIPIENT])  # the agent runs
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gpg-connect-agent").write_text("#!/bin/sh\nexec sleep 30\n")
    (fake / "gpg-connect-agent").chmod(0o755)
    monkeypatch.setattr("app.targets.gpg.STOP_WAIT_S", 0.5)
    env = {**locked_home.env, "PATH": f"{fake}:{locked_home.env['PATH']}"}
    slow = GpgHome(locked_home.home, env=env, passphrase=PASSPHRASE)
    with pytest.raises(GpgError, match="could not be made to forget") as caught:
        slow.check_unlocks([LOCKED_RECIPIENT])
    assert not isinstance(caught.value, PassphraseError)
