"""A page reads the backup folder once: one listing, one read of each manifest, whatever it shows of them.

The counters wrap the catalog's real reading functions (the folder and the files are real); they only count.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from app.auth.roles import Role
from app.backups.catalog import Catalog, manifest_path
from tests.backups.test_views import shop  # noqa: F401 - shop: the fixture

MANY = 50
# Every test: a SQLite target "shop" whose backup folder holds one backup, OLD (tests/backups/test_views).
pytestmark = pytest.mark.usefixtures("shop")


@pytest.fixture
def reads(monkeypatch) -> Counter:
    """How many times the folder was listed and manifests read since the last clear()."""
    counted: Counter = Counter()
    scan, stored = Catalog._scan, Catalog._stored

    def counting_scan(self):
        counted["listings"] += 1
        return scan(self)

    def counting_stored(path):
        counted["manifests"] += 1
        return stored(path)

    monkeypatch.setattr(Catalog, "_scan", counting_scan)
    monkeypatch.setattr(Catalog, "_stored", staticmethod(counting_stored))
    return counted


def _own_backups(folder, count: int) -> list[str]:
    names = []
    for i in range(count):
        name = f"shop_20240101_{i:06d}.dump.gpg"
        (folder / name).write_bytes(b"\x85x")
        manifest = {"file": name, "time": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00", "made_by": "rewind"}
        manifest_path(folder / name).write_text(json.dumps(manifest | {"format": "custom"}))
        names.append(name)
    return names


@pytest.mark.parametrize("url", ["/targets/shop/backups", "/targets/shop", "/", "/backups"])
def test_a_page_lists_the_folder_once_and_reads_each_manifest_once(as_role, tmp_path, reads, url):
    names = _own_backups(tmp_path / "backups", MANY)
    client = as_role(Role.VIEWER)
    reads.clear()
    page = client.get(url)
    assert page.status_code == 200
    assert reads == Counter(listings=1, manifests=MANY + 1), reads  # + OLD, the fixture's own backup
    if url == "/targets/shop/backups":  # what the single reading found is all shown
        text = page.get_data(as_text=True).replace("<wbr>", "")
        assert all(name in text for name in names)


def test_the_tab_shows_the_folder_as_it_is_now_not_as_a_previous_request_read_it(as_role, tmp_path):
    client = as_role(Role.VIEWER)
    (name,) = _own_backups(tmp_path / "backups", 1)
    assert name in client.get("/targets/shop/backups").get_data(as_text=True).replace("<wbr>", "")
    (tmp_path / "backups" / name).unlink()
    manifest_path(tmp_path / "backups" / name).unlink()
    assert name not in client.get("/targets/shop/backups").get_data(as_text=True).replace("<wbr>", "")
