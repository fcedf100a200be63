"""Small helpers for the sentences Rewind shows people."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_BREAKS = re.compile(r"(?<=[_./-])(?=.)|(?<=[a-z])(?=[A-Z])")


def sentence(text: str) -> str:
    """text with its first letter upper-cased and the rest as written.

    str.capitalize() lower-cases the rest too, which rewrites the names a message quotes: a key FEATURE_X
    became feature_x, and "there is no target 'Production'" read as if 'production' did not exist.
    """
    return text[:1].upper() + text[1:]


def breakable(name: str) -> Markup:
    """A name with a <wbr> after each _ . - / and inside camelCase: a long one wraps where it reads, not mid-word
    (legacy_expor|t), and still copies as it is, since <wbr> adds no character."""
    return Markup("<wbr>").join(escape(part) for part in _BREAKS.split(name))


SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def byte_size(size: int) -> str:
    """Bytes in at most 8 characters: 999 B, 12.2 KiB, 1023 MiB."""
    value, unit = float(size), 0
    while value >= 1024 and unit < len(SIZE_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    if unit == 0:
        return f"{size} B"
    return f"{value:.1f} {SIZE_UNITS[unit]}" if value < 100 else f"{value:.0f} {SIZE_UNITS[unit]}"
