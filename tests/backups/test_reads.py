"""A page reads the backup folder once: one listing, one read of each manifest, whatever it shows of them.

The counters wrap the catalog's real reading functions (the folder and the files are real); they only count.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter

import pytest

from app.auth.roles import Role
from app.backups.catalog import Catalog, manifest_path
from app.backups.views import PAGE_SIZE
from tests.backups.test_views import OLD, shop  # noqa: F401 - shop: the fixture

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


def _shown(page_text: str) -> list[str]:
    """The backup names of a page's rows, in order."""
    text = page_text.replace("<wbr>", "")
    return re.findall(r'<tr id="backup-\d+">\s*<td><code class="file">([^<]+)</code>', text)


def _older(page_text: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)">Older', page_text)
    return html.unescape(found.group(1)) if found else None


def test_a_long_catalog_is_paged_newest_first_and_every_backup_is_on_exactly_one_page(as_role, tmp_path, reads):
    names = _own_backups(tmp_path / "backups", 2 * PAGE_SIZE + 7)
    client = as_role(Role.VIEWER)
    url, pages, seen = "/targets/shop/backups", 0, []
    while url:
        reads.clear()
        text = client.get(url).get_data(as_text=True)
        assert reads["listings"] == 1  # an older page too reads the folder once
        # said of the whole catalog, whichever page: OLD, of 2020, is the only verified backup (on the last page)
        assert re.search(rf"Newest verified backup:\s*<code>{re.escape(OLD)}</code>", text)
        rows = _shown(text)
        assert 0 < len(rows) <= PAGE_SIZE
        assert (f"{len(rows)} of {len(names) + 1} backups" in text) == (len(rows) < len(names) + 1)
        seen += rows
        pages += 1
        url = _older(text)
    assert pages == 3
    assert seen == [*reversed(names), OLD]  # newest first (OLD is of 2020), none twice, none left out
    assert "« Newest" in text  # the last page leads back


def test_the_next_page_finds_its_place_when_the_backup_it_starts_after_is_deleted_meanwhile(as_role, tmp_path):
    folder = tmp_path / "backups"
    names = _own_backups(folder, PAGE_SIZE + 3)
    client = as_role(Role.VIEWER)
    first = client.get("/targets/shop/backups").get_data(as_text=True)
    last_shown = _shown(first)[-1]
    (folder / last_shown).unlink()  # retention, between the two clicks
    manifest_path(folder / last_shown).unlink()
    older = _shown(client.get(_older(first)).get_data(as_text=True))
    assert last_shown == names[3] and older == [*reversed(names[:3]), OLD]


@pytest.mark.parametrize(
    "cursor",
    [
        "yesterday~shop_20240101_000001.dump.gpg",
        "2024-01-01T00:00:00~shop_20240101_000001.dump.gpg",  # no offset: cannot be placed among UTC times
        "2024-01-01T00:00:00+00:00~../secret.gpg",
        "2024-01-01T00:00:00+00:00",
    ],
)
def test_a_malformed_page_cursor_is_a_400_that_says_what_a_cursor_is(as_role, cursor):
    response = as_role(Role.VIEWER).get("/targets/shop/backups", query_string={"before": cursor})
    assert response.status_code == 400
    assert "the page cursor must be a backup&#39;s time with its offset, ~, and its name" in response.get_data(
        as_text=True
    )


def test_a_manifest_s_job_is_linked_only_when_it_is_a_job_of_this_target_on_record(app, as_role, tmp_path):
    from app.extensions import db
    from app.jobs.models import Job

    with app.app_context():
        ours = Job(runbook="backup", target="shop", state="succeeded", actor_name="oncall", mutates=True)
        theirs = Job(runbook="backup", target="elsewhere", state="succeeded", actor_name="oncall", mutates=True)
        db.session.add_all([ours, theirs])
        db.session.commit()
        ours_id, theirs_id = ours.id, theirs.id
    folder = tmp_path / "backups"
    said = {}
    for i, job_id in enumerate((ours_id, theirs_id, 99999, "seven", [1], True, None)):
        name = f"shop_20240101_00000{i}.dump.gpg"
        (folder / name).write_bytes(b"\x85x")
        manifest = {"time": f"2024-01-01T00:00:0{i}+00:00", "made_by": "rewind", "purpose": f"purpose {i}"}
        manifest_path(folder / name).write_text(json.dumps(manifest | {"job_id": job_id}))
        said[i] = job_id
    response = as_role(Role.VIEWER).get("/targets/shop/backups")
    assert response.status_code == 200  # a job id that is no number was a 500 for the whole tab
    text = response.get_data(as_text=True)
    assert f'purpose 0 (<a href="/jobs/{ours_id}">job #{ours_id}</a>)' in text
    assert f"purpose 1 (job #{theirs_id}: not a job of shop in Rewind's records)" in text  # another target's job
    assert "purpose 2 (job #99999: not a job of shop in Rewind's records)" in text  # gone, or another Rewind's
    for i in (3, 4, 5, 6):
        assert re.search(rf"purpose {i}</span>", text), i  # nothing made up of what the manifest says
    assert text.count('href="/jobs/') == 1


def test_thousands_of_unrelated_files_are_not_named_and_the_folder_is_still_read_once(as_role, tmp_path, reads):
    folder = tmp_path / "backups"
    names = _own_backups(folder, 3)
    for i in range(3000):
        (folder / f"app-{i}.log").write_bytes(b"")
    (folder / "notes").mkdir()
    reads.clear()
    response = as_role(Role.VIEWER).get("/targets/shop/backups")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and reads == Counter(listings=1, manifests=4)
    assert _shown(text) == [*reversed(names), OLD]
    assert "app-1.log" not in text and "not listed" not in text  # only what looks like a backup is named


def test_a_folder_of_many_files_that_look_like_backups_names_a_few_and_says_how_to_see_all(app, as_role, tmp_path):
    from app.backups.views import UNLISTED_SHOWN

    folder = tmp_path / "backups"
    for i in range(UNLISTED_SHOWN + 30):
        (folder / f"archive {i:03d}.tar.gpg").write_bytes(b"x")  # a space: not a name Rewind accepts
    text = as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
    assert f"{UNLISTED_SHOWN + 30} files of" in text
    assert text.count("its name is not one Rewind accepts") == UNLISTED_SHOWN
    assert "archive 000.tar.gpg" in text and f"archive {UNLISTED_SHOWN:03d}.tar.gpg" not in text
    assert "… and 30 more: <code>flask rewind backups list shop</code> names them all." in text
    listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert listed.output.count("its name is not one Rewind accepts") == UNLISTED_SHOWN + 30


def test_backups_sharing_one_time_are_each_on_exactly_one_page(as_role, tmp_path):
    """The cursor is time and name: backups made in the same second, across a page's edge, are neither skipped
    nor shown twice."""
    folder = tmp_path / "backups"
    names = _own_backups(folder, PAGE_SIZE + 5)
    for name in names:  # every one of them at the same moment
        path = manifest_path(folder / name)
        path.write_text(json.dumps(json.loads(path.read_text()) | {"time": "2024-01-01T00:00:00+00:00"}))
    client = as_role(Role.VIEWER)
    url, seen = "/targets/shop/backups", []
    while url:
        text = client.get(url).get_data(as_text=True)
        seen += _shown(text)
        url = _older(text)
    assert seen == [*sorted(names, reverse=True), OLD]
