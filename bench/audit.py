"""Benchmark Rewind's audit log at scale: `flask rewind audit verify` and the /audit page.

    python bench/audit.py --rows 1000000 [--postgres]

Builds a fresh ops database migrated with Rewind's own migrations (a SQLite
file in a temporary directory, or a throwaway PostgreSQL server with
--postgres), fills it with N audit events that form a valid hash chain, then
measures:

* verify_s: wall time of the real `flask rewind audit verify --head ID:HASH`
  command (run as a subprocess, Python start-up included) over the whole chain;
* page_p95_ms: 95th percentile of /audit requests through the real app and a
  signed-in test client: newest first, filtered by action prefix, exact
  action, outcome and actor, each also deep in the table through keyset
  cursors (`before=`) and by following the "Older" link. Per-kind p50/p95 and
  the first page (no cursor) of each kind are printed too: the overall p95 can
  hide one slow kind.

On PostgreSQL the table is ANALYZEd after the fill, as autovacuum would have
done long before a real log reached that size; SQLite gets no statistics,
since Rewind never runs ANALYZE there.

Also printed (stderr): the audit page's chain badge (`/audit/chain`), which
checks only rows after the mark the full verify sealed, and one bounded
catch-up step of it with no mark.

Targets at a million rows: verify under 5 s, page p95 under 50 ms.

The last line on stdout is the figure line, e.g.
`rows=1000000 verify_s=6.1 page_p95_ms=18.0`; progress and details go to stderr.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from flask import Flask  # noqa: E402
from sqlalchemy import text, update  # noqa: E402

from app.audit import chain  # noqa: E402
from app.audit.models import AuditEvent, AuditHead  # noqa: E402
from app.auth.roles import Role  # noqa: E402
from app.extensions import db  # noqa: E402
from tests.support.apps import TEST_KEYS, add_user, build_app, login, migrate  # noqa: E402
from tests.support.postgres import TempPostgres  # noqa: E402

VERIFY_TARGET_S = 5.0
PAGE_P95_TARGET_MS = 50.0
BATCH = 20_000
ROUNDS = 4  # each round requests every page kind from three starting points
FOLLOW_OLDER = 3  # "Older" links followed from each starting point
START = datetime(2025, 1, 6, 7, 30)

# Action names and their share of the log, roughly what a busy console writes.
ACTIONS: dict[str, float] = {
    "auth.login": 24,
    "auth.logout": 10,
    "auth.expired": 4,
    "auth.denied": 3,
    "auth.lockout": 0.3,
    "auth.csrf_refused": 0.2,
    "user.create": 0.2,
    "user.update": 0.3,
    "job.queued": 12,
    "job.start": 12,
    "job.succeeded": 10.5,
    "job.failed": 1.5,
    "flag.toggle": 6,
    "config.update": 3,
    "deploy.start": 4,
    "deploy.finish": 4,
    "backup.create": 2,
    "backup.restore": 0.5,
    "migration.apply": 1,
}
JOB_ACTIONS = {"job.queued", "job.start", "job.succeeded", "job.failed"}
TARGETED = {"flag.toggle", "config.update", "deploy.start", "deploy.finish", "backup.create", "backup.restore"}
TARGETS = ("production", "staging")
HUMANS = (
    "alice", "bob", "chen", "dmitri", "eva", "farah", "gus", "hana", "ivan", "jo",
    "kofi", "lena", "mateo", "nina", "olu", "priya", "quinn", "rafael", "sofia", "zoë",
)  # fmt: skip
ACTOR_FILTER = "dmitri"  # the actor the actor-filter pages ask for (about 4% of people's events)
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
)
OLDER_LINK = re.compile(r'<a rel="next" href="([^"]+)"')


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the ops database --------------------------------------------------------------------------------------------


@contextmanager
def ops_database(root: Path, postgres: bool) -> Iterator[str]:
    """A URL for an empty database; with --postgres, on a server started here and stopped afterwards."""
    if not postgres:
        yield f"sqlite:///{root / 'rewind.db'}"
        return
    log("starting a throwaway PostgreSQL server")
    server = TempPostgres().start()
    try:
        yield server.create_database("rewind_bench")
    finally:
        server.stop()
        log("stopped PostgreSQL")


# --- filling the chain -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    id: int | None
    name: str


def actors() -> list[tuple[Actor, float]]:
    """Twenty people (made-up account ids) with a long-tailed share of the work."""
    return [(Actor(i + 2, name), 1.0 / (1 + i % 10)) for i, name in enumerate(HUMANS)]


def event_fields(rng: random.Random, action: str, person: Actor) -> dict:
    """Actor, target, details and outcome of one event, consistent with its action."""
    actor, target, outcome, details = person, None, "ok", {}
    if action in JOB_ACTIONS:
        actor = Actor(None, "system") if action != "job.queued" else person
        details = {"job": rng.randint(1, 90_000), "kind": rng.choice(("backup", "restore", "migrate", "deploy"))}
        target = rng.choice(TARGETS)
        outcome = "failed" if action == "job.failed" else "ok"
    elif action in TARGETED:
        target = rng.choice(TARGETS)
        details = {"ref": f"{rng.getrandbits(28):07x}"}
        if action == "flag.toggle":
            details = {"flag": f"feature_{rng.randint(1, 40)}", "on": rng.random() < 0.5}
        if action in ("backup.restore", "deploy.finish") and rng.random() < 0.08:
            outcome, details = "failed", {**details, "error": "exit status 1"}
    elif action == "auth.login" and rng.random() < 0.07:
        actor = Actor(None, rng.choice((person.name, "admin", "root", "test")))
        outcome, details = "failed", {"reason": rng.choice(("wrong password", "unknown user"))}
    elif action in ("auth.denied", "auth.lockout", "auth.csrf_refused"):
        outcome = "denied"
        details = {"method": "POST", "path": rng.choice(("/flags", "/backups/restore", "/users")), "role": "viewer"}
        target = rng.choice((*TARGETS, None))
    elif action.startswith("user."):
        details = {"name": f"user{rng.randint(1, 500)}", "role": rng.choice(("viewer", "operator", "admin"))}
    elif action == "auth.expired":
        details = {"idle_minutes": 30}
    return {"actor": actor, "target": target, "details": chain.canonical_details(details), "outcome": outcome}


def chained_rows(key: bytes, rows: int, seed: int = 2025) -> Iterator[list[dict]]:
    """Batches of audit_event rows 1..rows, each linked to the one before and hashed with the app's key."""
    rng = random.Random(seed)
    action_names, action_weights = list(ACTIONS), list(ACTIONS.values())
    people, people_weights = zip(*actors(), strict=True)
    ts, prev = START, chain.GENESIS
    for first in range(1, rows + 1, BATCH):
        count = min(BATCH, rows - first + 1)
        batch = []
        picked_actions = rng.choices(action_names, action_weights, k=count)
        picks = zip(picked_actions, rng.choices(people, people_weights, k=count), strict=True)
        for row_id, (action, person) in enumerate(picks, start=first):
            ts += timedelta(microseconds=rng.randint(100_000, 30_000_000))
            fields = event_fields(rng, action, person)
            system = fields["actor"].id is None and fields["actor"].name == "system"
            values = (
                row_id,
                ts,
                fields["actor"].id,
                fields["actor"].name,
                action,
                fields["target"],
                fields["details"],
                fields["outcome"],
                None if system else f"10.20.{rng.randint(0, 15)}.{rng.randint(1, 254)}",
                None if system else rng.choice(AGENTS),
                prev,
            )
            prev = chain.row_hash(key, values)
            batch.append({**dict(zip(chain.FIELDS, values, strict=True)), "hash": prev})
        yield batch


def fill(app: Flask, rows: int) -> chain.Head:
    """Bulk-insert the chain in big batches and move the head row to its end, so the app can keep appending."""
    key = app.config["REWIND_AUDIT_KEY"]
    table = AuditEvent.__table__
    head = chain.Head(0, chain.GENESIS)
    started = time.perf_counter()
    with app.app_context():
        for batch in chained_rows(key, rows):
            with db.engine.begin() as conn:
                conn.execute(table.insert(), batch)
            head = chain.Head(batch[-1]["id"], batch[-1]["hash"])
            if head.id % 100_000 < BATCH or head.id == rows:
                elapsed = time.perf_counter() - started
                log(f"  filled {head.id:>9,} / {rows:,} rows  ({elapsed:6.1f} s, {head.id / elapsed:,.0f} rows/s)")
        with db.engine.begin() as conn:
            conn.execute(update(AuditHead).where(AuditHead.id == 1).values(last_id=head.id, last_hash=head.hash))
            if db.engine.dialect.name == "postgresql":
                # What autovacuum would have done by the time a table grew this big.
                conn.execute(text("ANALYZE audit_event"))
        db.engine.dispose()
    return head


# --- verify ------------------------------------------------------------------------------------------------------


def time_verify(instance_dir: Path, url: str, head: chain.Head) -> float:
    """Wall time of `flask rewind audit verify --head ID:HASH`; it must exit 0 and have checked every row."""
    flask_cli = Path(sys.executable).parent / "flask"
    # The same keys as build_app(): the chain was filled with them, so the command must check with them too.
    env = {
        **os.environ,
        **TEST_KEYS,
        "FLASK_APP": "wsgi",
        "REWIND_INSTANCE_DIR": str(instance_dir),
        "REWIND_DATABASE_URL": url,
    }
    command = [str(flask_cli), "rewind", "audit", "verify", "--head", str(head)]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if result.returncode != 0 or f"{head.id} rows" not in result.stdout:
        raise SystemExit(f"audit verify failed (exit {result.returncode}): {result.stdout}{result.stderr}")
    log(f"  {result.stdout.strip()}")
    # CPU next to wall time: on a shared machine the gap is time spent waiting for a core.
    log(f"  verify used {cpu:.1f} s of CPU in {elapsed:.1f} s; load average {os.getloadavg()[0]:.1f}")
    return elapsed


# --- the audit page ----------------------------------------------------------------------------------------------


def page_kinds() -> dict[str, str]:
    """Query strings of the pages measured, by kind."""
    return {
        "newest": "",
        "action=auth": "action=auth",
        "action=job.start": "action=job.start",
        "outcome=denied": "outcome=denied",
        f"actor={ACTOR_FILTER}": f"actor={ACTOR_FILTER}",
    }


def get_page(client, url: str) -> tuple[float, str]:
    """One request: its time in ms and the page; anything but 200 stops the benchmark."""
    started = time.perf_counter()
    response = client.get(url)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}")
    return elapsed_ms, response.get_data(as_text=True)


def walk(client, url: str) -> tuple[list[float], int]:
    """Request a page, then follow its "Older" link FOLLOW_OLDER times: the timings and how many pages were empty."""
    timings, empty = [], 0
    for _ in range(FOLLOW_OLDER + 1):
        elapsed_ms, body = get_page(client, url)
        timings.append(elapsed_ms)
        empty += "No events match these filters." in body
        older = OLDER_LINK.search(body)
        if older is None:
            break
        url = html.unescape(older.group(1))
    return timings, empty


@dataclass
class PageTimings:
    """Milliseconds per page kind: every request, and the first pages (no cursor) on their own."""

    every: dict[str, list[float]]
    first: dict[str, list[float]]


def time_pages(app: Flask, rows: int) -> PageTimings:
    """Time the audit page by kind, walking from the top and from cursors near rows/2 and rows/10."""
    add_user(app, "bench-viewer", Role.VIEWER)
    client = app.test_client()
    if login(client, "bench-viewer").status_code != 302:
        raise SystemExit("could not sign in as bench-viewer")
    time_badge(app, client)
    starts = ("", f"before={rows // 2 + 17}", f"before={rows // 10 + 3}")
    kinds = page_kinds()
    for query in kinds.values():  # warm-up: templates, connection pool, database cache
        get_page(client, f"/audit?{query}")
    result = PageTimings({kind: [] for kind in kinds}, {kind: [] for kind in kinds})
    empty = 0
    for _ in range(ROUNDS):
        for kind, query in kinds.items():
            for start in starts:
                timings, no_rows = walk(client, "/audit?" + "&".join(p for p in (query, start) if p))
                result.every[kind] += timings
                if not start:
                    result.first[kind].append(timings[0])
                empty += no_rows
    if empty:
        log(f"  warning: {empty} page(s) had no rows")
    return result


def time_badge(app: Flask, client) -> None:
    """The chain badge after the full verify sealed its mark, then one catch-up step with the mark removed."""
    timings = [get_page(client, "/audit/chain")[0] for _ in range(20)]
    log(f"  chain badge after verify: p50={statistics.median(timings):.1f} ms  max={max(timings):.1f} ms")
    with app.app_context():
        db.session.execute(text("UPDATE audit_mark SET row_id = 0, seal = '' WHERE id = 1"))
        db.session.commit()
    elapsed_ms, body = get_page(client, "/audit/chain")
    if "still to check" not in body:
        raise SystemExit("the badge without a mark should check one bounded step, then ask again")
    log(f"  chain badge with no mark: one bounded step {elapsed_ms:.0f} ms")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def report_pages(timings: PageTimings) -> float:
    """Print p50/p95 per page kind (and the median first page); returns the p95 over all requests."""
    everything = [t for values in timings.every.values() for t in values]
    for kind, values in timings.every.items():
        log(
            f"  {kind:<18} n={len(values):>3}  p50={statistics.median(values):7.1f} ms"
            f"  p95={percentile(values, 95):7.1f} ms  max={max(values):7.1f} ms"
            f"  first page p50={statistics.median(timings.first[kind]):7.1f} ms"
        )
    overall = percentile(everything, 95)
    log(f"  {'all':<18} n={len(everything):>3}  p50={statistics.median(everything):7.1f} ms  p95={overall:7.1f} ms")
    slow = [kind for kind, values in timings.every.items() if percentile(values, 95) > PAGE_P95_TARGET_MS]
    if slow:
        log(f"  warning: p95 over {PAGE_P95_TARGET_MS:.0f} ms for {', '.join(slow)} (hidden in the overall p95)")
    return overall


def database_version(app: Flask) -> str:
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            return "PostgreSQL " + db.session.scalar(text("SHOW server_version"))
        return "SQLite " + db.session.scalar(text("SELECT sqlite_version()"))


# --- main --------------------------------------------------------------------------------------------------------


def run(rows: int, postgres: bool, root: Path) -> tuple[float, float]:
    instance_dir = root / "instance"
    with ops_database(root, postgres) as url:
        app = build_app(instance_dir, url)
        migrate(app)
        log(f"filling {rows:,} audit events ({database_version(app)})")
        started = time.perf_counter()
        head = fill(app, rows)
        log(f"  fill took {time.perf_counter() - started:.1f} s; head {head}")

        log("timing flask rewind audit verify")
        verify_s = time_verify(instance_dir, url, head)
        log(f"  verify_s={verify_s:.1f} (target < {VERIFY_TARGET_S:.0f} s)")

        log("timing the audit page")
        page_p95 = report_pages(time_pages(app, rows))
        log(f"  page_p95_ms={page_p95:.1f} (target < {PAGE_P95_TARGET_MS:.0f} ms)")
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return verify_s, page_p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="audit events to fill the log with")
    parser.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL server instead of SQLite")
    args = parser.parse_args()
    if args.rows < 100:
        parser.error("--rows must be at least 100")

    root = Path(tempfile.mkdtemp(prefix="rewind-bench-"))
    try:
        verify_s, page_p95 = run(args.rows, args.postgres, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"rows={args.rows} verify_s={verify_s:.1f} page_p95_ms={page_p95:.1f}", flush=True)


if __name__ == "__main__":
    main()
