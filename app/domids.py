"""HTML ids made from names an application chose (flag names with spaces, dots, slashes, accents)."""

from __future__ import annotations

import hashlib
import re

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")


def dom_id(name: str) -> str:
    """The name itself when it is plain; else its plain characters and a short digest of it.

    An id may hold no whitespace (a label's `for` would find nothing), and `#id` selectors want no dots or
    slashes; the digest keeps two names that differ only in such characters apart.
    """
    if _PLAIN.fullmatch(name):
        return name
    plain = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:60]
    return f"{plain}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
