"""What a runbook step sees: progress, log lines, commands, cancellation."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence

from sqlalchemy import select

from app.extensions import db
from app.jobs.events import EventWriter
from app.jobs.models import Job
from app.jobs.process import CommandCancelled, CommandResult, CommandTimedOut, run_command
from app.jobs.redact import Redactor
from app.jobs.runbook import StepFailed

CANCEL_CHECK_S = 0.25


class JobCancelled(Exception):
    def __init__(self, by: str) -> None:
        super().__init__(f"cancelled by {by}")
        self.by = by


class JobContext:
    def __init__(self, job: Job, writer: EventWriter, redactor: Redactor) -> None:
        self.job_id = job.id
        self.target = job.target
        self.params = job.params
        self.writer = writer
        self.redact = redactor
        self.step: int | None = None
        self.result: str | None = None
        self.verification: tuple[bool, str] | None = None
        self.runbook_title = job.runbook
        self.state: dict = {}  # what one step leaves for a later one (e.g. the commit a deploy started from)
        self._cancel_checked = 0.0
        self._cancelled_by: str | None = None

    # --- reporting -----------------------------------------------------------------

    def progress(self, fraction: float, message: str = "") -> None:
        self.writer.emit("progress", {"fraction": round(fraction, 4), "message": self.redact(message)}, self.step)

    def log(self, line: str, stream: str = "out") -> None:
        self.writer.add_line(self.step, stream, self.redact(line))
        self._tick()

    def add_secret(self, value: str | None) -> None:
        """Mask this value wherever it would appear in the log from now on."""
        self.redact.add(value)

    def set_result(self, summary: str) -> None:
        self.result = self.redact(summary)

    def verified(self, passed: bool, detail: str) -> None:
        self.verification = (passed, self.redact(detail))

    def _tick(self) -> None:
        if self.writer.flush_due():
            self.writer.flush()

    # --- cancellation --------------------------------------------------------------

    def cancel_requested(self) -> str | None:
        now = time.monotonic()
        if self._cancelled_by is None and now - self._cancel_checked >= CANCEL_CHECK_S:
            self._cancel_checked = now
            self._cancelled_by = db.session.scalar(select(Job.cancel_requested_by).where(Job.id == self.job_id))
            db.session.commit()  # end the read so the next check sees new commits
        return self._cancelled_by

    def check_cancelled(self) -> None:
        if by := self.cancel_requested():
            raise JobCancelled(by)

    def sleep(self, seconds: float) -> None:
        """Wait, but give way to a cancel at once."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check_cancelled()
            self._tick()
            time.sleep(min(left, 0.05))

    # --- commands ------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run argv (never a shell), streaming its output into this step's log."""
        self.log("$ " + " ".join(shlex.quote(self.redact(str(a))) for a in argv), "cmd")
        try:
            result = run_command(
                argv,
                on_line=lambda stream, line: self.writer.add_line(self.step, stream, self.redact(line)),
                should_cancel=lambda: self.cancel_requested() is not None,
                on_tick=self._tick,
                timeout=timeout,
                cwd=cwd,
                env=env,
                stdin=stdin,
            )
        except CommandCancelled:
            raise JobCancelled(self._cancelled_by or "someone") from None
        except CommandTimedOut as exc:
            raise StepFailed(str(exc)) from None
        except FileNotFoundError:
            raise StepFailed(f"{argv[0]} is not installed or not on PATH") from None
        if check and not result.ok:
            raise StepFailed(f"{argv[0]} exited with status {result.returncode}")
        return result
