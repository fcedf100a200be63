"""What restoring a backup now would do to the live database's key tables: rows it brings back, rows it rolls back.

Read while a person decides (the Backups tab's "What it rolls back", `flask rewind backups rolls-back`): the
restore job reads the same again beside its restored copy, just before its swap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from app.backups.catalog import Backup, now_utc
from app.backups.restore import brought_back, live_is_gone, rolled_back
from app.backups.setup import BackupSetup
from app.backups.status import ahead_of, future_words


@dataclass(frozen=True)
class RollBack:
    backup: Backup
    counted_at: datetime
    live: dict[str, int | None]  # rows per key table now; None: the table is not in live
    newer: dict[str, int]  # rows written (added or changed) after the backup, for tables with a time column
    live_gone: bool = False  # the live database is not there: the restore makes it again (remake_live)
    ahead: timedelta | None = None  # the backup is dated this far in the future (a clock skew): its time tells nothing

    @property
    def untold_why(self) -> str:
        """Why the rows rolled back in `untold` tables cannot be told, in words."""
        if self.ahead is not None:
            return f"the backup is {future_words(self.ahead)}; its time cannot tell which rows came after it"
        return "no time column or count to tell"

    @cached_property
    def in_backup(self) -> dict[str, int | None]:
        """Rows per key table when Rewind made the backup (its manifest); empty for a file it did not make."""
        counts = self.backup.manifest.get("counts")
        return {t: counts.get(t) for t in self.live} if isinstance(counts, dict) else {}

    @cached_property  # read by every row of the page and each line of the CLI
    def lost(self) -> dict[str, int]:
        """At least how many rows of each key table the restore takes out of live (restore.rolled_back): stamped
        after the backup, or live's rows beyond the backup's count, whichever is more."""
        return rolled_back(self.live, self.in_backup, self.newer)

    @property
    def total(self) -> int:
        return sum(self.lost.values())

    @cached_property
    def regained(self) -> dict[str, int]:
        """At least how many rows of each key table the restore brings back (deleted since the backup)."""
        return brought_back(self.live, self.in_backup)

    @property
    def untold(self) -> list[str]:
        """Key tables in live for which neither a time column nor the counts tell how many rows are rolled back."""
        return [t for t, n in self.live.items() if n is not None and t not in self.lost]

    def lines(self) -> list[str]:
        """The counts as a table of text, for a terminal."""
        width = max([len(t) for t in self.live] + [5])
        made = self.in_backup
        rows = [f"{'table':<{width}}  {'in backup':>10}  {'live now':>10}  written after the backup"]
        for table, live in self.live.items():
            then = made.get(table)
            rows.append(
                f"{table:<{width}}  {'unknown' if then is None else then:>10}  "
                f"{'missing' if live is None else live:>10}  {self.lost.get(table, 'unknown')}"
            )
        return rows


def rolls_back(setup: BackupSetup, backup: Backup) -> RollBack:
    """One visit to live: its key tables' counts and their rows written after the backup (one scan per table).

    Raises TargetError when live cannot be read (a key table locked past the wait names the session)."""
    if live_is_gone(setup):  # nothing to read, nothing to lose: the restore makes it again
        return RollBack(backup, now_utc(), dict.fromkeys(setup.key_tables), {}, live_gone=True)
    now = now_utc()
    # Dated in the future (a clock is wrong here or where it was made), its time would put every row of live before
    # it: "no rows written after it" would be a guess, so no row is counted by its stamps, and those tables are untold.
    ahead = ahead_of(backup.time, now)
    found = setup.database.survey(setup.key_tables, None if ahead else backup.time)
    return RollBack(backup, now, found.counts, found.newer, ahead=ahead)
