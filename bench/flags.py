"""Benchmark feature flags: concurrent toggles through the real app, lost updates, and a 1,000-flag restore.

    python bench/flags.py [--flags 10000] [--threads 8] [--seconds 20]

Starts a throwaway PostgreSQL server holding both Rewind's ops database
(migrated with Rewind's own migrations) and the application's database with
a flags table of N flags. Then:

* toggles: T threads, each a signed-in operator (Flask test client, the real
  app, CSRF and audit included), toggle flags for S seconds. Half the
  toggles go to 20 hot flags so that people collide; each toggle carries the
  state its thread last saw, so a collision is refused (409) and shows the
  current state. p50/p99 are over every toggle request, refused ones
  included.
* lost_updates: every accepted toggle flips its flag once, so a flag's final
  state must be its first state flipped once per accepted toggle; each flag
  where that does not hold is a lost update. The audit log must also hold
  exactly one flags.toggle change per accepted toggle.
* restore_1000_s: a moment is noted, 1,000 flags that are on are turned off
  with the kill switch (one request), then the restore-as-of plan is shown
  and confirmed (two requests); the time of those two is reported, and all
  1,000 must be back on.

Targets: toggle p99 under 50 ms, restore of 1,000 under 2 s, no lost update.
The last line on stdout is the figure line, e.g.
`flags=10000 toggles=4123 toggle_p99_ms=18.0 lost_updates=0 restore_1000_s=0.4`.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402
from sqlalchemy import select  # noqa: E402

from app.audit.models import AuditEvent  # noqa: E402
from app.auth.roles import Role  # noqa: E402
from app.clock import utcnow  # noqa: E402
from app.extensions import db  # noqa: E402
from tests.support.apps import add_user, build_app, csrf_token, login, migrate  # noqa: E402
from tests.support.postgres import TempPostgres  # noqa: E402

HOT = 20
RESTORED = 1000
SEEN = re.compile(r'name="seen" value="(on|off)"')


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_flags_table(url: str, count: int, rng: random.Random) -> dict[str, bool]:
    states = {f"flag_{i:05d}": rng.random() < 0.5 for i in range(count)}
    with psycopg.connect(url) as conn:
        conn.execute(
            """CREATE TABLE feature_flags (
                name VARCHAR(80) PRIMARY KEY,
                enabled BOOLEAN NOT NULL DEFAULT false,
                description TEXT NOT NULL DEFAULT '',
                updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"""
        )
        with conn.cursor().copy("COPY feature_flags (name, enabled, description) FROM STDIN") as copy:
            for name, on in states.items():
                copy.write_row((name, on, f"Benchmark flag {name}"))
        conn.execute("ANALYZE feature_flags")
    return states


def table_states(url: str) -> dict[str, bool]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT name, enabled FROM feature_flags").fetchall())


def signed_in(app, name: str):
    client = app.test_client()
    if login(client, name).status_code != 302:
        raise SystemExit(f"could not sign in as {name}")
    return client, csrf_token(client)


class Toggler(threading.Thread):
    def __init__(self, app, user: str, names: list[str], known: dict[str, bool], stop: threading.Event, seed: int):
        super().__init__(daemon=True)
        self.client, self.token = signed_in(app, user)
        self.names, self.known, self.stop, self.rng = names, known, stop, random.Random(seed)
        self.timings: list[float] = []
        self.accepted: dict[str, int] = {}
        self.refused = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            name = self.rng.choice(self.names[:HOT]) if self.rng.random() < 0.5 else self.rng.choice(self.names)
            seen = self.known[name]
            started = time.perf_counter()
            response = self.client.post(
                f"/targets/bench/flags/{name}/toggle",
                data={"seen": "on" if seen else "off", "csrf_token": self.token},
                headers={"HX-Request": "true"},
            )
            self.timings.append(time.perf_counter() - started)
            body = response.get_data(as_text=True)
            if response.status_code == 200:
                self.accepted[name] = self.accepted.get(name, 0) + 1
            elif response.status_code == 409:
                self.refused += 1
            else:
                self.errors.append(f"{response.status_code}: {body[:200]}")
                continue
            if match := SEEN.search(body):
                self.known[name] = match.group(1) == "on"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run(flags: int, threads: int, seconds: float, root: Path) -> str:
    server = TempPostgres().start()
    try:
        app_url = server.create_database("benchapp")
        initial = make_flags_table(app_url, flags, random.Random(13))
        instance = root / "instance"
        instance.mkdir()
        (instance / "rewind.toml").write_text(
            f'[targets.bench.repo]\npath = "{root / "repo"}"\n\n'
            f'[targets.bench.database]\nurl = "{app_url}"\nflags_table = "feature_flags"\n'
        )
        app = build_app(instance, server.create_database("rewind_ops"))
        migrate(app)
        for i in range(threads):
            add_user(app, f"op{i}", Role.OPERATOR)
        log(f"{flags} flags; {threads} togglers for {seconds:.0f} s")

        names = sorted(initial)
        known = dict(initial)
        stop = threading.Event()
        workers = [Toggler(app, f"op{i}", names, known, stop, seed=i) for i in range(threads)]
        for w in workers:
            w.start()
        time.sleep(seconds)  # the measured window: a fixed wall-clock run, not a synchronisation
        stop.set()
        for w in workers:
            w.join()

        errors = [e for w in workers for e in w.errors]
        if errors:
            raise SystemExit(f"{len(errors)} toggle(s) failed unexpectedly, e.g. {errors[0]}")
        timings = [t for w in workers for t in w.timings]
        accepted: dict[str, int] = {}
        for w in workers:
            for name, n in w.accepted.items():
                accepted[name] = accepted.get(name, 0) + n
        final = table_states(app_url)
        lost = sum(1 for name in names if final[name] != (initial[name] ^ (accepted.get(name, 0) % 2 == 1)))
        with app.app_context():
            audited = 0
            for row in db.session.scalars(
                select(AuditEvent.details).where(AuditEvent.action == "flags.toggle", AuditEvent.outcome == "ok")
            ):
                audited += len(json.loads(row)["changes"])
        total_accepted = sum(accepted.values())
        if audited != total_accepted:
            lost += abs(audited - total_accepted)
            log(f"audit rows disagree: {audited} audited changes for {total_accepted} accepted toggles")
        refused = sum(w.refused for w in workers)
        p50, p99 = percentile(timings, 50) * 1000, percentile(timings, 99) * 1000
        log(
            f"toggles: {len(timings)} requests, {total_accepted} accepted, {refused} refused as stale; "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, mean {statistics.mean(timings) * 1000:.1f} ms"
        )
        log(f"lost updates: {lost}")

        client, token = signed_in(app, "op0")
        moment = utcnow()
        victims = [name for name in names if final[name]][:RESTORED]
        response = client.post(
            "/targets/bench/flags/kill", data={"flag": victims, "reason": "bench", "csrf_token": token}
        )
        assert response.status_code == 303, response.status_code
        assert not any(table_states(app_url)[n] for n in victims), "the kill switch did not turn them off"
        started = time.perf_counter()
        page = client.get(f"/targets/bench/flags/restore?as_of={moment.isoformat()}").get_data(as_text=True)
        seen = html.unescape(re.search(r'name="seen" value="([^"]*)"', page).group(1))
        response = client.post(
            "/targets/bench/flags/restore",
            data={"as_of": moment.isoformat(), "seen": seen, "reason": "bench", "csrf_token": token},
        )
        restore_s = time.perf_counter() - started
        assert response.status_code == 303, response.status_code
        after = table_states(app_url)
        back = sum(1 for n in victims if after[n])
        if back != len(victims) or len(json.loads(seen)) != len(victims):
            raise SystemExit(f"restore put back {back} of {len(victims)} flags")
        log(f"restore as of {moment:%H:%M:%S}: {len(victims)} flags back on in {restore_s:.2f} s (plan + confirm)")
        with app.app_context():
            db.engine.dispose()
        app.extensions["rewind"].bus.close()
        return (
            f"flags={flags} toggles={len(timings)} toggle_p99_ms={p99:.1f} lost_updates={lost} "
            f"restore_{RESTORED}_s={restore_s:.1f}"
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.flags < RESTORED * 2 + HOT:
        parser.error(f"--flags: at least {RESTORED * 2 + HOT}, so {RESTORED} flags can be on for the restore")
    root = Path(tempfile.mkdtemp(prefix="rewind-bench-flags-"))
    try:
        print(run(args.flags, args.threads, args.seconds, root), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
