"""Small helpers for the sentences Rewind shows people."""

from __future__ import annotations


def sentence(text: str) -> str:
    """text with its first letter upper-cased and the rest as written.

    str.capitalize() lower-cases the rest too, which rewrites the names a message quotes: a key FEATURE_X
    became feature_x, and "there is no target 'Production'" read as if 'production' did not exist.
    """
    return text[:1].upper() + text[1:]
