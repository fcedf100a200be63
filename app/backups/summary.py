"""The backups area on the target page: its overview line and its kind of timeline rows."""

from __future__ import annotations

from app.backups.setup import catalog_of
from app.backups.status import ago, freshness
from app.targetpage.summaries import register_summary
from app.targetpage.timeline import Kind, register_kind
from app.targets.target import Target

KIND = register_kind(
    Kind(
        "backups",
        "Backups and restores",
        actions=("backups.",),
        # backup_copy too: the scheduler backs up a restore copy before it drops it, and a person filtering for
        # backups must see that job beside the cleanup it made possible.
        runbooks=("backup", "backup_copy", "verify_backup", "restore_backup", "undo_restore", "cleanup_restores"),
        order=50,
    )
)


@register_summary
def backups_line(target: Target) -> list[tuple[str, str, str]]:
    """The newest verified backup's age against the RPO: red when older, so data loss risk is seen at once."""
    config = target.config.backups
    if config is None:
        return []
    fresh = freshness(catalog_of(target).backups(), config.rpo_minutes)
    rpo = f" (RPO {config.rpo_minutes} min)" if config.rpo_minutes else ""
    if fresh.age_unknown:  # not "0 min ago": its age is unknown, so it vouches for no RPO
        text = f"newest verified {fresh.future_verified.id} is {fresh.future_note}{rpo}"
    elif fresh.newest_verified is None:
        return [("Backups", "no verified backup yet", "bad" if fresh.rpo else "warn")]
    else:
        if fresh.late:  # said in words too, not only by the badge's red: "7 min ago (RPO 5 min)" left the sum to do
            rpo = f", older than the RPO of {config.rpo_minutes} min"
        text = f"newest verified {ago(fresh.age)} ago{rpo}: {fresh.newest_verified.id}"
        if fresh.future_verified is not None:  # apart: it hides no real recent one, but a clock is wrong
            text += f"; {fresh.future_verified.id} is {fresh.future_note}"
    if fresh.last_restore_tested is not None:
        text += f"; last restore-tested: {fresh.last_restore_tested.id}"
    status = "bad" if fresh.late and not fresh.age_unknown else "warn" if fresh.future_note else "ok"
    return [("Backups", text, status)]
