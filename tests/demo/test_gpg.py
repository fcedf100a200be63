"""The GnuPG home adapter on a real GnuPG home: keys, recipients, and a streamed round trip through pipes."""

from __future__ import annotations

import hashlib
import io
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import gnupg
import pytest

from app.targets.gpg import LONGEST_SOCKET, SOCKET_PATH_MAX, GpgError, GpgHome
from tests.conftest import wait_for

EMAIL = "backups@demo.invalid"


def agents(home: Path) -> dict[int, str]:
    """The live gpg-agents of home: pid to command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and "gpg-agent" in cmdline and str(home) in cmdline:
                found[int(entry)] = cmdline
    return found


def agent_processes(home: Path) -> list[str]:
    return list(agents(home).values())


@pytest.fixture
def short_dir():
    # gpg-agent's sockets live in the GnuPG home, and a socket path is short: keep the home under /tmp.
    folder = Path(tempfile.mkdtemp(prefix="rw-gpg-", dir="/tmp"))
    homes: list[GpgHome] = []
    yield folder, homes
    for home in homes:
        home.stop_agent()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def home(short_dir):
    folder, homes = short_dir
    made = GpgHome.create(folder / "gnupg")
    homes.append(made)
    made.generate_key("Rewind backups", EMAIL)
    return made


def test_create_makes_a_private_home_and_a_key_can_be_generated(short_dir):
    folder, homes = short_dir
    made = GpgHome.create(folder / "a" / "gnupg")
    homes.append(made)
    assert made.home.stat().st_mode & 0o777 == 0o700
    assert made.keys() == [] and made.recipients() == []
    key = made.generate_key("Rewind backups", EMAIL)
    assert key.secret and key.can_encrypt and key.expires is None
    assert key.emails == (EMAIL,) and len(key.fingerprint) == 40
    assert [k.fingerprint for k in made.keys(secret=True)] == [key.fingerprint]
    assert made.recipients() == [EMAIL]


def test_a_stream_round_trips_through_pipes_without_plaintext_on_disk(home, short_dir):
    folder, _ = short_dir
    chunk = hashlib.sha256(b"rewind").digest() * 2048  # 64 KiB
    chunks = 40  # 2.5 MiB, more than any pipe buffer holds
    expected = hashlib.sha256(chunk * chunks).hexdigest()

    read_end, write_end = os.pipe()

    def produce():
        with os.fdopen(write_end, "wb") as out:
            for _ in range(chunks):
                out.write(chunk)

    producer = threading.Thread(target=produce)
    producer.start()
    encrypted = folder / "backup.sql.gpg"
    with os.fdopen(read_end, "rb") as source, encrypted.open("wb") as target:
        written = home.encrypt(source, target, [EMAIL])
    producer.join(timeout=30)
    assert written == encrypted.stat().st_size > 0
    assert chunk[:64] not in encrypted.read_bytes()

    read_end, write_end = os.pipe()
    digest = hashlib.sha256()

    def consume():
        with os.fdopen(read_end, "rb") as plain:
            for block in iter(lambda: plain.read(65536), b""):
                digest.update(block)

    consumer = threading.Thread(target=consume)
    consumer.start()
    with encrypted.open("rb") as source, os.fdopen(write_end, "wb") as target:
        assert home.decrypt(source, target) == len(chunk) * chunks
    consumer.join(timeout=30)
    assert digest.hexdigest() == expected


def test_the_argv_forms_make_a_pipeline(home):
    env = home.env
    encrypt = subprocess.Popen(home.encrypt_argv([EMAIL]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    decrypt = subprocess.Popen(home.decrypt_argv(), stdin=encrypt.stdout, stdout=subprocess.PIPE, env=env)
    encrypt.stdout.close()
    encrypt.stdin.write(b"-- a dump\n" * 1000)
    encrypt.stdin.close()
    plain, _ = decrypt.communicate(timeout=30)
    assert encrypt.wait(timeout=30) == 0 and decrypt.returncode == 0
    assert plain == b"-- a dump\n" * 1000


def test_already_compressed_data_is_encrypted_without_compressing_it_again(home):
    plain = b"-- a dump\n" * 1000
    sizes = {}
    for compress in (True, False):
        sealed = subprocess.run(
            home.encrypt_argv([EMAIL], compress=compress), input=plain, capture_output=True, env=home.env, check=True
        ).stdout
        out = io.BytesIO()
        home.decrypt(sealed, out)
        assert out.getvalue() == plain
        sizes[compress] = len(sealed)
    assert sizes[True] < len(plain) // 10 < len(plain) < sizes[False]


def test_bad_recipients_are_refused_before_anything_is_written(home):
    target = io.BytesIO()
    with pytest.raises(GpgError, match=r"no key to encrypt to nobody@demo.invalid .*it has: backups@demo.invalid"):
        home.encrypt(b"secret rows", target, [EMAIL, "nobody@demo.invalid"])
    with pytest.raises(GpgError, match="name at least one recipient"):
        home.encrypt(b"secret rows", target, [])
    with pytest.raises(GpgError, match="name at least one recipient"):
        home.encrypt(b"secret rows", target, EMAIL)  # a bare string is not a list of recipients
    with pytest.raises(GpgError, match="no key to encrypt to"):
        home.encrypt_argv(["nobody@demo.invalid"])
    assert target.getvalue() == b""
    fingerprint = home.keys()[0].fingerprint
    home.encrypt(b"secret rows", target, [fingerprint])  # a fingerprint names the key too
    assert target.getvalue()


def test_decrypting_what_is_not_for_this_home_fails_clearly(home, short_dir):
    folder, homes = short_dir
    other = GpgHome.create(folder / "other")
    homes.append(other)
    other.generate_key("Someone else", "else@demo.invalid")
    sealed = io.BytesIO()
    other.encrypt(b"not yours", sealed, ["else@demo.invalid"])
    with pytest.raises(GpgError, match=r"(?s)could not decrypt.*No secret key"):
        home.decrypt(sealed.getvalue(), io.BytesIO())
    with pytest.raises(GpgError, match=r"(?s)could not decrypt.*no valid OpenPGP data"):
        home.decrypt(b"plain text, not OpenPGP", io.BytesIO())


def test_a_secret_key_with_a_passphrase_fails_at_once_and_says_why(short_dir):
    folder, homes = short_dir
    made = GpgHome.create(folder / "pp")
    homes.append(made)
    (made.home / "gpg-agent.conf").write_text("s2k-count 65536\n")  # protect the key without seconds of calibration
    spec = (
        "Key-Type: eddsa\nKey-Curve: ed25519\nSubkey-Type: ecdh\nSubkey-Curve: cv25519\n"
        "Name-Real: Guarded\nName-Email: guarded@demo.invalid\nExpire-Date: 0\nPassphrase: sesame\n%commit\n"
    )
    assert gnupg.GPG(gnupghome=str(made.home)).gen_key(spec).fingerprint
    sealed = io.BytesIO()
    made.encrypt(b"guarded rows", sealed, ["guarded@demo.invalid"])
    made.stop_agent()  # no passphrase cached from the key's creation
    with pytest.raises(GpgError, match="has a passphrase"):
        made.decrypt(sealed.getvalue(), io.BytesIO())


def test_a_target_that_cannot_be_written_is_an_error(home):
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "wb", buffering=0) as target, pytest.raises(GpgError, match="could not write the"):
        home.encrypt(b"rows" * 100_000, target, [EMAIL])


def test_bad_homes_and_key_names_are_refused(short_dir):
    folder, _ = short_dir
    with pytest.raises(GpgError, match="there is no GnuPG home at"):
        GpgHome(folder / "missing").keys()
    made = GpgHome.create(folder / "h")
    with pytest.raises(GpgError, match="must be one line"):
        made.generate_key("Evil\nKey-Type: rsa", EMAIL)
    with pytest.raises(GpgError, match="must be one line"):
        made.generate_key("Name", "")
    assert made.keys(secret=True) == []


def test_a_home_too_long_for_the_agents_sockets_is_refused_before_gpg_runs(short_dir):
    folder, homes = short_dir
    room = SOCKET_PATH_MAX - len(LONGEST_SOCKET) - 1
    longest = folder / ("x" * (room - len(str(folder)) - 1))
    assert len(str(longest)) == room
    fits = GpgHome.create(longest)
    homes.append(fits)
    fits.generate_key("Longest home", EMAIL)  # the agent starts: the limit is not too strict
    assert fits.recipients() == [EMAIL]
    too_long = GpgHome(str(longest) + "y")
    if too_long.socket_dir() == too_long.home:  # no /run/user/<uid>: the sockets would go in the home
        with pytest.raises(GpgError, match="too long a path"):
            GpgHome.create(too_long.home)
        assert not too_long.home.exists()
    else:
        assert len(str(too_long.socket_dir() / LONGEST_SOCKET)) <= SOCKET_PATH_MAX
        GpgHome.create(too_long.home).check_socket_path()


def test_stop_agent_stops_it_and_says_when_none_ran(home):
    home.keys(secret=True)
    assert agent_processes(home.home)
    assert home.stop_agent() is True
    wait_for(lambda: agent_processes(home.home) == [], timeout=10)  # its socket goes a moment before the process
    assert home.stop_agent() is False


def answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def test_the_sockets_of_a_killed_agent_are_removed_and_a_new_agent_starts(home):
    home.keys(secret=True)
    pids = list(agents(home.home))
    assert pids
    sockets = [p for p in home.socket_dir().iterdir() if p.name.startswith("S.gpg-agent")]
    assert sockets
    for pid in pids:
        os.kill(pid, 9)  # a hard kill: the agent cannot remove its sockets
    wait_for(lambda: list(agents(home.home)) == [], timeout=10)
    # The kernel closes a killed process's files a moment after it is gone from the process list.
    wait_for(lambda: not any(answers(p) for p in sockets), timeout=10)
    assert all(p.is_socket() for p in sockets), "the killed agent left its sockets"

    assert home.stop_agent() is False  # nothing was running
    assert not any(p.exists() for p in sockets)
    assert home.remove_stale_sockets() == []

    home.keys(secret=True)  # gpg starts a new agent as usual
    assert list(agents(home.home))
    live = [p for p in home.socket_dir().iterdir() if p.name.startswith("S.gpg-agent")]
    assert home.remove_stale_sockets() == [] and all(p.is_socket() for p in live), "a live agent's are kept"
    assert home.stop_agent() is True
    wait_for(lambda: list(agents(home.home)) == [], timeout=10)


def test_the_sockets_go_where_gpg_run_with_the_home_s_env_puts_them(monkeypatch, tmp_path):
    """GnuPG puts the sockets of its default home, `$HOME/.gnupg` for the HOME gpg is run with, in /run/user/<uid>/
    gnupg, and any other home's in a hashed folder below it: a target's HOME need not be Rewind's own."""
    run = tmp_path / "run"
    monkeypatch.setattr("app.targets.gpg._user_run_dir", lambda: run)
    elsewhere = tmp_path / "app-home"
    theirs = GpgHome(elsewhere / ".gnupg", env={"PATH": os.defpath, "HOME": str(elsewhere)})
    assert theirs.socket_dir() == run / "gnupg"
    ours = GpgHome(Path.home() / ".gnupg", env={"PATH": os.defpath, "HOME": str(elsewhere)})
    assert ours.socket_dir().parent == run / "gnupg" and ours.socket_dir().name.startswith("d.")
    account = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".gnupg"
    assert GpgHome(account, env={"PATH": os.defpath}).socket_dir() == run / "gnupg"  # gpg without HOME: the account's


@pytest.mark.parametrize("home_var", ["same", "other", "unset"])
def test_the_socket_dir_is_gpgconf_s(tmp_path, home_var):
    """As gpgconf itself says (where /run/user/<uid> exists the rule matters; elsewhere both say the home)."""
    folder = Path(tempfile.mkdtemp(prefix="rw-s-", dir="/tmp"))
    try:
        env = {"PATH": os.environ.get("PATH", os.defpath)}
        if home_var != "unset":
            env["HOME"] = str(folder if home_var == "same" else folder / "elsewhere")
        home = GpgHome((Path(pwd.getpwuid(os.getuid()).pw_dir) if home_var == "unset" else folder) / ".gnupg", env=env)
        said = subprocess.run(
            ["gpgconf", "--homedir", str(home.home), "--list-dirs", "agent-socket"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert str(home.socket_dir() / "S.gpg-agent") == said
    finally:
        shutil.rmtree(folder, ignore_errors=True)
