"""Benchmark Rewind's backup and safe restore against the raw tools and the written procedure.

    python bench/backup_restore.py [--size-mb 1024]

Everything runs for real in a temporary folder: a throwaway PostgreSQL
server (`tests.support.postgres.TempPostgres`), a database of about
--size-mb (two tables, one with a created_at column), a real GnuPG home, a
small HTTP app standing in for the target application (a git repository run
as a managed process, `tests.support.targets.make_code_target`), and Rewind
itself (SQLite ops database, its own job runner in this process). Measured:

* backup_ratio: the `create` step of Rewind's `backup` job over a raw
  `pg_dump -Fc | gpg -e` into a file (the raw figures are the best of two
  runs, the first of which also warms the caches) (the job's `verify` step, a full
  decrypt-and-list pass, is printed separately);
* restore_ratio: Rewind's whole `restore_backup` job (check: envelope and
  SHA-256 of the verified backup; checkpoint, scratch restore, compare, stop,
  swap, start and verify) over a raw `gpg -d | pg_restore` into an empty
  database: three of each, in turns (raw, Rewind, raw, Rewind, …) so both
  meet the same load, the best of each;
* downtime_s: the restore job from the start of its `stop` step to the end of
  its `start` step (the app answering healthy), the worst of the three;
* manual_downtime_s: the written procedure, all of it downtime: stop the app,
  `gpg -d` a plain-SQL backup to a file, dropdb, createdb, `psql -f`, start,
  healthy;
* peak_rss_mb: the largest resident set of this process (Rewind's web and
  job code) or of any child it ran (pg_dump, gpg, pg_restore, psql).

The last line on stdout is the figure line, e.g.
`size_mb=200 backup_ratio=1.04 restore_ratio=1.18 downtime_s=1.2 manual_downtime_s=6.3 peak_rss_mb=95`;
progress and details go to stderr.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402

from app.audit.store import Actor  # noqa: E402
from app.extensions import db  # noqa: E402
from app.jobs import runbook as runbooks  # noqa: E402
from app.jobs import service  # noqa: E402
from app.jobs.engine import current_targets, engine  # noqa: E402
from app.jobs.events import load_view  # noqa: E402
from app.jobs.models import Job  # noqa: E402
from app.targets.gpg import GpgHome  # noqa: E402
from tests.support.apps import build_app, migrate  # noqa: E402
from tests.support.postgres import TempPostgres  # noqa: E402
from tests.support.targets import make_code_target  # noqa: E402

RECIPIENT = "bench@example.invalid"
DBNAME = "shop"
JOB_LIMIT_S = 4 * 3600
FILL_BATCH_ROWS = 50_000
RAW_RUNS = 2
RESTORE_RUNS = 3  # raw and Rewind in turns, so both meet the same load; the best of each


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(url: str, size_mb: int) -> tuple[int, int]:
    """Rows until the database holds about size_mb; (rows, bytes)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "user" (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL)')
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, total int, note text)")
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('bench0001')")
        rows = 0
        while (conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]) < size_mb << 20:
            start = rows + 1
            end = rows + FILL_BATCH_ROWS
            conn.execute(
                'INSERT INTO "user" SELECT i, md5(i::text) || md5((i * 7)::text), '
                "now() - (i || ' seconds')::interval FROM generate_series(%s, %s) i",
                (start, end),
            )
            conn.execute(
                "INSERT INTO orders SELECT i, i, (i * 37) %% 10000, repeat(md5((i * 3)::text), 2) "
                "FROM generate_series(%s, %s) i",
                (start, end),
            )
            rows = end
        conn.execute("VACUUM ANALYZE")
        return rows * 2, conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def timed(argv_stages: list[list[str]], env: dict, stdin=None, stdout=None) -> float:
    """A pipeline of the raw tools, as a person would type it; seconds."""
    started = time.perf_counter()
    procs = []
    prev = stdin
    for i, argv in enumerate(argv_stages):
        last = i == len(argv_stages) - 1
        proc = subprocess.Popen(argv, stdin=prev, stdout=stdout if last else subprocess.PIPE, env=env)
        if prev is not None and prev not in (stdin,):
            prev.close()
        prev = proc.stdout
        procs.append(proc)
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{argv_stages} failed: {codes}")
    return time.perf_counter() - started


def run_job(app, name: str, **params) -> tuple[Job, object]:
    with app.app_context():
        book = runbooks.get(name)
        parsed = book.parse_params({k: str(v) for k, v in params.items()}, "shop")
        job_id = service.enqueue(book, "shop", parsed, Actor(None, "bench")).id
    ends = time.monotonic() + JOB_LIMIT_S
    while time.monotonic() < ends:
        with app.app_context():
            job = db.session.get(Job, job_id)
            if job.job_state.is_final:
                view = load_view(job)
                db.session.expunge(job)
                if job.state != "succeeded":
                    raise SystemExit(f"{name} job #{job_id} {job.state}: {job.result}")
                return job, view
        time.sleep(0.1)
    raise SystemExit(f"{name} job #{job_id} did not finish within {JOB_LIMIT_S} s")


def span(view, first: int, last: int) -> float:
    return (view.steps[last].finished - view.steps[first].started).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rwbench-", dir="/tmp"))
    server = TempPostgres().start()
    target = None
    app = None
    try:
        url = server.create_database(DBNAME)
        log(f"filling {DBNAME} to about {args.size_mb} MB… (load {load()})")
        rows, size = fill(url, args.size_mb)
        log(f"{rows} rows, {size / 2**20:.0f} MB")

        home = GpgHome.create(root / "g")
        home.generate_key("Bench", RECIPIENT)
        code = make_code_target(root / "t", "shop")
        backups = root / "backups"
        instance = root / "instance"
        instance.mkdir()
        (instance / "rewind.toml").write_text(
            code.toml(health_timeout=60)
            + f"""
[targets.shop.database]
url = "{url}"
key_tables = ["user", "orders"]
pg_bin = "{server.bin}"

[targets.shop.backups]
dir = "{backups}"
gpg_home = "{home.home}"
recipients = ["{RECIPIENT}"]
reserve_mb = 1
"""
        )
        app = build_app(instance, f"sqlite:///{root / 'rewind.db'}")
        migrate(app)
        with app.app_context():
            target = current_targets().open("shop")
            target.process().start()
            if not target.health().wait_healthy().ok:
                raise SystemExit("the stand-in app did not come up")
        runner = engine(app).start_runner()
        env = dict(os.environ)
        conn_args = ["--host", "127.0.0.1", "--port", str(server.port), "--username", server.user]
        gpg = ["gpg", "--batch", "--quiet", "--homedir", str(home.home), "--trust-model", "always"]

        # 1. backup: raw, then Rewind's job
        raw_file = root / "raw.dump.gpg"
        raw_times = []
        for _ in range(RAW_RUNS):  # the best of a few: the first one also warms the caches
            with raw_file.open("wb") as out:
                raw_times.append(
                    timed(
                        [[str(server.bin / "pg_dump"), "-Fc", *conn_args, DBNAME], [*gpg, "-e", "-r", RECIPIENT]],
                        env,
                        stdout=out,
                    )
                )
        raw_backup = min(raw_times)
        log(f"raw pg_dump -Fc | gpg -e: {raw_backup:.2f} s ({raw_file.stat().st_size / 2**20:.0f} MB)")
        _, view = run_job(app, "backup")
        create_s = view.steps[0].duration_s
        log(f"Rewind backup: create {create_s:.2f} s, verify {view.steps[1].duration_s:.2f} s")
        backup_id = next(p.name for p in backups.glob("*.gpg"))

        # 2. restore: raw into an empty database and Rewind's job, in turns, the best of each
        raw_times, restores, downtimes = [], [], []
        for n in range(RESTORE_RUNS):
            server.create_database(f"raw_restore_{n}")
            with raw_file.open("rb") as source:
                raw_times.append(
                    timed(
                        [
                            [*gpg, "-d"],
                            [str(server.bin / "pg_restore"), "--no-owner", *conn_args, "-d", f"raw_restore_{n}"],
                        ],
                        env,
                        stdin=source,
                    )
                )
            timed([[str(server.bin / "dropdb"), *conn_args, f"raw_restore_{n}"]], env)
            log(f"raw gpg -d | pg_restore: {raw_times[-1]:.2f} s (load {load()})")
            _, view = run_job(app, "restore_backup", backup=backup_id)
            restores.append(span(view, 0, len(view.steps) - 1))
            downtimes.append(span(view, 4, 6))
            for step in view.steps:
                log(f"  {step.title}: {step.duration_s:.2f} s")
            for _, _, line in view.lines:
                if line.startswith("(restored rows of"):
                    log(f"  {line}")
            log(f"Rewind restore: {restores[-1]:.2f} s, downtime {downtimes[-1]:.2f} s (load {load()})")
        raw_restore, restore_s = min(raw_times), min(restores)
        downtime = max(downtimes)  # the worst seen: downtime is the figure a person plans for

        # 3. the written procedure: everything from stop to healthy is downtime
        plain = root / "backup_20200101_000000.sql.gpg"
        with plain.open("wb") as out:
            timed([[str(server.bin / "pg_dump"), *conn_args, DBNAME], [*gpg, "-e", "-r", RECIPIENT]], env, stdout=out)
        with app.app_context():
            control, health = target.process(), target.health()
            started = time.perf_counter()
            control.stop()
            decrypted = root / "restore.sql"
            with plain.open("rb") as source, decrypted.open("wb") as out:
                timed([[*gpg, "-d"]], env, stdin=source, stdout=out)
            timed([[str(server.bin / "dropdb"), *conn_args, "--force", DBNAME]], env)
            timed([[str(server.bin / "createdb"), *conn_args, DBNAME]], env)
            timed(
                [[str(server.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", *conn_args, "-f", str(decrypted), DBNAME]],
                env,
                stdout=subprocess.DEVNULL,
            )
            control.start()
            if not health.wait_healthy().ok:
                raise SystemExit("the stand-in app did not come back after the manual procedure")
            manual = time.perf_counter() - started
        log(f"written procedure: {manual:.2f} s of downtime (load {load()})")
        runner.stop(wait=True)

        peak = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        )
        ratios = f"backup_ratio={create_s / raw_backup:.2f} restore_ratio={restore_s / raw_restore:.2f}"
        print(
            f"size_mb={args.size_mb} {ratios} "
            f"downtime_s={downtime:.1f} manual_downtime_s={manual:.1f} peak_rss_mb={peak / 1024:.0f}",
            flush=True,
        )
    finally:
        if app is not None and target is not None:
            with app.app_context():
                target.process().stop()
        server.stop()
        home_dir = root / "g"
        if home_dir.exists():
            GpgHome(home_dir).stop_agent()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
