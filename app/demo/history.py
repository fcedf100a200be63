"""The demo app's git history: which real files each commit adds or changes.

`sampleapp/` is the app as the newest commit on main leaves it; `variants/`
holds the older versions of files that later commits change, one folder per
commit that wrote them, and the bad code. A commit lists repository paths
with the file each one comes from; `Create Date:` lines of migrations are
stamped with the commit's date when the history is written.

The history ends on `main` with five migrations (one adds a column holding
data, the newest only an index). BAD_COMMIT sits on a branch of its own and
breaks `/health` (it reads a column that does not exist), for rollback
drills; MIGRATION_COMMIT, on another branch, adds a migration and the code
using it, for schema drills (deploy upgrades; a reset behind it needs the
downgrade first). The flag `payments_v2` breaks `/health` too while it is
on, for flag drills.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLEAPP = HERE / "sampleapp"
VARIANTS = HERE / "variants"

BAD_BRANCH = "feature/rollback-drill-bad-code"
HEAD_REVISION = "e5a1b8c04d72"  # the newest migration on main (an index: its downgrade drops nothing)
PLANS_REVISION = "c3d9f27e4b10"  # adds users.plan, with a value in every row: its downgrade destroys data
REVISIONS = ("4c1d2e8f9a01", "7b3e5a90c2d4", "a92f6e1b3c58", PLANS_REVISION, HEAD_REVISION)  # oldest first

MIGRATION_BRANCH = "feature/last-seen"
MIGRATION_BRANCH_REVISION = "f8b2d6a39e15"  # adds users.last_seen_at, backfilled from the sessions


@dataclass(frozen=True)
class Commit:
    subject: str
    body: str
    files: dict[str, Path]  # repository path -> the real file whose contents it gets

    @property
    def message(self) -> str:
        return f"{self.subject}\n\n{self.body}\n" if self.body else f"{self.subject}\n"


def current(*paths: str) -> dict[str, Path]:
    """Files as they are in sampleapp/ (their newest version)."""
    return {path: SAMPLEAPP / path for path in paths}


def variant(folder: str, *paths: str) -> dict[str, Path]:
    """Older (or bad) versions of files, from variants/<folder>/."""
    return {path: VARIANTS / folder / path for path in paths}


HISTORY: tuple[Commit, ...] = (
    Commit(
        "Import the app into its own repository",
        "Home page and a /health check that asks the database; settings from .env.",
        {
            **current(".gitignore", "requirements.txt", "wsgi.py", "demoapp/db.py"),
            **variant("01-import", "README.md", "demoapp/__init__.py", "demoapp/config.py", "demoapp/views.py"),
        },
    ),
    Commit(
        "Add users and sessions",
        "Alembic migrations in migrations/, run with `flask db upgrade`.\n"
        "/health now counts users, so it fails when the schema is missing.",
        {
            **current(
                "migrations/alembic.ini",
                "migrations/env.py",
                "migrations/script.py.mako",
                "migrations/versions/4c1d2e8f9a01_add_users_and_sessions.py",
                "demoapp/cli.py",
            ),
            **variant("02-users-and-sessions", "demoapp/__init__.py", "demoapp/views.py", "README.md"),
        },
    ),
    Commit(
        "Add segments API",
        "GET /api/segments lists the audience segments.",
        {
            **current("migrations/versions/7b3e5a90c2d4_add_segments.py"),
            **variant("03-segments-api", "demoapp/views.py"),
        },
    ),
    Commit(
        "Add feature flags table",
        "Flags are read per request; new_checkout picks the checkout shown on the home page.",
        {
            **current("migrations/versions/a92f6e1b3c58_add_feature_flags_table.py", "demoapp/flags.py"),
            **variant("04-feature-flags", "demoapp/views.py"),
        },
    ),
    Commit("Show segment counts on /stats", "", variant("05-segment-counts", "demoapp/views.py")),
    Commit(
        "Tidy config loading",
        "One Settings object; quotes, `export` and comments in .env are understood,\n"
        "and a malformed line stops start-up with its line number.",
        {**current("demoapp/config.py"), **variant("06-tidy-config", "demoapp/__init__.py")},
    ),
    Commit(
        "Bump version to 1.4",
        "",
        {**current("demoapp/__init__.py"), **variant("07-version-1.4", "README.md")},
    ),
    Commit(
        "Put the new payments provider behind a flag",
        "payments_v2 routes payments through the new provider. Its client is not deployed yet,\n"
        "so /health reports unhealthy while the flag is on: keep it off until it is.",
        variant("08-payments-flag", "demoapp/views.py"),
    ),
    Commit(
        "Add plans to users",
        "users.plan, free unless set; /stats counts users per plan.",
        current("migrations/versions/c3d9f27e4b10_add_plans_to_users.py", "demoapp/views.py"),
    ),
    Commit(
        "Index sessions by expiry",
        "The nightly cleanup of expired sessions no longer scans the whole table.\nThe README lists the migrations.",
        current("migrations/versions/e5a1b8c04d72_index_sessions_by_expiry.py", "README.md"),
    ),
)

BAD_COMMIT = Commit(
    "Report the newest signup on /health",
    "Lets the uptime dashboard show when the last user signed up.",
    variant("bad-newest-signup", "demoapp/views.py"),
)

MIGRATION_COMMIT = Commit(
    "Add last seen to users",
    "users.last_seen_at, backfilled from each user's newest session; /stats counts the users seen this week.\n"
    "Deploying it upgrades the schema; rolling it back needs the downgrade first.",
    variant(
        "feature-last-seen",
        "migrations/versions/f8b2d6a39e15_add_last_seen_to_users.py",
        "demoapp/views.py",
    ),
)
