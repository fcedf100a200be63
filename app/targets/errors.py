"""The one root of every adapter error, so a step can catch them all in one place."""

from __future__ import annotations


class TargetError(Exception):
    """Something about a target could not be done; `message` is for the person, `fix` says what to try."""

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def in_words(self) -> str:
        """What happened, then what to do: the one way pages, job logs and the CLI put the two together.

        Only these two: what a command printed (a ProcessError's output tail) has already reached the job's log.
        """
        if self.fix and self.fix not in self.message:
            return f"{self.message} — {self.fix}"
        return self.message
