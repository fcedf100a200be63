"""A GnuPG home: its keys, and encryption to its recipients as a stream.

Built on python-gnupg, which runs gpg with argv lists (never a shell). Data
flows through file objects (a file, a pipe, a socket) chunk by chunk, never
whole in memory; `encrypt_argv()` and `decrypt_argv()` give the same
operations as a stage of a command pipeline (`pg_dump | gpg`), so a backup
never has plaintext on disk.

A secret key may have a passphrase (`backups.passphrase`): python-gnupg gets it
as its passphrase argument, a pipeline stage through a pipe descriptor of its
own (`decrypt_stage()`), never on argv nor on disk.

gpg-agent keeps its sockets in the home unless `/run/user/<uid>` exists, and a
socket path is limited to a little over 100 bytes: such a home must have a short
path. `check_socket_path()` says so plainly, before gpg fails with "No agent running".
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pwd
import re
import select
import socket
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import gnupg

from app.targets.command import CommandTimedOut, Stage, run_command
from app.targets.errors import TargetError

# gpg-agent makes all its sockets at start-up; the browser one has the longest name.
LONGEST_SOCKET = "S.gpg-agent.browser"
# The longest socket path GnuPG 2.2 accepts (sun_path holds 108 bytes); measured, not guessed.
SOCKET_PATH_MAX = 106
ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
STOP_WAIT_S = 5.0
EMAIL = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
PKDECRYPT_FAILED = re.compile(r"\[GNUPG:\] ERROR pkdecrypt_failed (\d+)")
GPG_ERR_BAD_PASSPHRASE = 11  # libgpg-error's code


class GpgError(TargetError):
    """A GnuPG operation failed or cannot be done; the message says what to do."""

    def __init__(self, message: str, *, home: Path | None = None, detail: str = "") -> None:
        said = [line for line in detail.splitlines() if line.strip() and not line.startswith("[GNUPG:]")]
        tail = "\n  ".join(said[-6:])
        super().__init__(f"{message}:\n  {tail}" if tail else message)
        self.home = home
        self.detail = detail


class PassphraseError(GpgError):
    """The secret key would not unlock: a wrong backups.passphrase, or none for a key that has one. Nothing is
    known of the data it was to decrypt."""

    def __init__(self, home: Path, keys: str, *, configured: bool, detail: str = "") -> None:
        if configured:
            message = f"the secret key of {keys} in {home} does not unlock with backups.passphrase (bad passphrase)"
            fix = (
                "set backups.passphrase in the targets file (or the variable its env:/envfile: names) to that key's "
                "passphrase; nothing was decrypted"
            )
        else:
            message = f"the secret key of {keys} in {home} has a passphrase, and the targets file gives none"
            fix = (
                'set backups.passphrase in the targets file (e.g. passphrase = "env:BACKUP_PASSPHRASE") to that '
                "key's passphrase; nothing was decrypted"
            )
        TargetError.__init__(self, message, fix=fix)
        self.home = home
        self.detail = detail
        self.configured = configured


def check_passphrase(passphrase: str) -> str | None:
    """Why gpg cannot be given this passphrase, or None: it reads one line, so a line break would cut it short."""
    if any(c in passphrase for c in "\r\n\0"):
        return "must be one line (no line break or NUL): gpg reads the passphrase up to the first line break"
    if not passphrase:
        return "is empty: remove it for a key without a passphrase"
    return None


@dataclass(frozen=True)
class GpgKey:
    fingerprint: str
    uids: tuple[str, ...]
    can_encrypt: bool
    secret: bool
    expires: datetime | None

    @property
    def emails(self) -> tuple[str, ...]:
        return tuple(m.group(1) for uid in self.uids for m in EMAIL.finditer(uid))


def _zbase32(data: bytes) -> str:
    number, bits = int.from_bytes(data, "big"), len(data) * 8
    return "".join(ZBASE32[(number >> (bits - 5 * (i + 1))) & 31] for i in range(bits // 5))


def _user_run_dir() -> Path | None:
    """/run/user/<uid> as GnuPG accepts it for sockets (ours, private), or None."""
    for base in ("/run", "/var/run"):
        folder = Path(base, "user", str(os.getuid()))
        try:
            info = folder.stat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
            return folder
    return None


class GpgHome:
    """One GnuPG home directory, used by one target (its backups' keys)."""

    def __init__(
        self, home: Path | str, *, env: Mapping[str, str] | None = None, passphrase: str | None = None
    ) -> None:
        """env: gpg's whole environment (a target's command env); by default only PATH.
        passphrase: what unlocks the home's secret key when decrypting (None: a key without one)."""
        self.home = Path(home).absolute()
        self.env = dict(env) if env is not None else {"PATH": os.environ.get("PATH", os.defpath)}
        self.passphrase = passphrase

    def __repr__(self) -> str:  # never the passphrase
        return f"GpgHome({str(self.home)!r}, passphrase={'set' if self.passphrase else 'none'})"

    @classmethod
    def create(cls, home: Path | str, *, env: Mapping[str, str] | None = None) -> GpgHome:
        """Make the home (mode 700, as gpg insists) if it is not there, after checking its path can work."""
        made = cls(home, env=env)
        made.check_socket_path()
        made.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        made.home.chmod(0o700)
        return made

    # --- the agent's sockets -----------------------------------------------------------------------

    def socket_dir(self) -> Path:
        """Where gpg-agent puts its sockets for this home: GnuPG's own rule, for gpg run with this home's env."""
        run = _user_run_dir()
        if run is None:
            return self.home
        if str(self.home) == self._default_home():
            return run / "gnupg"
        digest = hashlib.sha1(os.fsencode(str(self.home)), usedforsecurity=False).digest()[:15]
        return run / "gnupg" / f"d.{_zbase32(digest)}"

    def _default_home(self) -> str:
        """GnuPG's default home as gpg run with this env sees it: `$HOME/.gnupg` (the account's home when HOME is
        unset), matched as that very string. A target's HOME need not be Rewind's own."""
        home = self.env.get("HOME")
        if home is None:
            home = pwd.getpwuid(os.getuid()).pw_dir
        return f"{home}/.gnupg"

    def check_socket_path(self) -> None:
        """GpgError when gpg-agent could not make its sockets for this home (the path is too long)."""
        longest = self.socket_dir() / LONGEST_SOCKET
        if len(os.fsencode(str(longest))) > SOCKET_PATH_MAX:
            room = SOCKET_PATH_MAX - len(LONGEST_SOCKET) - 1
            raise GpgError(
                f"the GnuPG home {self.home} is too long a path ({len(os.fsencode(str(self.home)))} bytes) for "
                f"gpg-agent, whose sockets live in it: use a home of at most {room} bytes (a shorter instance "
                "folder or gpg_home), or run where /run/user/<uid> exists so the sockets go there",
                home=self.home,
            )

    def stop_agent(self, wait_s: float = STOP_WAIT_S) -> bool:
        """Stop this home's gpg-agent and the helpers it started, as `gpgconf --kill all` does, and wait until
        its socket is gone; then remove the sockets of an agent that died without removing them (a hard kill).
        False when no agent was running."""
        running = [path for path in self._sockets("S.gpg-agent") if _answers(path)]
        if running:
            if not self._gpgconf_kill():
                for path in running:
                    _kill_agent(path)
            deadline = time.monotonic() + wait_s
            while any(path.exists() for path in running) and time.monotonic() < deadline:
                time.sleep(0.05)  # the agent removes its sockets as it exits
        self.remove_stale_sockets()
        return bool(running)

    def remove_stale_sockets(self) -> list[Path]:
        """Remove the home's GnuPG sockets no process listens on any more (left by a killed agent); those removed."""
        removed = []
        for path in self._sockets("S."):
            if path.is_socket() and not _answers(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
        return removed

    def _sockets(self, prefix: str) -> list[Path]:
        found = []
        for folder in dict.fromkeys((self.socket_dir(), self.home)):
            with contextlib.suppress(OSError):
                found += sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and p.is_socket())
        return found

    def _gpgconf_kill(self) -> bool:
        """`gpgconf --kill all` for this home; False when gpgconf could not be run."""
        argv = ["gpgconf", "--homedir", str(self.home), "--kill", "all"]
        try:
            return run_command(argv, env=self.env, timeout=STOP_WAIT_S * 2, capture=True).ok
        except (OSError, CommandTimedOut):
            return False

    # --- keys --------------------------------------------------------------------------------------

    def _gpg(self) -> gnupg.GPG:
        if not self.home.is_dir():
            raise GpgError(
                f"there is no GnuPG home at {self.home}: create it (mode 700) or correct gpg_home", home=self.home
            )
        self.check_socket_path()
        try:
            return gnupg.GPG(gnupghome=str(self.home), env=self.env)
        except OSError:
            raise GpgError("gpg is not installed (on Debian: apt-get install gnupg)", home=self.home) from None
        except ValueError as exc:
            raise GpgError(f"gpg cannot use the home {self.home}", home=self.home, detail=str(exc)) from None

    def generate_key(self, name: str, email: str, *, passphrase: str | None = None) -> GpgKey:
        """A new key that never expires: ed25519 to sign, cv25519 to encrypt (fast to make); protected by the
        passphrase when one is given, else without one."""
        for what, value in (("name", name), ("email", email)):
            if not value.strip() or any(c in value for c in "\r\n<>"):
                raise GpgError(f"a key's {what} must be one line without < or >, got {value!r}", home=self.home)
        if passphrase is not None and (problem := check_passphrase(passphrase)):
            raise GpgError(f"a key's passphrase {problem}", home=self.home)
        protection = f"Passphrase: {_for_gnupg(passphrase)}\n" if passphrase else "%no-protection\n"
        spec = (
            "Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n"
            "Subkey-Type: ecdh\nSubkey-Curve: cv25519\nSubkey-Usage: encrypt\n"
            f"Name-Real: {name}\nName-Email: {email}\nExpire-Date: 0\n{protection}%commit\n"
        )
        result = self._gpg().gen_key(spec)
        if not result.fingerprint:
            raise GpgError(
                f"gpg could not generate a key for {email} in {self.home}", home=self.home, detail=result.stderr
            )
        return next(key for key in self.keys(secret=True) if key.fingerprint == result.fingerprint)

    def keys(self, *, secret: bool = False) -> list[GpgKey]:
        """The public keys of the home (its secret keys with secret=True)."""
        found = []
        for entry in self._gpg().list_keys(secret=secret):
            expires = entry.get("expires")
            found.append(
                GpgKey(
                    fingerprint=entry["fingerprint"],
                    uids=tuple(entry.get("uids") or ()),
                    can_encrypt="E" in (entry.get("cap") or ""),
                    secret=secret,
                    expires=datetime.fromtimestamp(int(expires), UTC) if expires else None,
                )
            )
        return found

    def recipients(self) -> list[str]:
        """The email addresses data can be encrypted to here."""
        return [email for key in self.keys() if key.can_encrypt for email in key.emails]

    def check_recipients(self, recipients: Sequence[str]) -> None:
        """GpgError naming every recipient without a key fit to encrypt to in this home."""
        if isinstance(recipients, str) or not recipients:
            raise GpgError("name at least one recipient (a list of email addresses or fingerprints)", home=self.home)
        usable = [key for key in self.keys() if key.can_encrypt]
        missing = [r for r in recipients if not any(_names(key, r) for key in usable)]
        if missing:
            known = ", ".join(self.recipients()) or "none"
            raise GpgError(
                f"no key to encrypt to {', '.join(missing)} in {self.home} (it has: {known}): import the "
                f"recipient's public key with `gpg --homedir {self.home} --import KEYFILE`, or correct the recipients",
                home=self.home,
            )

    # --- encryption, streamed ----------------------------------------------------------------------

    def encrypt(self, source: BinaryIO | bytes, target: BinaryIO, recipients: Sequence[str]) -> int:
        """Encrypt source (read to its end) to the recipients, writing binary OpenPGP to target; bytes written."""
        self.check_recipients(recipients)
        # The home is the target's own: a key in it is there because the operator put it there.
        return self._stream("encrypt", source, target, recipients=list(recipients), armor=False, always_trust=True)

    def decrypt(self, source: BinaryIO | bytes, target: BinaryIO) -> int:
        """Decrypt source (read to its end) with a secret key of the home into target; bytes written."""
        # loopback: a key with a passphrase takes ours (python-gnupg writes it to gpg's stdin), or fails at once
        # without one instead of waiting for a pinentry.
        return self._stream(
            "decrypt", source, target, extra_args=["--pinentry-mode", "loopback"], passphrase=self._gnupg_passphrase()
        )

    def _passphrase(self) -> str | None:
        if self.passphrase is not None and (problem := check_passphrase(self.passphrase)):
            raise GpgError(f"backups.passphrase {problem}", home=self.home)
        return self.passphrase

    def _gnupg_passphrase(self) -> str | None:
        passphrase = self._passphrase()
        return _for_gnupg(passphrase) if passphrase is not None else None

    def check_unlocks(self, recipients: Sequence[str]) -> str:
        """Encrypt a few bytes to the recipients and decrypt them here, as a backup would be: PassphraseError when
        the secret key does not unlock (GpgError for another failure); what was found when it does.

        The agent's cached passphrases are forgotten first: within its default-cache-ttl it would take any
        passphrase, and a wrong one would pass the check."""
        self.forget_passphrases(recipients)
        sealed = io.BytesIO()
        self.encrypt(b"rewind passphrase check\n", sealed, recipients)
        out = io.BytesIO()
        self.decrypt(sealed.getvalue(), out)
        if out.getvalue() != b"rewind passphrase check\n":  # pragma: no cover - gpg said ok
            raise GpgError(f"gpg decrypted a test message wrongly in {self.home}", home=self.home)
        if self.passphrase:
            return f"the secret key of {', '.join(recipients)} unlocks with backups.passphrase"
        return f"the secret key of {', '.join(recipients)} decrypts without a passphrase"

    def _stream(self, action: str, source: BinaryIO | bytes, target: BinaryIO, **options: object) -> int:
        gpg = self._gpg()
        written = 0

        def on_data(chunk: bytes) -> bool:
            nonlocal written
            if chunk:
                target.write(chunk)
                written += len(chunk)
            return False  # streamed on, never kept in memory

        gpg.on_data = on_data
        stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        run = gpg.encrypt_file if action == "encrypt" else gpg.decrypt_file
        result = run(stream, **options)
        failure = getattr(result, "on_data_failure", None)
        if failure is not None:
            raise GpgError(f"could not write the {action}ed stream: {failure}", home=self.home)
        if not result.ok:
            if action == "decrypt" and _passphrase_refused(result.status, result.stderr):
                keys = ", ".join(self._secret_names()) or "a secret key"
                raise PassphraseError(self.home, keys, configured=bool(self.passphrase), detail=result.stderr)
            if action == "decrypt":
                hint = f"the data must be OpenPGP encrypted to a secret key in {self.home}"
            else:
                hint = "check the recipients' keys in the home"
            raise GpgError(f"gpg could not {action} ({result.status or 'no status'}); {hint}", detail=result.stderr)
        return written

    def encrypt_argv(self, recipients: Sequence[str], *, compress: bool = True) -> list[str]:
        """gpg encrypting stdin to stdout, for a pipeline stage; run it with env=self.env.

        `compress`: False for data that is compressed already (pg_dump's custom format). gpg would zlib it again
        for about nothing: measured on a 53-MB dump, 1.65 s to encrypt and 0.25 s to decrypt against 0.17 and
        0.06 s without, for a file 4 % larger; and a restore decrypts while it loads, on the same cores."""
        self.check_recipients(recipients)
        argv = [*self._base_argv(), "--trust-model", "always", "--encrypt"]
        if not compress:
            argv += ["--compress-algo", "none"]
        for recipient in recipients:
            argv += ["--recipient", recipient]
        return argv

    def decrypt_argv(self, passphrase_fd: int | None = None) -> list[str]:
        """gpg decrypting stdin to stdout, for a pipeline stage; run it with env=self.env (and, with a passphrase,
        pass_fds=(passphrase_fd,)): `decrypt_stage()` does both."""
        secret = ["--passphrase-fd", str(passphrase_fd)] if passphrase_fd is not None else []
        return [*self._base_argv(), "--pinentry-mode", "loopback", *secret, "--decrypt"]

    @contextlib.contextmanager
    def decrypt_stage(self, name: str = "gpg") -> Iterator[Stage]:
        """A pipeline stage decrypting stdin to stdout, for one run: with a passphrase, gpg reads it from a pipe
        made for that run, already written and closed on our side (a pipe is read once: one stage per run)."""
        passphrase = self._passphrase()
        if passphrase is None:
            yield Stage.of(self.decrypt_argv(), name, env=self.env)
            return
        with secret_pipe(passphrase.encode() + b"\n") as fd:
            yield Stage.of(self.decrypt_argv(fd), name, env=self.env, pass_fds=(fd,))

    def forget_passphrases(self, keys: Sequence[str] = ()) -> None:
        """Make a running gpg-agent of this home forget the secret keys' passphrases it keeps (CLEAR_PASSPHRASE),
        so the next decryption unlocks with the passphrase it is given. Unlike stopping the agent, this leaves any
        decryption running meanwhile alone; it starts no agent. `keys` (names, emails, fingerprints): only theirs,
        so a shared home's other keys (one that signs commits) keep what they were given; none named: every key's.
        """
        if not any(_answers(path) for path in self._sockets("S.gpg-agent")):
            return
        try:
            listed = run_command(
                [*self._base_argv(), "--with-colons", "--with-keygrip", "--list-secret-keys", "--", *keys],
                env=self.env,
                timeout=STOP_WAIT_S * 2,
                capture=True,
            )
            # A recipient without a secret key here makes gpg exit 2 after listing the others: theirs still count.
            grips = [line.split(":")[9] for line in listed.stdout.splitlines() if line.startswith("grp:")]
            if not grips:
                return
            clear = [f"CLEAR_PASSPHRASE --mode=normal {grip}" for grip in grips]
            argv = ["gpg-connect-agent", "--homedir", str(self.home), "--no-autostart", *clear, "/bye"]
            run_command(argv, env=self.env, timeout=STOP_WAIT_S * 2, capture=True)
        except (OSError, CommandTimedOut) as exc:  # a GpgError, as every other failure of the check
            raise GpgError(
                f"the gpg-agent of {self.home} could not be made to forget the passphrases it keeps ({exc}): stop "
                f"it with `gpgconf --homedir {self.home} --kill gpg-agent` and check again",
                home=self.home,
            ) from None

    def _secret_names(self) -> list[str]:
        with contextlib.suppress(GpgError):
            return [email for key in self.keys(secret=True) for email in key.emails]
        return []

    def _base_argv(self) -> list[str]:
        self.check_socket_path()
        return ["gpg", "--batch", "--no-tty", "--quiet", "--homedir", str(self.home)]


@contextlib.contextmanager
def secret_pipe(data: bytes) -> Iterator[int]:
    """The read end of a pipe holding data, for a child to inherit (pass_fds); both ends closed after the block.

    Both ends are non-inheritable, so no other child gets them. Data up to PIPE_BUF bytes always fits a new
    pipe's buffer and is written at once; anything longer is fed by a thread, which a closed read end (the
    child gone without reading) stops with a broken pipe instead of leaving it blocked."""
    read, write = os.pipe()
    feeder = None
    try:
        if len(data) <= select.PIPE_BUF:
            os.write(write, data)
            os.close(write)
        else:
            feeder = threading.Thread(target=_write_all, args=(write, data), daemon=True)
            feeder.start()
        write = -1
        yield read
    finally:
        if write != -1:
            os.close(write)
        os.close(read)
        if feeder is not None:
            feeder.join(timeout=STOP_WAIT_S)


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass  # the reader is gone: nothing more to give it
    finally:
        os.close(fd)


def _for_gnupg(secret: str) -> str:
    """The text python-gnupg turns back into the secret's UTF-8 bytes: it encodes what it writes to gpg as Latin-1,
    while a pipeline's gpg (and a person at a terminal) gives the UTF-8 bytes, so a key made or unlocked by one
    would not unlock by the other, and a character beyond Latin-1 would not encode at all."""
    return secret.encode().decode("latin-1")


def _passphrase_refused(status: str | None, stderr: str) -> bool:
    """Whether gpg failed for want of the right passphrase. In loopback mode gpg 2.2 says a wrong one only as
    `ERROR pkdecrypt_failed <code>`, the code's low 16 bits being GPG_ERR_BAD_PASSPHRASE."""
    if "passphrase" in (status or ""):
        return True
    codes = (int(m.group(1)) & 0xFFFF for m in PKDECRYPT_FAILED.finditer(stderr or ""))
    return any(code == GPG_ERR_BAD_PASSPHRASE for code in codes) or "Bad passphrase" in (stderr or "")


def _names(key: GpgKey, recipient: str) -> bool:
    wanted = recipient.strip().lower().removeprefix("0x")
    if "@" in wanted:
        return wanted in (email.lower() for email in key.emails)
    return len(wanted) >= 16 and key.fingerprint.lower().endswith(wanted)


def _answers(path: Path) -> bool:
    """Some process listens on the Unix socket at path (a socket file left by a killed one refuses)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(STOP_WAIT_S)
        try:
            sock.connect(os.fsencode(str(path)))
        except OSError:
            return False
        return True


def _kill_agent(path: Path) -> bool:
    """Send KILLAGENT on the agent's socket (the Assuan protocol, as `gpgconf --kill` does); False if none."""
    if not path.is_socket():
        return False
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(STOP_WAIT_S)
        sock.connect(os.fsencode(str(path)))
        with sock.makefile("rwb") as channel:
            if not channel.readline().startswith(b"OK"):
                return False
            channel.write(b"KILLAGENT\n")
            channel.flush()
            return channel.readline().startswith(b"OK")
    return False
