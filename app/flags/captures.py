"""The flags area's part of every checkpoint: each flag's state, so the whole table can be put back."""

from __future__ import annotations

from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError

from app.audit.models import AuditHead
from app.checkpoints.captures import Capture, register
from app.extensions import db
from app.targets.errors import TargetError
from app.targets.flags import FlagTable
from app.targets.target import Target

THROUGH = "through_audit"  # sorts after "states": restore._HOLDS_STATES finds a capture by its text
HEAD_WAIT_S = 10

_HOLD_HEAD = update(AuditHead).where(AuditHead.id == 1).values(last_id=AuditHead.last_id).returning(AuditHead.last_id)


class AuditBusy(TargetError):
    def __init__(self) -> None:
        super().__init__(
            "the audit log stayed busy while the flags were being captured, so they were not",
            fix="take the checkpoint again",
        )


def snapshot(table: FlagTable) -> dict:
    """Every flag's state, and the id of the last audit row whose change the states include (`through_audit`).

    A flag write takes its audit row's place in the chain (the chain's head lock) while the flag's row is locked,
    and holds it until that row commits, after the flag's commit. Reading the flags while holding that head lock
    (on a connection of its own, so only for the length of the read) means every audited change up to the head's
    id is in the states and none after it: a restore as of this checkpoint replays exactly the rows after it,
    whatever their times.
    """
    with db.engine.connect() as conn:
        try:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"SET LOCAL lock_timeout = '{HEAD_WAIT_S}s'"))
            through = conn.execute(_HOLD_HEAD).scalar_one()
        except OperationalError:
            raise AuditBusy() from None
        try:
            states = table.states()
        finally:
            conn.rollback()  # changes nothing: only releases the head
    return {"states": states, THROUGH: through}


def _take(target: Target) -> dict | None:
    table = target.flags()
    if table is None:
        return None
    return snapshot(table)


def _describe(value: dict) -> str:
    states = value.get("states", {})
    return f"{len(states)} flags, {sum(states.values())} on"


FLAGS = register(Capture("flags", "Flags", _take, _describe))
