"""The one root of every adapter error, so a step can catch them all in one place."""

from __future__ import annotations


class TargetError(Exception):
    """Something about a target could not be done; `message` is for the person, `fix` says what to try."""

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
