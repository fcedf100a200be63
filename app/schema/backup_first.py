"""A fresh verified backup before a downgrade that destroys data.

The schema downgrade and downgrade-then-reset runbooks share this policy:

- A downgrade that destroys no data takes no backup.
- Backups configured ([targets.X.backups]): the backups area's own steps
  make an encrypted backup and quick-verify it before the downgrade; if
  either fails, the job stops there and the schema is untouched. The backup
  is catalogued as made by the job and named in its log and result.
- No backups configured: a protected target is refused before anything
  runs (the fix is to configure backups); elsewhere an admin must confirm
  having a backup (`backup_confirmed`) and the job says none was taken.
- Skipping the backup (`skip_backup`) is refused on a protected target. On
  a non-protected one an admin may tick it: staging and scratch databases
  are often large and disposable, the admin running the job owns them, and
  an incident there should not wait for a dump nobody will restore. The
  skip is never implied (off by default, its own box, not the "I have a
  backup" one), the job log says no backup was taken and who chose that,
  and the job's parameters are audited with it.

The decision is made twice: when the job is queued (so a refusal comes
before anything runs) and again when it runs, because the columns the
downgrade drops may have gained data in between.
"""

from __future__ import annotations

from app.backups import steps as backup_steps
from app.backups.setup import setup_of
from app.extensions import db
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.jobs.runbook import Param, ParamError, StepFailed
from app.targets.config import TargetConfig
from app.targets.errors import TargetError

BACKUP_CONFIRMED = Param(
    "backup_confirmed",
    "I have a backup of the database",
    kind=bool,
    required=False,
    default=False,
    help="only asked where no backups are configured; elsewhere Rewind takes a fresh backup first",
)
SKIP_BACKUP = Param(
    "skip_backup",
    "Skip the fresh backup (not on protected targets)",
    kind=bool,
    required=False,
    default=False,
    help="a downgrade that destroys data takes a verified backup first; only an unprotected target may skip it",
)
RESTORE_HINT = "restore it from the Backups tab"


def _unconfigured_refusal(name: str, summary: str, what: str) -> str:
    return (
        f"{what} destroys data ({summary}) and {name} is protected, so a fresh backup must be taken first, "
        f"but {name} has no backups configured: add [targets.{name}.backups] (dir, gpg_home, recipients) "
        "to the targets file — the backup cannot be skipped on a protected target"
    )


def _unconfirmed(name: str, summary: str, what: str) -> str:
    return (
        f"{what} destroys data ({summary}) and {name} has no backups configured, so Rewind cannot take one "
        f"first: confirm that you have a backup of the database, or add [targets.{name}.backups]"
    )


def _skip_refused(name: str) -> str:
    return f"{name} is protected: the backup before a downgrade that destroys data cannot be skipped"


def takes_backup(config: TargetConfig, params: dict) -> bool:
    """Whether a destructive downgrade with these parameters takes a fresh backup first."""
    return config.backups is not None and not (params.get("skip_backup") and not config.protected)


def check_params(params: dict, target_name: str | None, destroys: bool, summary: str, what: str) -> None:
    """Before queueing: refuse what the policy above refuses, so nothing runs."""
    config = current_targets().config(target_name)
    if params.get("skip_backup") and config.protected:
        raise ParamError("skip_backup", _skip_refused(target_name))
    if not destroys:
        return
    if config.backups is None:
        if config.protected:
            raise ParamError("backup_confirmed", _unconfigured_refusal(target_name, summary, what))
        if not params.get("backup_confirmed"):
            raise ParamError("backup_confirmed", _unconfirmed(target_name, summary, what))
        return
    if takes_backup(config, params):
        try:
            setup_of(current_targets().open(target_name))
        except TargetError as exc:
            raise ParamError(
                "backup_confirmed",
                f"{what} destroys data ({summary}), so a fresh backup is taken first, but {target_name}'s backups "
                f"are not usable: {exc.in_words()}",
            ) from None


def note_losses(ctx: JobContext, destroys: bool, summary: str, to: str) -> None:
    """Called by the step that reads the plan: what the backup steps decide on."""
    ctx.state.update(destroys_data=destroys, destroys=summary, downgrade_to=to)


def _who(ctx: JobContext) -> str:
    job = db.session.get(Job, ctx.job_id)
    return job.actor_name if job else "the person who started the job"


def backup_first(ctx: JobContext) -> None:
    """Take the backup when the downgrade destroys data; fail before the schema is touched where none may be skipped."""
    if not ctx.state.get("destroys_data"):
        ctx.skip("this downgrade destroys no data: no backup is needed")
    summary = ctx.state["destroys"]
    config = steps.target_of(ctx).config
    what = "this downgrade"
    if config.backups is None:
        if config.protected:
            raise StepFailed(f"{_unconfigured_refusal(ctx.target, summary, what)}. Nothing was changed.")
        if not ctx.params.get("backup_confirmed"):
            raise StepFailed(f"{_unconfirmed(ctx.target, summary, what)}. Nothing was changed.")
        ctx.log(
            f"this downgrade destroys data ({summary}); NO BACKUP was taken by this runbook "
            f"({ctx.target} has no backups configured) — {_who(ctx)} confirmed having one",
            "err",
        )
        ctx.skip(f"no backups configured: no backup was taken; {_who(ctx)} confirmed having one")
    if not takes_backup(config, ctx.params):  # never on a protected target: there the backup is taken anyway
        ctx.log(f"this downgrade destroys data ({summary}); NO BACKUP was taken: {_who(ctx)} chose to skip it", "err")
        ctx.skip(f"skipped by {_who(ctx)}: no backup was taken")
    ctx.log(f"this downgrade destroys data ({summary}): taking a fresh backup first")
    try:
        backup = backup_steps.take_backup(ctx, purpose=f"taken before the downgrade to {ctx.state['downgrade_to']}")
    except StepFailed as exc:
        raise StepFailed(
            f"the backup before the downgrade failed: {exc}. The downgrade did not run; "
            f"{ctx.target}'s database is unchanged."
        ) from None
    ctx.did(f"took backup {backup.id} before the downgrade")
    ctx.progress(1.0, backup.id)


def verify_first(ctx: JobContext) -> None:
    """The backups area's quick verification of the backup just taken; the downgrade runs only if it passes."""
    backup_id = ctx.state.get("backup")
    if not backup_id:
        ctx.skip("no backup was taken")
    setup = backup_steps.setup_for(ctx)
    try:
        with steps.adapter_errors(ctx):
            detail = backup_steps.verify_and_record(setup, setup.catalog.get(backup_id), ctx)
    except StepFailed as exc:
        raise StepFailed(
            f"the backup {backup_id} taken before the downgrade failed its verification: {exc}. "
            f"The downgrade did not run; {ctx.target}'s database is unchanged."
        ) from None
    ctx.log(f"backup {backup_id} verified ({detail})")
    ctx.log(f"backup {backup_id} taken before the downgrade; {RESTORE_HINT}")
    ctx.progress(1.0, "verified")


def backup_note(ctx: JobContext) -> str:
    """The sentence a job's result ends with when it took a backup first; "" when it did not."""
    backup_id = ctx.state.get("backup")
    return f" Backup {backup_id} taken before the downgrade; {RESTORE_HINT}." if backup_id else ""
