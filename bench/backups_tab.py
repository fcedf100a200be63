"""Benchmark the Backups tab on a big backup folder: time per page, HTML size, and how often the folder is read.

    python bench/backups_tab.py [--backups 500] [--unrelated 0] [--rounds 20]

Builds a Rewind app on a fresh SQLite ops database with one SQLite target,
`shop`, whose backup folder holds N backups Rewind made (each with its
manifest, verified) and M unrelated files (an application's logs kept in the
same folder). Signed in as an admin (whose rows carry the most forms), it
requests, R times each, in process through Flask's test client (no HTTP, so
the figures are the view's own): the tab's first page, its second page, the
target's overview, the dashboard and the /backups index. For each it
prints the median and slowest time, the page's size, and how many times one
request listed the folder and read manifests (counted by wrapping the
catalog's two reading functions).

The last line on stdout is the figure line, e.g.
`backups=500 unrelated=0 tab_p50_ms=60 tab_kib=119 tab_listings=1 overview_p50_ms=…`.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from app.auth.roles import Role  # noqa: E402
from app.backups.catalog import Catalog, manifest_path  # noqa: E402
from tests.support.apps import add_user, build_app, login, migrate  # noqa: E402

TARGETS = """\
[targets.shop.repo]
path = "{root}/repo"

[targets.shop.database]
url = "sqlite:///{root}/data/shop.db"

[targets.shop.backups]
dir = "{root}/backups"
gpg_home = "{root}/gnupg"
recipients = ["ops@example.invalid"]
rpo_minutes = 60
"""


def fill(folder: Path, backups: int, unrelated: int) -> None:
    folder.mkdir(parents=True)
    for i in range(backups):
        name = f"shop_2024{1 + i // 28 % 12:02d}{1 + i % 28:02d}_{i % 1000000:06d}.dump.gpg"
        (folder / name).write_bytes(b"\x85" + bytes(64))
        at = f"2024-{1 + i // 28 % 12:02d}-{1 + i % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00+00:00"
        manifest = {"file": name, "time": at, "made_by": "rewind", "format": "custom", "job_id": i + 1}
        manifest["verified"] = {"ok": True, "how": "quick", "at": at, "detail": "decrypts", "job_id": i + 1}
        manifest_path(folder / name).write_text(json.dumps(manifest))
    for i in range(unrelated):
        (folder / f"app-{i}.log").write_bytes(b"")


class Reads:
    """How often the folder is listed and manifests read, by wrapping the catalog's two reading functions."""

    def __init__(self) -> None:
        self.counted: Counter = Counter()
        scan, stored = Catalog._scan, Catalog._stored
        counted = self.counted

        def counting_scan(catalog):
            counted["listings"] += 1
            return scan(catalog)

        def counting_stored(path):
            counted["manifests"] += 1
            return stored(path)

        Catalog._scan = counting_scan
        Catalog._stored = staticmethod(counting_stored)


def measure(client, url: str, rounds: int, reads: Reads) -> dict:
    client.get(url)  # templates compiled, connections open
    times, size = [], 0
    for _ in range(rounds):
        reads.counted.clear()
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        size = len(response.data)
    return {
        "p50_ms": statistics.median(times),
        "max_ms": max(times),
        "kib": size / 1024,
        "listings": reads.counted["listings"],
        "manifests": reads.counted["manifests"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backups", type=int, default=500)
    parser.add_argument("--unrelated", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rw-bench-tab-") as tmp:
        root = Path(tmp)
        for folder in ("instance", "repo", "data", "gnupg"):
            (root / folder).mkdir()
        sqlite3.connect(root / "data" / "shop.db").close()
        (root / "instance" / "rewind.toml").write_text(TARGETS.format(root=root))
        fill(root / "backups", args.backups, args.unrelated)
        app = build_app(root / "instance", f"sqlite:///{root / 'ops.db'}")
        migrate(app)
        add_user(app, "admin", Role.ADMIN)
        client = app.test_client()
        assert login(client, "admin").status_code == 302
        reads = Reads()
        first = client.get("/targets/shop/backups").get_data(as_text=True)
        found = re.search(r'<a rel="next" href="([^"]+)"', first)
        older = html.unescape(found.group(1)) if found else None
        pages = {"tab": "/targets/shop/backups", "overview": "/targets/shop", "dashboard": "/", "index": "/backups"}
        if older:
            pages["tab_older"] = older
        results = {name: measure(client, url, args.rounds, reads) for name, url in pages.items()}
        print(f"{args.backups} backups, {args.unrelated} unrelated files, {args.rounds} rounds each (admin)")
        print(f"{'page':<10} {'p50 ms':>8} {'max ms':>8} {'KiB':>7} {'listings':>9} {'manifests':>10}")
        for name, r in results.items():
            print(
                f"{name:<10} {r['p50_ms']:>8.1f} {r['max_ms']:>8.1f} {r['kib']:>7.0f} {r['listings']:>9} "
                f"{r['manifests']:>10}"
            )
        tab, overview = results["tab"], results["overview"]
        print(
            f"backups={args.backups} unrelated={args.unrelated} tab_p50_ms={tab['p50_ms']:.0f} "
            f"tab_kib={tab['kib']:.0f} tab_listings={tab['listings']} overview_p50_ms={overview['p50_ms']:.0f} "
            f"overview_listings={overview['listings']}"
        )


if __name__ == "__main__":
    main()
