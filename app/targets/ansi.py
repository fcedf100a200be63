"""Terminal colour and cursor codes taken out of an application's output.

Dev servers and loggers colour their lines (`\\x1b[31mWARNING…\\x1b[0m`); on a
web page the codes show as boxes and noise. Whatever Rewind shows of a
command's or an application's output goes through strip_ansi first.
"""

from __future__ import annotations

import re

# CSI (colours, cursor moves: ESC [ … final byte, or cut off at the end), OSC (titles, links: ESC ] … BEL
# or ESC \), charset and other nF escapes (ESC ( B), the two-byte escapes (ESC =), the 8-bit CSI, then any ESC left.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*(?:[@-~]|$)"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[!-/]+[0-~]"
    r"|\x1b[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b"
)


def strip_ansi(text: str) -> str:
    """The text without terminal escape sequences; everything else, other characters included, kept."""
    return _ESCAPES.sub("", text) if ("\x1b" in text or "\x9b" in text) else text
