"""Every status word Rewind stores, in one place, so pages and queries agree."""

from enum import IntEnum, StrEnum


class Outcome(StrEnum):
    """How an audited action ended."""

    OK = "ok"
    DENIED = "denied"
    FAILED = "failed"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    WARNING = "warning"  # the change was made and verified; a follow-up step failed, or it left a next step
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def label(self) -> str:
        """The words a page shows."""
        return "succeeded with warnings" if self is JobState.WARNING else self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_JOB_STATES

    @property
    def tone(self) -> str:
        """The colour family a page shows this state in (always next to its word)."""
        return JOB_STATE_TONES[self]


FINAL_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.WARNING, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
)
ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})
JOB_STATE_TONES = {
    JobState.QUEUED: "neutral",
    JobState.RUNNING: "info",
    JobState.SUCCEEDED: "ok",
    JobState.WARNING: "warn",
    JobState.FAILED: "bad",
    JobState.CANCELLED: "warn",
    JobState.INTERRUPTED: "bad",
}


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    NOT_RUN = "not_run"  # the job ended before this step's turn

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def tone(self) -> str:
        return {"pending": "neutral", "not_run": "neutral", "running": "info", "succeeded": "ok", "failed": "bad"}.get(
            self, "warn"
        )


class BackupState(StrEnum):
    """What a backup's last verification says of it now (worked out from its manifest and its file, never stored)."""

    VERIFIED = "verified"
    CHANGED = "changed"  # it passed, but the file is no longer the one that passed: no known good backup
    FAILED = "failed"
    UNVERIFIED = "unverified"

    @property
    def label(self) -> str:
        """The words a page shows."""
        return {"changed": "changed since verified", "failed": "failed verification"}.get(self.value, self.value)

    @property
    def tone(self) -> str:
        """The colour family a page shows this state in (always next to its word)."""
        return {"verified": "ok", "unverified": "warn"}.get(self.value, "bad")

    @property
    def is_verified(self) -> bool:
        """Known good: it passed its last verification and its file is still the one that passed."""
        return self is BackupState.VERIFIED


class RevisionState(StrEnum):
    """Where a migration revision stands in a target's database."""

    APPLIED = "applied"
    PENDING = "pending"  # in the deployed code, not in the database yet
    UNKNOWN = "unknown"  # in the database, not in the deployed code

    @property
    def tone(self) -> str:
        """The colour family a page shows this state in (always next to its word)."""
        return "ok" if self is RevisionState.APPLIED else "warn"


class Verification(StrEnum):
    """What a job's final check of its target said."""

    NONE = "none"
    PASSED = "passed"
    FAILED = "failed"


class ExitStatus(IntEnum):
    """What `flask rewind run` and `flask rewind jobs …` exit with, for scripts and CI (see the README)."""

    SUCCEEDED = 0  # also: queued and handed to a running runner (without --follow)
    ERROR = 1  # Rewind itself hit an error
    USAGE = 2  # a missing or malformed option (click's own status)
    FAILED = 3
    CANCELLED = 4
    INTERRUPTED = 5
    REFUSED = 6  # nothing queued or changed: unknown name, bad parameter, role, missing confirmation
    BUSY = 7  # nothing queued: the target is running another job; try again when it ends
    WARNING = 8  # the change was made and verified, but a follow-up step failed or it left a next step
    DETACHED = 130  # Ctrl-C stopped following a job a runner runs; the job goes on

    @classmethod
    def of(cls, state: JobState) -> "ExitStatus":
        return {
            JobState.SUCCEEDED: cls.SUCCEEDED,
            JobState.WARNING: cls.WARNING,
            JobState.FAILED: cls.FAILED,
            JobState.CANCELLED: cls.CANCELLED,
            JobState.INTERRUPTED: cls.INTERRUPTED,
        }.get(state, cls.SUCCEEDED)


class EnvSource(StrEnum):
    """How an env file version came to be recorded."""

    FIRST = "first"  # the file as Rewind first saw it
    REWIND = "rewind"  # Rewind wrote it (a restore, an edit, an automatic undo)
    SNAPSHOT = "snapshot"  # someone asked for a snapshot of the file as it is
    OUTSIDE = "outside"  # the file changed on disk without Rewind

    @property
    def label(self) -> str:
        return {"first": "first seen", "outside": "changed outside Rewind"}.get(self.value, self.value)
