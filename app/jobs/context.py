"""What a runbook step sees: progress, log lines, commands, cancellation.

A JobContext is also the sink every adapter command writes to: reader
threads only buffer lines (`line`), and the job's own thread writes them as
events (`tick`), so no line is lost to a thread that cannot reach the
database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import select, update

from app.clock import utcnow
from app.extensions import db
from app.jobs.engine import current_targets
from app.jobs.events import EventWriter
from app.jobs.models import Job
from app.jobs.redact import Redactor
from app.jobs.runbook import StepFailed, StepSkipped
from app.targets.ansi import strip_ansi
from app.targets.command import (
    CommandCancelled,
    CommandResult,
    CommandTimedOut,
    Tee,
    run_command,
    said_nothing,
    shown,
    start_ticks,
)
from app.targets.environment import inherited_env

CANCEL_CHECK_S = 0.25

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """A cancel ended the step; `outcome` says where a step that recovered from it left the target."""

    def __init__(self, by: str, outcome: str = "") -> None:
        super().__init__(f"cancelled by {by}")
        self.by = by
        self.outcome = outcome


class JobContext:
    def __init__(self, job: Job, writer: EventWriter, redactor: Redactor, runbook_title: str) -> None:
        self.job_id = job.id
        self.runbook = job.runbook
        self.target = job.target
        self.params = job.params
        self.writer = writer
        self.redact = redactor
        self.runbook_title = runbook_title
        self.step: int | None = None
        self.result: str | None = None
        self.verification: tuple[bool, str] | None = None
        self.warnings: list[str] = []
        self.changed: list[str] = []  # what this job did to its target so far, in words
        self.state: dict = {}  # what one step leaves for a later one (e.g. the commit a deploy started from)
        self._thread = threading.get_ident()
        self._cancel_checked = 0.0
        self._cancelled_by: str | None = None
        self._shielded = 0

    # --- the sink ------------------------------------------------------------------

    def line(self, stream: str, text: str) -> None:
        """One output line from any thread: buffered only, written by the job's thread; colour codes dropped."""
        self.writer.add_line(self.step, stream, self.redact(strip_ansi(text)))

    def tick(self) -> None:
        if threading.get_ident() == self._thread and self.writer.flush_due():
            self.writer.flush()

    def cancelled(self) -> bool:
        return not self._shielded and self.cancel_requested() is not None

    def group_started(self, pgid: int) -> None:
        """Remember the command's process group on the job row, so a crash cannot leave it running unseen."""
        self._record_group(pgid, start_ticks(pgid))

    def group_ended(self, pgid: int) -> None:
        self._record_group(None, None)

    def _record_group(self, pgid: int | None, ticks: int | None) -> None:
        if threading.get_ident() != self._thread:
            return
        db.session.execute(update(Job).where(Job.id == self.job_id).values(command_group=pgid, command_started=ticks))
        db.session.commit()

    # --- reporting -----------------------------------------------------------------

    def progress(self, fraction: float, message: str = "") -> None:
        self.writer.emit("progress", {"fraction": round(fraction, 4), "message": self.redact(message)}, self.step)

    def log(self, text: str, stream: str = "out") -> None:
        self.line(stream, text)
        self.tick()

    def add_secret(self, value: str | None) -> None:
        """Mask this value wherever it would appear in the log from now on."""
        self.redact.add(value)

    def set_result(self, summary: str) -> None:
        self.result = self.redact(strip_ansi(summary))

    def did(self, change: str) -> None:
        """Note a change made to the target, so a later failure can say what already happened; kept on the job row
        too, so a job marked interrupted (its process killed or stopped) says it as well."""
        self.changed.append(self.redact(change))
        self._note_on_job({"done": "; ".join(self.changed)[:2000]}, "what the job already changed")

    def standing(self, text: str) -> None:
        """Say, durably, where the target stands now (which copy is live, what is left where).

        Kept on the job row while it runs, so if the process running it is
        killed, the job marked interrupted still tells the person where things
        are: "the live database is untouched; the restored copy is shop_restore_…".
        """
        self._note_on_job({"standing": self.redact(text)[:1000]}, "where things stand")

    def swapped(self, kept_as: str | None) -> bool:
        """Mark, durably, that live is now another database, the replaced one kept as `kept_as` (None: the job
        swapped it back).

        At the rename itself, so a job that fails or is killed afterwards still counts as the swap it made. Whether
        it was recorded: a swap whose mark could not be written is not made.
        """
        what = f"that live is now the database it swapped in (kept {kept_as})" if kept_as else "the swap back"
        return self._note_on_job({"swapped_at": utcnow() if kept_as else None, "swapped_out": kept_as}, what)

    def _note_on_job(self, values: dict, what: str) -> bool:
        """Write facts on the job's row, from the job's thread; never raises. Called with the application stopped
        mid-swap, a failed write to Rewind's own database must not keep the swap, or the start after it, from
        happening: the job's log says what could not be recorded."""
        if threading.get_ident() != self._thread:
            return False
        try:
            db.session.execute(update(Job).where(Job.id == self.job_id).values(**values))
            db.session.commit()
        except Exception as exc:  # bookkeeping: the target comes first
            db.session.rollback()
            log.exception("job %s: could not record %s", self.job_id, what)
            self.line("err", f"! Rewind could not record {what} in its own database ({type(exc).__name__})")
            return False
        return True

    def verified(self, passed: bool, detail: str) -> None:
        self.verification = (passed, self.redact(strip_ansi(detail)))

    def warn(self, text: str) -> None:
        """The change was made and is healthy, but leaves something for the person to do: the job ends
        "succeeded with warnings", this said after its result, rather than a plain "succeeded"."""
        self.warnings.append(self.redact(strip_ansi(text)))

    def skip(self, reason: str) -> None:
        """End this step as skipped (nothing to do), not as succeeded."""
        raise StepSkipped(self.redact(reason))

    # --- cancellation --------------------------------------------------------------

    def cancel_requested(self) -> str | None:
        """Who asked to cancel, if anyone. Reads the database only from the job's thread, at most every 0.25 s."""
        if self._cancelled_by is not None or threading.get_ident() != self._thread:
            return self._cancelled_by
        now = time.monotonic()
        if now - self._cancel_checked >= CANCEL_CHECK_S:
            self._cancel_checked = now
            self._cancelled_by = db.session.scalar(select(Job.cancel_requested_by).where(Job.id == self.job_id))
            db.session.commit()  # end the read so the next check sees new commits
        return self._cancelled_by

    def check_cancelled(self) -> None:
        if not self._shielded and (by := self.cancel_requested()):
            raise JobCancelled(by)

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """Run a recovery to its end though a cancel was asked: a half-done change (an app stopped for a swap)
        must be put right, and a cancel stopping the recovery's own commands would leave it half-done."""
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1

    def sleep(self, seconds: float) -> None:
        """Wait, but give way to a cancel at once."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check_cancelled()
            self.tick()
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
        """Run argv (never a shell), streaming its output into this step's log.

        The environment is the target's (Target.command_env()), or the shared
        allow-list for a job without a target — never Rewind's own.
        """
        if env is None:
            env = current_targets().open(self.target).command_env() if self.target else inherited_env()
        self.log("$ " + shown([self.redact(str(a)) for a in argv]), "cmd")
        tee = Tee(self)
        try:
            result = run_command(argv, tee, timeout=timeout, cwd=cwd, env=env, stdin=stdin)
        except CommandCancelled:
            raise JobCancelled(self._cancelled_by or "someone") from None
        except CommandTimedOut as exc:
            raise StepFailed(str(exc)) from None
        except FileNotFoundError:
            raise StepFailed(f"{argv[0]} is not installed or not on PATH") from None
        if check and not result.ok:
            last = tee.last_words()
            said = f"; it said: {last}" if last else " and " + said_nothing(argv, where=cwd or "")
            raise StepFailed(self.redact(strip_ansi(f"{argv[0]} {result.ended}{said}")))
        return result
