"""The Backups tab of a target: its catalog, the RPO line, and the buttons that start backup runbooks."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, render_template

from app.auth.guards import requires
from app.auth.roles import Role
from app.backups import summary  # noqa: F401 - registers its overview line and timeline kind
from app.backups.catalog import Catalog
from app.backups.restore import copies
from app.backups.setup import catalog_of, setup_of
from app.backups.status import ago, freshness
from app.backups.undo import undo_offer
from app.jobs import followups, service
from app.targetpage.tabs import Tab
from app.targetpage.tabs import register as register_tab
from app.targetpage.views import target_or_404
from app.targets import registry
from app.targets.errors import TargetError

bp = Blueprint("backups", __name__)
register_tab(Tab("backups", "Backups", "backups.catalog", order=30))
followups.register("restore_backup", undo_offer, "backups/_after_restore.html")


@bp.get("/backups")
@requires(Role.VIEWER)
def index():
    """Every target's newest verified backup against its RPO, linking to its Backups tab."""
    rows = []
    for config in registry.current().all():
        if config.backups is None:
            rows.append((config.name, None, "no backups configured"))
            continue
        try:
            found = Catalog(config.backups.dir).backups()
            rows.append((config.name, freshness(found, config.backups.rpo_minutes), None))
        except TargetError as exc:  # a folder Rewind's process may not read (NoAccess) says which and what to do
            rows.append((config.name, None, f"{exc.message} ({exc.fix})" if exc.fix else exc.message))
        except OSError as exc:
            rows.append((config.name, None, str(exc)))
    return render_template("backups/index.html", rows=rows, ago=ago)


@bp.get("/targets/<name>/backups")
@requires(Role.VIEWER)
def catalog(name: str):
    target = target_or_404(name)
    problem, backups, unlisted, kept, fresh, copies_problem = None, [], [], [], None, None
    missing, unfinished = False, 0
    try:
        listing = catalog_of(target).listing()  # the folder read once for the whole page
        missing, backups, unlisted = not listing.exists, listing.backups, listing.unlisted
        unfinished = len(listing.stale_partials)
        fresh = freshness(backups, target.config.backups.rpo_minutes)
    except TargetError as exc:
        problem = f"{exc.message}. {exc.fix}" if exc.fix else exc.message
    except OSError as exc:
        problem = str(exc)
    if problem is None:
        try:
            kept = copies(setup_of(target))
        except TargetError as exc:
            copies_problem = exc.message
    return render_template(
        "backups/catalog.html",
        target=target,
        problem=problem,
        missing=missing,
        backups=backups,
        unlisted=unlisted,
        copies=kept,
        unfinished=unfinished,
        copies_problem=copies_problem,
        fresh=fresh,
        ago=ago,
        parse_time=datetime.fromisoformat,
        busy=service.busy_job(name),
    )
