"""Which local TCP ports listen, and which processes hold them, read from /proc.

Verification uses this to tell an answer from the process Rewind just started
apart from one given by some other process on the same port (an old copy
nobody stopped). Linux only, like the rest of process supervision; reading
never raises: what cannot be read is simply not seen.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

LISTEN = "0A"  # the TCP state code for LISTEN in /proc/net/tcp


def listening_inodes() -> dict[int, int]:
    """Socket inode -> port, for every TCP socket listening in this network namespace (IPv4 and IPv6)."""
    return {inode: port for inode, (port, _uid) in _listening().items()}


def _listening() -> dict[int, tuple[int, int]]:
    """Socket inode -> (port, uid of its owner), for every TCP socket listening in this network namespace."""
    found: dict[int, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN:
                port = int(fields[1].rsplit(":", 1)[1], 16)
                with contextlib.suppress(ValueError):
                    found[int(fields[9])] = (port, int(fields[7]))
    return found


def socket_inodes(pids: Iterable[int]) -> set[int]:
    """Inodes of the sockets these processes hold open (processes of other users are not readable: not seen)."""
    inodes: set[int] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                link = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return inodes


def listening_ports(pids: Iterable[int]) -> frozenset[int]:
    """The TCP ports on which these processes listen."""
    listening = listening_inodes()
    return frozenset(listening[inode] for inode in socket_inodes(pids) if inode in listening)


def listeners(port: int) -> list[int]:
    """Pids of the processes listening on this TCP port (processes of other users are not readable: not seen)."""
    inodes = {inode for inode, listened in listening_inodes().items() if listened == port}
    if not inodes:
        return []
    try:
        pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        return []
    return [pid for pid in pids if socket_inodes([pid]) & inodes]


def url_port(url: str) -> int:
    """An http(s) URL's port, said or implied by its scheme."""
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def url_listeners(url: str) -> tuple[int, list[int]]:
    """An http(s) URL's port, and the pids listening on it when its host is this machine (none otherwise)."""
    port = url_port(url)
    return port, listeners(port) if is_local_host(urlsplit(url).hostname or "") else []


def url_listener_users(url: str) -> list[str]:
    """Who owns what listens on an http(s) URL's port when its host is this machine, pid readable or not: a process
    of another user (a service's own account) listens there even when `url_listeners` cannot name its pid."""
    port = url_port(url)
    if not is_local_host(urlsplit(url).hostname or ""):
        return []
    return sorted({_user_name(uid) for listened, uid in _listening().values() if listened == port})


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def is_local_host(host: str) -> bool:
    """Whether every address the host name resolves to belongs to this machine (so its listeners are visible)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    if not infos:
        return False
    for family, _type, _proto, _name, address in infos:
        ip = ipaddress.ip_address(address[0])
        if ip.is_loopback:
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address[0], 0))  # only an address of this host can be bound
        except OSError:
            return False
    return True
