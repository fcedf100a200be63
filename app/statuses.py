"""Every status word Rewind stores, in one place, so pages and queries agree."""

from enum import StrEnum


class Outcome(StrEnum):
    """How an audited action ended."""

    OK = "ok"
    DENIED = "denied"
    FAILED = "failed"


OUTCOME_LABELS = {
    Outcome.OK: "OK",
    Outcome.DENIED: "Denied",
    Outcome.FAILED: "Failed",
}
