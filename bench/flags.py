"""Benchmark feature flags: concurrent toggles through Rewind served by gunicorn, lost updates, a 1,000-flag restore.

    python bench/flags.py [--flags 10000] [--threads 8] [--seconds 20] [--workers 2] [--rate 0]

Starts a throwaway PostgreSQL server (the test session's kind) holding both
Rewind's ops database and the application's database with a flags table of N
flags, then Rewind itself as production runs it: `flask db upgrade`, the
first admin, and gunicorn with gunicorn.conf.py (gthread), REWIND_WORKERS
worker processes on the PostgreSQL ops database (the README's scale-out
setting). Then, over HTTP on loopback:

* toggles: T client threads, each a signed-in operator on its own keep-alive
  connection (cookies, CSRF token, the htmx header, as the browser sends
  them), open the Flags tab once and then toggle flags for S seconds with no
  pause: a closed loop, whose times are bound by throughput (the mean is T
  divided by toggles a second). With --rate R they offer R toggles a second
  in all instead, each toggler on a fixed schedule, and a toggle's time
  counts from when it was due, so a server that falls behind cannot hide
  its queue (the log says which load ran). Half the toggles go to 20 hot
  flags so that people collide; each
  toggle carries the state its thread last saw, so a collision is refused
  (409) and shows the current state. p50/p99 are over every toggle request,
  refused ones included.
* lost_updates: every accepted toggle flips its flag once, so a flag's final
  state must be its first state flipped once per accepted toggle; each flag
  where that does not hold is a lost update. The audit log must also hold
  exactly one flags.toggle change per accepted toggle.
* restore_1000_s: a moment is noted, 1,000 flags that are on are turned off
  with the kill switch (one request), then the restore-as-of plan is shown
  and confirmed (two requests); the time of those two is reported, and all
  1,000 must be back on.

Client and server share the machine, so the CPU each used during the toggle
window is reported (the bench client, gunicorn's processes, PostgreSQL's),
with the machine's load average and how busy its cores were.

Targets: toggle p99 under 50 ms, restore of 1,000 under 2 s, no lost update.
The last line on stdout is the figure line, e.g.
`flags=10000 toggles=4123 toggle_p99_ms=18.0 lost_updates=0 restore_1000_s=0.4`.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import os
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402

from app.auth.roles import Role  # noqa: E402
from app.clock import utcnow  # noqa: E402
from tests.support.apps import add_user, build_app  # noqa: E402
from tests.support.postgres import TempPostgres  # noqa: E402
from tests.support.server import RewindServer  # noqa: E402

HOT = 20
RESTORED = 1000
SEEN = re.compile(r'name="seen" value="(on|off)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
TICK = os.sysconf("SC_CLK_TCK")
PASSWORD = secrets.token_urlsafe(16)


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


class Browser:
    """One person's browser: a keep-alive HTTP connection, the session cookie, the page's CSRF token."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}
        self.token = ""

    def request(self, method: str, path: str, data=None, headers: dict | None = None) -> tuple[int, str]:
        head = dict(headers or {})
        if self.cookies:
            head["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urllib.parse.urlencode({**data, "csrf_token": self.token} if isinstance(data, dict) else data, True)
            head["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=body, headers=head)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if method != "GET":  # a POST may have been done: never sent twice
                raise
            self.conn.close()  # the server closed an idle keep-alive connection: a GET is asked again
            self.conn.request(method, path, body=body, headers=head)
            response = self.conn.getresponse()
        text = response.read().decode()
        for cookie in response.headers.get_all("Set-Cookie") or ():
            name, _, rest = cookie.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        if match := CSRF_META.search(text):
            self.token = match.group(1)
        return response.status, text

    def sign_in(self, name: str) -> None:
        self.request("GET", "/login")
        status, _ = self.request("POST", "/login", {"name": name, "password": PASSWORD})
        if status != 302:
            raise SystemExit(f"could not sign in as {name} ({status})")


class Toggler(threading.Thread):
    def __init__(
        self, port: int, user: str, names: list[str], known: dict[str, bool], go, stop, seed: int, every_s: float
    ):
        super().__init__(daemon=True)
        self.browser = Browser(port)
        self.browser.sign_in(user)
        status, _ = self.browser.request("GET", f"/targets/bench/flags?q={names[seed % len(names)]}")
        if status != 200 or not self.browser.token:
            raise SystemExit(f"the Flags tab answered {status}")
        self.names, self.known, self.go, self.stop, self.rng = names, known, go, stop, random.Random(seed)
        self.every_s = every_s  # 0: a closed loop; else one toggle due every every_s
        self.offset_s = 0.0  # when the first is due, so that the togglers' schedules interleave
        self.timings: list[float] = []
        self.accepted: dict[str, int] = {}
        self.refused = 0
        self.errors: list[str] = []

    def run(self) -> None:
        self.go.wait()
        due = time.perf_counter() + self.offset_s
        while not self.stop.is_set():
            if self.every_s:  # the schedule, not a synchronisation: wait until the next toggle is due
                if self.stop.wait(max(due - time.perf_counter(), 0)):
                    break
                started, due = due, due + self.every_s
            else:
                started = time.perf_counter()
            name = self.rng.choice(self.names[:HOT]) if self.rng.random() < 0.5 else self.rng.choice(self.names)
            seen = self.known[name]
            status, body = self.browser.request(
                "POST",
                f"/targets/bench/flags/{name}/toggle",
                {"seen": "on" if seen else "off"},
                headers={"HX-Request": "true"},
            )
            self.timings.append(time.perf_counter() - started)
            if status == 200:
                self.accepted[name] = self.accepted.get(name, 0) + 1
            elif status == 409:
                self.refused += 1
            else:
                self.errors.append(f"{status}: {body[:200]}")
                continue
            if match := SEEN.search(body):
                self.known[name] = match.group(1) == "on"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _ticks(pid: int, children: bool = False) -> int:
    """CPU ticks (user + system) of a process, with its waited-for children's when asked."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(f) for f in fields[11 : 15 if children else 13])


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children, the exited ones included (they were waited for)."""
    return (_ticks(pid, children=True) + sum(_ticks(c) for c in _children(pid))) / TICK


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(flags: int, threads: int, seconds: float, workers: int, rate: float, root: Path) -> str:
    server = TempPostgres().start()
    rewind = None
    try:
        app_url = server.create_database("benchapp")
        ops_url = server.create_database("rewind_ops")
        initial = make_flags_table(app_url, flags, random.Random(13))
        instance = root / "instance"
        instance.mkdir()
        (instance / "rewind.toml").write_text(
            f'[targets.bench.repo]\npath = "{root / "repo"}"\n\n'
            f'[targets.bench.database]\nurl = "{app_url}"\nflags_table = "feature_flags"\n'
        )
        keys = {"REWIND_AUDIT_KEY": secrets.token_hex(32), "REWIND_SECRET_KEY": secrets.token_hex(32)}
        rewind = RewindServer(instance, ops_url, REWIND_WORKERS=str(workers), **keys).start()
        app = build_app(instance, ops_url, **keys)
        for i in range(threads):
            add_user(app, f"op{i}", Role.OPERATOR, PASSWORD)
        app.extensions["rewind"].bus.close()
        pace = (
            f", offering {rate:.0f} toggles/s in all on fixed schedules (times count from when each was due)"
            if rate
            else " in a closed loop"
        )
        log(f"{flags} flags; gunicorn (gthread) with {workers} worker(s); {threads} togglers for {seconds:.0f} s{pace}")

        names = sorted(initial)
        known = dict(initial)
        go, stop = threading.Event(), threading.Event()
        every = threads / rate if rate else 0.0
        togglers = [Toggler(rewind.port, f"op{i}", names, known, go, stop, i, every) for i in range(threads)]
        for i, t in enumerate(togglers):
            t.offset_s = every * i / threads
        for t in togglers:
            t.start()
        postmaster = int((Path(server.data) / "postmaster.pid").read_text().split()[0])
        load_before = load()
        cpu = (time.process_time(), tree_cpu_s(rewind.process.pid), tree_cpu_s(postmaster), machine_busy())
        started = time.perf_counter()
        go.set()
        time.sleep(seconds)  # the measured window: a fixed wall-clock run, not a synchronisation
        stop.set()
        for t in togglers:
            t.join()
        window = time.perf_counter() - started
        busy = machine_busy()
        client_s = time.process_time() - cpu[0]
        server_s = tree_cpu_s(rewind.process.pid) - cpu[1]
        pg_s = tree_cpu_s(postmaster) - cpu[2]
        machine = (busy[0] - cpu[3][0]) / max(busy[1] - cpu[3][1], 1) * 100

        errors = [e for t in togglers for e in t.errors]
        if errors:
            raise SystemExit(f"{len(errors)} toggle(s) failed unexpectedly, e.g. {errors[0]}")
        timings = [x for t in togglers for x in t.timings]
        accepted: dict[str, int] = {}
        for t in togglers:
            for name, n in t.accepted.items():
                accepted[name] = accepted.get(name, 0) + n
        final = table_states(app_url)
        lost = sum(1 for name in names if final[name] != (initial[name] ^ (accepted.get(name, 0) % 2 == 1)))
        with psycopg.connect(ops_url) as conn:
            rows = conn.execute(
                "SELECT details FROM audit_event WHERE action = 'flags.toggle' AND outcome = 'ok'"
            ).fetchall()
        audited = sum(len(json.loads(details)["changes"]) for (details,) in rows)
        total_accepted = sum(accepted.values())
        if audited != total_accepted:
            lost += abs(audited - total_accepted)
            log(f"audit rows disagree: {audited} audited changes for {total_accepted} accepted toggles")
        refused = sum(t.refused for t in togglers)
        p50, p99 = percentile(timings, 50) * 1000, percentile(timings, 99) * 1000
        log(
            f"toggles: {len(timings)} requests in {window:.1f} s ({len(timings) / window:.0f}/s), "
            f"{total_accepted} accepted, {refused} refused as stale; p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"mean {statistics.mean(timings) * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms"
        )
        per = 1000 / max(len(timings), 1)
        log(
            f"cpu in the window: bench client {client_s:.1f} s ({client_s * per:.2f} ms/toggle), "
            f"gunicorn {server_s:.1f} s ({server_s * per:.2f} ms/toggle), "
            f"postgres {pg_s:.1f} s ({pg_s * per:.2f} ms/toggle); machine {machine:.0f}% busy on "
            f"{os.cpu_count()} cores; load {load_before} before, {load()} after"
        )
        log(f"lost updates: {lost}")

        browser = Browser(rewind.port)
        browser.sign_in("op0")
        tab_ms = []
        for _ in range(5):  # the whole tab as a person opens it, after the toggles wrote their history
            began = time.perf_counter()
            status, _ = browser.request("GET", "/targets/bench/flags")
            tab_ms.append((time.perf_counter() - began) * 1000)
            assert status == 200, status
        log(f"the Flags tab (first {200} of {flags} flags): median {statistics.median(tab_ms):.0f} ms of 5 loads")
        browser.request("GET", "/targets/bench/flags?q=flag_0")
        moment = utcnow()
        victims = [name for name in names if final[name]][:RESTORED]
        status, _ = browser.request(
            "POST",
            "/targets/bench/flags/kill",
            [("flag", v) for v in victims]
            + [
                ("reason", "bench"),
                ("csrf_token", browser.token),
            ],
        )
        assert status == 303, status
        assert not any(table_states(app_url)[n] for n in victims), "the kill switch did not turn them off"
        started = time.perf_counter()
        status, page = browser.request("GET", f"/targets/bench/flags/restore?as_of={moment.isoformat()}")
        assert status == 200, status
        seen = html.unescape(re.search(r'name="seen" value="([^"]*)"', page).group(1))
        whole = re.search(r'name="fingerprint" value="([0-9a-f]+)"', page).group(1)
        status, _ = browser.request(
            "POST",
            "/targets/bench/flags/restore",
            {"as_of": moment.isoformat(), "seen": seen, "fingerprint": whole, "reason": "bench"},
        )
        restore_s = time.perf_counter() - started
        assert status == 303, status
        after = table_states(app_url)
        back = sum(1 for n in victims if after[n])
        if back != len(victims) or len(json.loads(seen)) != len(victims):
            raise SystemExit(f"restore put back {back} of {len(victims)} flags")
        log(f"restore as of {moment:%H:%M:%S}: {len(victims)} flags back on in {restore_s:.2f} s (plan + confirm)")
        return (
            f"flags={flags} toggles={len(timings)} toggle_p99_ms={p99:.1f} lost_updates={lost} "
            f"restore_{RESTORED}_s={restore_s:.1f}"
        )
    finally:
        if rewind is not None:
            rewind.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (REWIND_WORKERS)")
    parser.add_argument("--rate", type=float, default=0.0, help="toggles/s offered in all (0: a closed loop)")
    args = parser.parse_args()
    if args.flags < RESTORED * 2 + HOT:
        parser.error(f"--flags: at least {RESTORED * 2 + HOT}, so {RESTORED} flags can be on for the restore")
    root = Path(tempfile.mkdtemp(prefix="rewind-bench-flags-"))
    try:
        print(run(args.flags, args.threads, args.seconds, args.workers, args.rate, root), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
