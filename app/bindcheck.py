"""Whether Rewind can listen on REWIND_BIND, said in one line before anything is built or started.

gunicorn, finding its port taken, retries for five seconds and ends with "Can't connect"; `make run` asks
here first (`python -m app.bindcheck`), so a second `make run` or another program on port 5000 is named
with the way to pick another port, and gunicorn's on_starting asks again for any other way of starting it.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from app.settings import SettingsError

DEFAULT_BIND = "127.0.0.1:5000"
SETTING = "REWIND_BIND"
LOOK_FOR_FREE = 50  # ports after the taken one tried for a suggestion


def address_of(bind: str) -> tuple[str, int] | None:
    """(host, port) of a TCP address `host:port`, `[v6]:port` or `:port`; None for a Unix socket or an fd."""
    bind = bind.strip()
    if bind.startswith(("unix:", "fd://")):
        return None
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(SETTING, f"expected host:port, e.g. {DEFAULT_BIND}, got {bind!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - what gunicorn listens on for ":port"
    return host, int(port)


def _bind(host: str, port: int) -> None:
    """Bind and close at once, with SO_REUSEADDR as gunicorn binds: a port in TIME_WAIT is free to it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


def _free_after(host: str, port: int) -> int | None:
    for candidate in range(port + 1, min(port + 1 + LOOK_FOR_FREE, 65536)):
        try:
            _bind(host, candidate)
        except OSError:
            continue
        return candidate
    return None


def check(bind: str) -> None:
    """SettingsError, naming the address and what to do, when Rewind could not listen on bind."""
    address = address_of(bind)
    if address is None or address[1] == 0:
        return  # port 0: the system picks a free one
    host, port = address
    try:
        _bind(host, port)
    except socket.gaierror:
        raise SettingsError(SETTING, f"{host!r} in {bind!r} is not a host name or address") from None
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            free = _free_after(host, port)
            other = f"[{host}]:{free}" if ":" in host else f"{host}:{free}"
            how = f"pick another port, e.g. `{SETTING}={other} make run`" if free else f"set {SETTING} to a free port"
            raise SettingsError(
                SETTING,
                f"{shown} is taken by another program (Rewind already running? see `ss -ltnp 'sport = :{port}'`): "
                f"stop it, or {how}",
            ) from None
        if exc.errno == errno.EACCES:
            raise SettingsError(
                SETTING, f"port {port} needs root to listen on: pick one above 1023, e.g. {SETTING}={host}:5000"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise SettingsError(
                SETTING,
                f"{host} is not an address of this machine: use 127.0.0.1 (this machine only) or 0.0.0.0 (every "
                "interface)",
            ) from None
        raise SettingsError(SETTING, f"cannot listen on {shown}: {exc.strerror or exc}") from None


def main() -> int:
    try:
        check(os.environ.get(SETTING) or DEFAULT_BIND)
    except SettingsError as exc:
        print(f"rewind: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
