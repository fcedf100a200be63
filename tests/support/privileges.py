"""File permissions that hold for the test process even when it runs as root (as CI does).

Root reads a chmod 000 file because of two capabilities, CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. Linux keeps
capabilities per thread: `permissions_apply()` drops those two from the calling thread's effective set for the
block (threads it starts inherit the drop), so the kernel itself refuses what an ordinary user would be refused.
They stay in the permitted set and are taken back at the end. Programs the thread runs (gpg, pg_dump) get the
full set again at exec, as root's programs do. A test process that is not root needs none of this.

A thread started in the block keeps the drop for its whole life, and no thread can give another its
capabilities back: one that outlived the block would read files as an ordinary user in every later test of the
process. So the block ends by waiting (bounded) for such threads to end, and fails naming them if they do not.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_VERSION_3 = 0x20080522
_OVERRIDES = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
_FOWNER = 1 << 3  # CAP_FOWNER: root's override of file ownership (a sticky folder's "only the owner deletes")
THREADS_END_S = 30.0  # how long the block's end waits for the threads it started to end


class LeakedDrop(AssertionError):
    """Threads started in a permissions_apply block outlived it, with root's override still dropped."""


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def _capabilities() -> tuple[_Header, ctypes.Array]:
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()  # pid 0: the calling thread
    if _libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    return header, data


def _set(header: _Header, data: ctypes.Array) -> None:
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


@contextmanager
def _without(capabilities: int) -> Iterator[None]:
    """The calling thread's effective set without these capabilities, put back on the way out."""
    header, data = _capabilities()
    kept = data[0].effective
    data[0].effective = kept & ~capabilities
    _set(header, data)
    try:
        yield
    finally:
        header, data = _capabilities()
        data[0].effective = kept
        _set(header, data)


@contextmanager
def permissions_apply(threads_end_s: float = THREADS_END_S, *, ownership: bool = False) -> Iterator[None]:
    """File modes bind this thread (and the threads it starts meanwhile) as they bind an ordinary user.

    `ownership`: file owners too (CAP_FOWNER dropped as well), so a sticky folder refuses to delete another
    user's file as it would refuse an ordinary user.
    """
    if os.geteuid() != 0:
        yield
        return
    # an enclosing block's threads (this one included, when blocks nest) are that block's business
    before = set(dropped_threads()) | {threading.get_native_id()}
    try:
        with _without(_OVERRIDES | (_FOWNER if ownership else 0)):
            yield
    finally:
        _wait_for_dropped_threads_to_end(before, threads_end_s)


def dropped_threads() -> dict[int, str]:
    """The process's threads (kernel id: name) that hold the override in their permitted set but not in effect."""
    found = {}
    for task in os.listdir("/proc/self/task"):
        try:
            status = Path(f"/proc/self/task/{task}/status").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        permitted, effective = int(fields["CapPrm"], 16), int(fields["CapEff"], 16)
        if permitted & _OVERRIDES == _OVERRIDES and effective & _OVERRIDES != _OVERRIDES:
            found[int(task)] = _thread_name(int(task), fields.get("Name", "?").strip())
    return found


def _thread_name(native_id: int, fallback: str) -> str:
    for thread in threading.enumerate():
        if thread.native_id == native_id:
            return thread.name
    return fallback


def _wait_for_dropped_threads_to_end(before: set[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        left = {tid: name for tid, name in dropped_threads().items() if tid not in before}
        if not left:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(sorted(left.values()))
            raise LeakedDrop(
                f"threads started in permissions_apply() outlived it with root's override dropped ({names}); "
                "they would read files as an ordinary user in later tests: stop and join them inside the block"
            )
        time.sleep(0.02)  # polling the condition itself, bounded by the deadline


_SYS_PTRACE = 1 << 19  # CAP_SYS_PTRACE: root's right to see another user's process's details (/proc/<pid>/cwd)


@contextmanager
def processes_opaque() -> Iterator[None]:
    """Another user's processes keep their details (their working directory) from this thread, as they do from
    root in a container, whose default capabilities leave out CAP_SYS_PTRACE. For a block that starts no thread.

    A test process that is not root sees no other user's details anyway: nothing to drop.
    """
    if os.geteuid() != 0:
        yield
        return
    with _without(_SYS_PTRACE):
        yield
