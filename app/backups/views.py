"""The Backups tab of a target: its catalog, the RPO line, and the buttons that start backup runbooks."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, render_template, request
from werkzeug.exceptions import BadRequest

from app.auth.guards import requires
from app.auth.roles import Role
from app.backups import summary  # noqa: F401 - registers its overview line and timeline kind
from app.backups.catalog import BACKUP_ID, CatalogError, NoAccess
from app.backups.expiry import backups_of_copies
from app.backups.preview import rolls_back
from app.backups.restore import being_filled, copies
from app.backups.setup import catalog_for, catalog_of, setup_of
from app.backups.status import ago, ahead_of, freshness, future_words, jobs_on_record
from app.backups.undo import swapped_since, undo_offer
from app.jobs import followups, service
from app.jobs.engine import current_targets, engine
from app.pagination import Page, keyset_slice
from app.targetpage.tabs import Tab
from app.targetpage.tabs import register as register_tab
from app.targetpage.views import target_or_404
from app.targets.errors import TargetError

bp = Blueprint("backups", __name__)
PAGE_SIZE = 50  # rows of the catalog per page: each row of an admin's page carries three forms
UNLISTED_SHOWN = 20  # files named in the "not listed" notice; the CLI names them all
register_tab(Tab("backups", "Backups", "backups.catalog", order=30))
followups.register("restore_backup", undo_offer, "backups/_after_restore.html")


@bp.get("/backups")
@requires(Role.VIEWER)
def index():
    """Every target's newest verified backup against its RPO, linking to its Backups tab."""
    rows = []
    for config in current_targets().all():
        if config.backups is None:
            rows.append((config.name, None, "no backups configured"))
            continue
        try:
            found = catalog_for(config).backups()
            rows.append((config.name, freshness(found, config.backups.rpo_minutes), None))
        except TargetError as exc:  # a folder Rewind's process may not read (NoAccess) says which and what to do
            rows.append((config.name, None, exc.in_words()))
        except OSError as exc:
            rows.append((config.name, None, str(exc)))
    return render_template("backups/index.html", rows=rows, ago=ago)


def _cursor(raw: str | None) -> tuple[datetime, str] | None:
    """The `before` of an older page: the time and name of the last backup shown ("<ISO time>~<name>")."""
    if not raw:
        return None
    when, _, backup_id = raw.partition("~")
    try:
        at = datetime.fromisoformat(when)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or not BACKUP_ID.fullmatch(backup_id):
        raise BadRequest(f"the page cursor must be a backup's time with its offset, ~, and its name; got {raw[:120]!r}")
    return at, backup_id


def cursor_text(key: tuple[datetime, str]) -> str:
    return f"{key[0].isoformat()}~{key[1]}"


@bp.get("/targets/<name>/backups")
@requires(Role.VIEWER)
def catalog(name: str):
    target = target_or_404(name)
    before = _cursor(request.args.get("before"))
    problem, backups, unlisted, kept, fresh, copies_problem = None, [], [], [], None, None
    missing, unfinished, page, on_record = False, 0, Page([], None), set()
    try:
        listing = catalog_of(target).listing()  # the folder read once for the whole page
        missing, backups, unlisted = not listing.exists, listing.backups, listing.unlisted
        unfinished = len(listing.stale_partials)
        fresh = freshness(backups, target.config.backups.rpo_minutes)  # of them all, whichever page is shown
        page = keyset_slice(backups, lambda b: b.key, before=before, limit=PAGE_SIZE)
        on_record = jobs_on_record(name, (b.job_id for b in page.items))
    except TargetError as exc:
        problem = exc.in_words()
    except OSError as exc:
        problem = str(exc)
    if problem is None:
        try:
            kept = copies(setup_of(target))
        except TargetError as exc:
            copies_problem = exc.message
    busy = service.busy_job(name)
    return render_template(
        "backups/catalog.html",
        target=target,
        problem=problem,
        missing=missing,
        backups=page.items,
        total=len(backups),
        page=page,
        before=before,
        cursor_text=cursor_text,
        on_record=on_record,
        unlisted=unlisted,
        unlisted_shown=UNLISTED_SHOWN,
        copies=kept,
        swapped_since=swapped_since(name, kept),
        copy_backups=backups_of_copies(backups),  # which backup holds each copy: of the whole folder, not the page
        unfinished=unfinished,
        copies_problem=copies_problem,
        fresh=fresh,
        ago=ago,
        ahead_of=ahead_of,
        future_words=future_words,
        parse_time=datetime.fromisoformat,
        busy=busy,
        filling=being_filled(busy.started_at if busy and busy.runbook == "restore_backup" else None, kept),
        unhealthy_now=_unhealthy_now(name),
    )


def _unhealthy_now(name: str) -> str | None:
    """Why the app failed its last health check, for the restore's question: a restore swaps back unless the app
    is healthy after it, so an app failing for another cause is best looked at first."""
    monitor = engine().started_health  # read, never started here: each web worker starts its own as it boots
    reading = monitor.reading(name) if monitor else None
    probe = reading.probe if reading else None
    return probe.reason if probe is not None and not probe.ok else None


@bp.get("/targets/<name>/backups/<backup>/rolls-back")
@requires(Role.ADMIN)  # scans live's key tables: asked by those who may restore
def rolls_back_fragment(name: str, backup: str):
    """What restoring this backup now would bring back and roll back, read from live when asked."""
    target = target_or_404(name)
    found, problem = None, None
    try:
        setup = setup_of(target)
        chosen = setup.catalog.get(backup)
    except NoAccess as exc:
        problem = exc.in_words()
    except CatalogError as exc:
        abort(404, description=exc.in_words())
    except TargetError as exc:
        problem = exc.in_words()
    if problem is None:
        try:
            found = rolls_back(setup, chosen)
        except TargetError as exc:
            problem = exc.in_words()
    return render_template("backups/_rolls_back.html", target=target, found=found, problem=problem)
