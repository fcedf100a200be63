"""Rewind's own keys for env file versions: a GnuPG key to seal files, an HMAC key to fingerprint values.

Both live in the instance folder like Rewind's other generated secrets (mode
0600, the GnuPG home 0700) and are made on first use. The GnuPG home is
`<instance>/gpg`, short on purpose: gpg-agent keeps its sockets in it.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
import threading
from pathlib import Path

from app.targets.gpg import GpgHome

KEY_NAME, KEY_EMAIL = "Rewind env versions", "rewind-envconfig@localhost"
_lock = threading.Lock()
_fingerprints: dict[Path, str] = {}


def gpg_home(instance_dir: Path) -> GpgHome:
    return GpgHome(Path(instance_dir) / "gpg")


def _fingerprint(instance_dir: Path) -> str:
    """The fingerprint of Rewind's own key, generated into the instance folder the first time."""
    home_dir = Path(instance_dir) / "gpg"
    with _lock:
        if home_dir in _fingerprints:
            return _fingerprints[home_dir]
        home = GpgHome.create(home_dir)
        owned = [k for k in home.keys(secret=True) if KEY_EMAIL in k.emails]
        key = owned[0] if owned else home.generate_key(KEY_NAME, KEY_EMAIL)
        _fingerprints[home_dir] = key.fingerprint
        return key.fingerprint


def seal(instance_dir: Path, content: bytes) -> bytes:
    """content encrypted to Rewind's own key (binary OpenPGP)."""
    recipient = _fingerprint(instance_dir)
    out = io.BytesIO()
    gpg_home(instance_dir).encrypt(content, out, [recipient])
    return out.getvalue()


def unseal(instance_dir: Path, sealed: bytes) -> bytes:
    _fingerprint(instance_dir)
    out = io.BytesIO()
    gpg_home(instance_dir).decrypt(sealed, out)
    return out.getvalue()


def _hmac_key(instance_dir: Path) -> bytes:
    path = Path(instance_dir) / "envconfig-key"
    with _lock:
        try:
            # O_EXCL: of two processes starting at once, one makes the key and the other reads it
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return bytes.fromhex(path.read_text().strip())
        value = secrets.token_hex(32)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        return bytes.fromhex(value)


def value_digest(instance_dir: Path, key: str, value: str | None) -> str:
    """A keyed digest of one setting: equal for equal values, telling nothing of the value without the key."""
    shown = "\x00unset" if value is None else "\x01" + value
    return hmac.new(_hmac_key(instance_dir), f"{key}\x00{shown}".encode(), hashlib.sha256).hexdigest()


def file_digest(instance_dir: Path, content: bytes) -> str:
    return hmac.new(_hmac_key(instance_dir), b"file\x00" + content, hashlib.sha256).hexdigest()
