"""File permissions that hold for the test process even when it runs as root (as CI does).

Root reads a chmod 000 file because of two capabilities, CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. Linux keeps
capabilities per thread: `permissions_apply()` drops those two from the calling thread's effective set for the
block (threads it starts inherit the drop), so the kernel itself refuses what an ordinary user would be refused.
They stay in the permitted set and are taken back at the end. Programs the thread runs (gpg, pg_dump) get the
full set again at exec, as root's programs do. A test process that is not root needs none of this.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

_VERSION_3 = 0x20080522
_OVERRIDES = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


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
def permissions_apply() -> Iterator[None]:
    """File modes bind this thread (and the threads it starts meanwhile) as they bind an ordinary user."""
    if os.geteuid() != 0:
        yield
        return
    header, data = _capabilities()
    kept = data[0].effective
    data[0].effective = kept & ~_OVERRIDES
    _set(header, data)
    try:
        yield
    finally:
        header, data = _capabilities()
        data[0].effective = kept
        _set(header, data)
