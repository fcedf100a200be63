"""Is a file really OpenPGP-encrypted, and to whom: read from its first packets, without decrypting.

A backup tool that silently wrote cleartext exists in the wild, so a backup
is checked for what it is, not trusted for its `.gpg` name. An encrypted
OpenPGP message opens with one public-key encrypted session key packet per
recipient (each naming the recipient's encryption key id), then the
encrypted data. Reading those headers needs no key and no gpg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.targets.command import CommandTimedOut, printed, run_command, said_nothing, shown
from app.targets.errors import TargetError

PKESK, SKESK, SED, SEIPD, MARKER, AEAD = 1, 3, 9, 18, 10, 20
ENCRYPTED_DATA = (SED, SEIPD, AEAD)
HEAD_BYTES = 64 * 1024
LIST_TIMEOUT_S = 30


class NotEncrypted(TargetError):
    """The file is not an OpenPGP encrypted message."""


class KeyListFailed(TargetError):
    """gpg could not list a recipient's keys for a reason other than not knowing them."""


@dataclass(frozen=True)
class Envelope:
    key_ids: tuple[str, ...]  # 16 hex digits each, upper case; "0000000000000000" for a hidden recipient
    passphrase: bool  # a symmetric (passphrase) session key is present


def _header(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, body start, body length) of the packet at `at`; ValueError when it is not a packet."""
    first = data[at]
    if not first & 0x80:
        raise ValueError("not an OpenPGP packet")
    if first & 0x40:  # new format
        tag = first & 0x3F
        o1 = data[at + 1]
        if o1 < 192:
            return tag, at + 2, o1
        if o1 < 224:
            return tag, at + 3, ((o1 - 192) << 8) + data[at + 2] + 192
        if o1 == 255:
            return tag, at + 6, int.from_bytes(data[at + 2 : at + 6], "big")
        return tag, at + 2, -1  # partial body length: only the data packet uses it
    tag, kind = (first >> 2) & 0x0F, first & 0x03
    if kind == 3:
        return tag, at + 1, -1
    size = (1, 2, 4)[kind]
    return tag, at + 1 + size, int.from_bytes(data[at + 1 : at + 1 + size], "big")


def read_envelope(source: Path | BinaryIO) -> Envelope:
    """The recipients' key ids of an encrypted message; NotEncrypted for anything else (cleartext, empty…)."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            data = handle.read(HEAD_BYTES)
    else:
        data = source.read(HEAD_BYTES)
    if not data:
        raise NotEncrypted("the file is empty", fix="make a new backup; an empty file holds no data")
    key_ids: list[str] = []
    passphrase = False
    at = 0
    try:
        while at < len(data):
            tag, start, length = _header(data, at)
            if tag in ENCRYPTED_DATA:
                if not key_ids and not passphrase:
                    break
                return Envelope(tuple(key_ids), passphrase)
            if tag == PKESK:
                version = data[start]
                if version == 3:
                    key_ids.append(data[start + 1 : start + 9].hex().upper())
                else:  # v6: a fingerprint; the key id is its leading 8 bytes
                    key_ids.append(data[start + 3 : start + 11].hex().upper())
            elif tag == SKESK:
                passphrase = True
            elif tag != MARKER:
                break
            if length < 0:
                break
            at = start + length
    except (IndexError, ValueError):
        pass
    raise NotEncrypted(
        "the file is not OpenPGP-encrypted data (it may be cleartext, or only signed or compressed)",
        fix="never restore it as a backup; make a new backup with encryption to the target's recipients",
    )


def encryption_key_ids(home: Path, recipients: list[str], env: dict[str, str]) -> dict[str, set[str]]:
    """Per recipient, the key ids (primary and subkeys able to encrypt) gpg knows for it in the home."""
    found: dict[str, set[str]] = {}
    for recipient in recipients:
        ids: set[str] = set()
        for fields in _listed(home, env, "--list-keys", recipient):
            if fields[0] in ("pub", "sub") and len(fields) > 11 and "e" in fields[11].lower():
                ids.add(fields[4].upper())
        found[recipient] = ids
    return found


def secret_key_ids(home: Path, env: dict[str, str]) -> set[str]:
    """The ids of every secret key and subkey in the home: a file for none of them cannot be decrypted here,
    whatever name its key carries (after a key rotation the old key's name is the new one's)."""
    return {fields[4].upper() for fields in _listed(home, env, "--list-secret-keys") if fields[0] in ("sec", "ssb")}


def _listed(home: Path, env: dict[str, str], *what: str) -> list[list[str]]:
    """gpg's colon-separated key listing, a list of fields per line; none when it names no key (said on stderr)."""
    fix = f"check the GnuPG home {home} (its owner, its keyring files) and the gpg on the target's PATH"
    argv = ["gpg", "--batch", "--no-tty", "--homedir", str(home), "--with-colons", *what]
    try:
        result = run_command(argv, timeout=LIST_TIMEOUT_S, env=env, capture=True)
    except OSError as exc:
        raise KeyListFailed(f"`{shown(argv)}` cannot run: {exc.strerror or exc}", fix=fix) from None
    except CommandTimedOut:
        raise KeyListFailed(f"`{shown(argv)}` did not answer within {LIST_TIMEOUT_S} s", fix=fix) from None
    if not result.ok and not printed(result.stderr, result.stdout):
        # An unknown recipient is said ("No public key"); a gpg that fails mute must not pass for one.
        raise KeyListFailed(f"gpg {result.ended} and {said_nothing(argv)}", fix=fix)
    return [line.split(":") for line in result.stdout.splitlines()] if result.ok else []
