"""The audit page, its filters, keyset pages, exports and chain status."""

import csv
import io
import json
import re
from datetime import datetime

import pytest
from markupsafe import escape
from sqlalchemy import text

from app.audit import chain, store
from app.audit.store import Actor
from app.auth.roles import Role
from app.extensions import db
from app.statuses import Outcome
from tests.conftest import both_databases


def seed(app, n: int) -> None:
    with app.app_context():
        for i in range(n):
            store.record(
                "job.start" if i % 3 else "flag.toggle",
                target="production" if i % 2 else "staging",
                outcome=Outcome.FAILED if i % 10 == 0 else Outcome.OK,
                actor=Actor(None, f"person{i % 4}"),
                details={"i": i},
            )
        db.session.commit()


def ids_on(page: str) -> list[int]:
    return [int(x) for x in re.findall(r"<tr>\s*<td>(\d+)</td>", page)]


def actions_on(page: str) -> list[str]:
    """The Action column as read: a long name may break after each dot (<wbr>), which is no part of it."""
    return [a.replace("<wbr>", "") for a in re.findall(r'<code class="action">(.*?)</code>', page)]


@both_databases
def test_keyset_pages_cover_everything_once(app, users, as_role):
    seed(app, 120)
    client = as_role(Role.VIEWER)
    seen, url = [], "/audit?action=job"
    while url:
        page = client.get(url).get_data(as_text=True)
        seen += ids_on(page)
        older = re.search(r'rel="next" href="([^"]+)"', page)
        url = older.group(1).replace("&amp;", "&") if older else None
    expected = [i for i in range(123, 3, -1) if (i - 4) % 3]  # rows 4.. are the seed; i % 3 != 0 is job.start
    assert seen == expected


def test_filters_combine(app, users, as_role):
    seed(app, 40)
    client = as_role(Role.VIEWER)
    page = client.get("/audit?actor=person0&outcome=failed&target=staging").get_data(as_text=True)
    rows = ids_on(page)
    assert rows and all("person0" in page for _ in rows)
    with app.app_context():
        expected = db.session.execute(
            text(
                "SELECT id FROM audit_event WHERE actor_name='person0' AND outcome='failed' "
                "AND target='staging' ORDER BY id DESC"
            )
        ).scalars()
        assert rows == list(expected)


def test_action_prefix_matches_whole_segments(app, users, as_role):
    with app.app_context():
        for action in ("auth.login", "authz.check", "auth", "user.create"):
            store.record(action)
        db.session.commit()
    client = as_role(Role.VIEWER)
    page = client.get("/audit?action=auth").get_data(as_text=True)
    assert "authz.check" not in actions_on(page)
    assert {"auth", "auth.login"} <= set(actions_on(page))
    exact = actions_on(client.get("/audit?action=user.create").get_data(as_text=True))
    assert "user.create" in exact and "auth.login" not in exact


def test_a_bad_page_cursor_is_a_clear_400(as_role, users):
    response = as_role(Role.VIEWER).get("/audit?before=abc")
    assert response.status_code == 400
    assert "page cursor must be a row number" in response.get_data(as_text=True)


def _input(page: str, name: str) -> str:
    """The opening tag of a filter field."""
    match = re.search(rf'<(?:input|select)[^>]*name="{name}"[^>]*>', page)
    assert match, name
    return match.group(0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("since", "garbage", "From: 'garbage' is not a time; use 2026-11-26 14:05 or an ISO 8601 time"),
        ("until", "26/11/2026", "Until: '26/11/2026' is not a time; use 2026-11-26 14:05 or an ISO 8601 time"),
        ("outcome", "maybe", "Outcome: 'maybe' is not an outcome; choose one of ok, denied, failed"),
    ],
)
def test_a_bad_filter_shows_the_page_with_the_reason_and_keeps_the_other_filters(as_role, users, field, value, message):
    args = {"actor": "person1", "action": "job.start", "target": "production", "since": "2026-11-25T09:00"}
    args[field] = value
    response = as_role(Role.VIEWER).get("/audit", query_string=args)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'aria-label="Filter audit events"' in page and "<h1>Audit log</h1>" in page, "the normal page, with its form"
    error = page[page.index('id="audit-filter-error"') : page.index("</div>", page.index('id="audit-filter-error"'))]
    assert f'id="filter-{field}-error">{escape(message)}</p>' in error
    assert 'aria-invalid="true"' in _input(page, field)
    for name, kept in args.items():
        if name not in (field, "outcome"):
            assert f'value="{kept}"' in _input(page, name), name
            assert "aria-invalid" not in _input(page, name)
    assert "No events shown until the filter above is fixed." in page
    assert "export.csv" not in page, "no export links carrying the bad value"


def test_every_unreadable_filter_is_named_at_once(as_role, users):
    page = as_role(Role.VIEWER).get("/audit?since=soon&until=later&outcome=meh&actor=ops").get_data(as_text=True)
    for field, label in (("since", "From"), ("until", "Until"), ("outcome", "Outcome")):
        assert f'id="filter-{field}-error">{label}: ' in page
    assert 'value="ops"' in _input(page, "actor")


def test_a_time_with_an_offset_is_read_as_utc(app, users, as_role):
    seed(app, 3)
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET ts = '2020-01-01 10:00:00' WHERE id = 4"))
        db.session.execute(text("UPDATE audit_event SET ts = '2020-01-01 12:00:00' WHERE id IN (5, 6)"))
        db.session.commit()
    client = as_role(Role.VIEWER)  # 13:00 at +02:00 is 11:00 UTC; Until in the form's other spelling, with a space
    page = client.get("/audit", query_string={"since": "2020-01-01T13:00+02:00", "until": "2020-01-01 12:30"})
    html = page.get_data(as_text=True)
    assert ids_on(html) == [6, 5]
    # the boxes show both in their own spelling, in UTC: a datetime-local box left an offset time out, empty
    assert 'value="2020-01-01T11:00"' in _input(html, "since") and 'value="2020-01-01T12:30"' in _input(html, "until")
    assert "since=2020-01-01T11:00&amp;until=2020-01-01T12:30" in html, "the export links carry the same times"


@pytest.mark.parametrize(
    "typed, shown",
    [
        ("2020-01-01T13:00:30+02:00", "2020-01-01T11:00:30"),
        ("2020-01-01 13:00:00.123456", "2020-01-01T13:00:00.123"),  # the box shows nothing for six decimals
        ("2020-01-01", "2020-01-01T00:00"),
    ],
)
def test_a_time_shows_in_its_box_however_it_was_typed_even_beside_a_bad_filter(as_role, users, typed, shown):
    page = as_role(Role.VIEWER).get("/audit", query_string={"since": typed, "outcome": "maybe"})
    assert page.status_code == 400
    assert f'value="{shown}"' in _input(page.get_data(as_text=True), "since")


def test_a_time_an_offset_takes_out_of_the_calendar_is_refused_not_a_500(as_role, users):
    page = as_role(Role.VIEWER).get("/audit", query_string={"since": "0001-01-01T00:00+01:00"})
    assert page.status_code == 400
    assert "From: &#39;0001-01-01T00:00+01:00&#39; is not a time" in page.get_data(as_text=True)


@pytest.mark.parametrize("export", ["export.csv", "export.jsonl"])
def test_an_export_with_a_bad_filter_says_which_in_one_line(as_role, users, export):
    response = as_role(Role.VIEWER).get(f"/audit/{export}?actor=person1&since=garbage")
    assert response.status_code == 400 and response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == (
        "Bad filter: since: 'garbage' is not a time; use 2026-11-26 14:05 or an ISO 8601 time\n"
    )


@both_databases
@pytest.mark.parametrize("url", ["/audit", "/audit/export.csv", "/audit/export.jsonl"])
def test_a_nul_in_a_text_filter_is_a_400_naming_it_on_either_database(app, users, as_role, url):
    """PostgreSQL cannot compare a NUL: handed to it, the filter was a 500."""
    client = as_role(Role.VIEWER)
    for field in ("actor", "action", "target"):
        response = client.get(url, query_string={field: "ops\x00"})
        assert response.status_code == 400, field
        assert f"{field}: has a nul character, which no stored value has" in response.get_data(as_text=True).lower()


def test_an_until_before_from_is_refused_rather_than_answered_with_nothing(app, users, as_role):
    seed(app, 3)
    response = as_role(Role.VIEWER).get("/audit?since=2030-01-02T00:00&until=2030-01-01T00:00")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Until: 2030-01-01 00:00 is not after From (2030-01-02 00:00); swap them" in page
    assert 'aria-invalid="true"' in _input(page, "until") and 'value="2030-01-01T00:00"' in _input(page, "until")
    assert "No events match" not in page


def test_time_range_filter(app, users, as_role):
    seed(app, 5)
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET ts = '2020-01-01 00:00:00' WHERE id <= 5"))
        db.session.commit()
    client = as_role(Role.VIEWER)
    rows = ids_on(client.get("/audit?since=2019-12-31T00:00&until=2020-01-02T00:00").get_data(as_text=True))
    assert rows == [5, 4, 3, 2, 1]


def test_exports_follow_the_filters(app, users, as_role):
    seed(app, 1205)  # more than one export batch
    client = as_role(Role.VIEWER)
    jsonl = client.get("/audit/export.jsonl?action=flag").get_data(as_text=True).splitlines()
    rows = [json.loads(line) for line in jsonl]
    assert len(rows) == 402 and {r["action"] for r in rows} == {"flag.toggle"}
    assert rows[0]["id"] > rows[-1]["id"] and isinstance(rows[0]["details"], dict)
    reader = csv.DictReader(io.StringIO(client.get("/audit/export.csv?action=flag").get_data(as_text=True)))
    assert [int(r["id"]) for r in reader] == [r["id"] for r in rows]


def test_csv_export_defuses_formulas(app, users, as_role):
    with app.app_context():
        store.record("auth.login", actor=Actor(None, "=HYPERLINK(1)"), outcome=Outcome.FAILED)
        db.session.commit()
    body = as_role(Role.VIEWER).get("/audit/export.csv?outcome=failed").get_data(as_text=True)
    assert "'=HYPERLINK(1)" in body


def newest_id(app) -> int:
    with app.app_context():
        return db.session.execute(text("SELECT max(id) FROM audit_event")).scalar()


@both_databases
def test_chain_status_fragment_shows_a_break_in_new_rows(app, users, as_role):
    client = as_role(Role.VIEWER)
    assert "No break in the" in client.get("/audit/chain").get_data(as_text=True)  # seals a mark at the end
    seed(app, 3)
    changed = newest_id(app) - 1
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET actor_name = 'ghost' WHERE id = :i"), {"i": changed})
        db.session.commit()
    fragment = client.get("/audit/chain").get_data(as_text=True)
    assert "Chain broken" in fragment and f"row {changed} was changed" in fragment


def test_check_again_gives_keyboard_focus_back_to_its_button(app, users, as_role):
    client = as_role(Role.VIEWER)
    first = client.get("/audit/chain").get_data(as_text=True)  # on page load: focus is left where it is
    assert 'hx-get="/audit/chain?again=1"' in first and "data-focus-after-swap" not in first
    again = client.get("/audit/chain?again=1").get_data(as_text=True)  # the button swaps itself away
    assert "data-focus-after-swap>Check again</button>" in again


def summary(fragment: str) -> str:
    """The badge's words, tags out."""
    return " ".join(re.sub(r"<[^>]+>", "", fragment).split())


@both_databases
def test_the_badge_never_calls_the_chain_intact_when_it_read_only_new_rows(app, users, as_role):
    """An old row changed (QA: an UPDATE in the ops database): the badge reads only rows newer than its last check,
    so it says that, and where the full check is, instead of "Chain intact" while `audit verify` says broken."""
    client = as_role(Role.OPERATOR)
    client.get("/audit/chain")
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET actor_name = 'ghost' WHERE id = 2"))
        db.session.commit()
    seed(app, 2)
    fragment = client.get("/audit/chain").get_data(as_text=True)
    words = summary(fragment)
    assert "Chain intact" not in fragment and "badge-ok" not in fragment
    assert "No full check on record" in words and "the log has not been checked in full" in words
    assert "(2 new since the last check)" in words
    assert "this reads only rows newer than its last check" in words
    assert "Full check of every row: flask rewind audit verify or Run a full check (the self-check job)" in words
    assert 'href="/jobs/new?runbook=selfcheck"' in fragment
    result = app.test_cli_runner().invoke(args=["rewind", "audit", "verify"])
    assert result.exit_code == 1 and "row 2 was changed" in result.output
    fragment = client.get("/audit/chain").get_data(as_text=True)  # the full walk moved the mark back: now seen
    assert "Chain broken" in fragment and "row 2 was changed" in fragment


def test_the_badge_names_the_last_full_check_and_counts_only_rows_since(app, users, as_role):
    seed(app, 3)
    result = app.test_cli_runner().invoke(args=["rewind", "audit", "verify"])
    assert result.exit_code == 0, result.output
    full = newest_id(app)
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET actor_name = 'ghost' WHERE id = 2"))  # after that check
        db.session.commit()
    seed(app, 2)
    client = as_role(Role.VIEWER)
    fragment = client.get("/audit/chain").get_data(as_text=True)
    words = summary(fragment)
    assert "Chain intact" not in fragment and "New rows intact" in words
    assert f"No break in the {newest_id(app) - full} rows written since the last full check (" in words
    assert f", which found rows 1 to {full} intact)" in words
    assert "Full check of every row: flask rewind audit verify." in words, "a viewer is not offered the job"
    assert "selfcheck" not in fragment


def test_chain_status_refuses_a_forged_mark(app, users, as_role):
    """Moving the mark past a tampered row needs the audit key: a mark sealed with any other key is refused."""
    client = as_role(Role.VIEWER)
    client.get("/audit/chain")
    seed(app, 3)
    end = newest_id(app)
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET actor_name = 'ghost' WHERE id = :i"), {"i": end - 1})
        row_hash = db.session.execute(text("SELECT hash FROM audit_event WHERE id = :i"), {"i": end}).scalar()
        at = datetime(2026, 11, 25, 12, 0, 0)
        forged = chain.seal_mark(b"not-the-audit-key-not-the-audit-key", chain.Head(end, row_hash), at)
        db.session.execute(
            text("UPDATE audit_mark SET row_id = :i, row_hash = :h, sealed_at = :at, seal = :s WHERE id = 1"),
            {"i": end, "h": row_hash, "at": at, "s": forged},
        )
        db.session.commit()
    fragment = client.get("/audit/chain").get_data(as_text=True)
    assert "Chain broken" in fragment and "not sealed with the audit key" in fragment


def test_chain_status_catches_up_in_bounded_steps(app, users, as_role, monkeypatch):
    """A log bigger than one check's budget is walked over several requests, each asking for the next."""
    seed(app, 7)
    monkeypatch.setattr(store, "CHECK_LIMIT", 4)
    client = as_role(Role.VIEWER)
    total = newest_id(app)
    pages = []
    for _ in range(10):
        page = client.get("/audit/chain").get_data(as_text=True)
        pages.append(page)
        if "No break in the" in page:
            break
    assert "still to check" in pages[0] and 'hx-trigger="load delay:1s"' in pages[0]
    assert f"No break in the {total} rows as each was first checked here" in pages[-1]
    assert len(pages) == -(-total // 4)


def test_dashboard_shows_the_chain_badge_without_walking(app, users, as_role):
    page = as_role(Role.VIEWER).get("/").get_data(as_text=True)
    assert 'hx-get="/audit/chain"' in page


def test_the_table_does_not_call_browser_local_times_utc_and_scrolls_inside_its_box(app, users, as_role):
    # rewind.js shows each <time> in the browser's zone, so a "(UTC)" header would be wrong off UTC.
    seed(app, 1)
    page = as_role(Role.VIEWER).get("/audit").get_data(as_text=True)
    assert '<th scope="col">Time</th>' in page and "Time (UTC)" not in page
    assert "<time datetime=" in page
    # the filters take UTC; with script, rewind.js shows them (and their labels) in the browser's zone too
    assert "From and Until are in <span data-zone>UTC</span>" in page
    assert page.count('type="datetime-local"') == page.count("data-utc") == 2
    assert re.search(r'<div class="table-scroll">\s*<table class="grid audit">', page)  # no page-wide scroll at 800 px


def test_details_read_as_key_value_pairs_while_the_exports_keep_the_json(app, users, as_role):
    details = {"runbook": "verify", "job_id": 7, "params": {"ref": "main", "steps": [1, 2]}, "note": "", "ok": None}
    with app.app_context():
        store.record("job.queued", target="staging", actor=Actor(None, "ops"), details=details)
        db.session.commit()
    client = as_role(Role.VIEWER)
    page = client.get("/audit?action=job.queued").get_data(as_text=True)
    cell = re.search(r'<td class="details">(.*?)</td>', page).group(1)
    pairs = re.findall(r"<div>(?:<dt>([^<]*)</dt> )?<dd>([^<]*)</dd></div>", cell)
    assert sorted(pairs) == sorted(
        [
            ("runbook:", "verify"),
            ("job_id:", "7"),
            ("params:", str(escape('{"ref": "main", "steps": [1, 2]}'))),  # nested: compact, on one line
            ("note:", str(escape('""'))),  # an empty string is shown, not blank
            ("ok:", "null"),
        ]
    )
    assert "{&#34;job_id&#34;" not in page, "no raw JSON on the page"
    assert '<code class="action">job.<wbr>queued</code>' in page  # a long action breaks at a dot, so the row fits
    exported = client.get("/audit/export.jsonl?action=job.queued").get_data(as_text=True).splitlines()
    assert json.loads(exported[0])["details"] == details
    rows = list(csv.DictReader(io.StringIO(client.get("/audit/export.csv?action=job.queued").get_data(as_text=True))))
    assert json.loads(rows[0]["details"]) == details


def test_details_that_are_not_an_object_are_shown_whole():
    from app.audit.display import detail_pairs

    assert detail_pairs("{}") == []
    assert detail_pairs("[1,2]") == [("", "[1, 2]")]
    assert detail_pairs("not json") == [("", "not json")]


def test_the_chain_sentence_ends_at_its_full_stop(app, users, as_role):
    """#chain-status is a flex row with a gap: text beside <code> as separate items showed "head 74:3303…  ."."""
    client = as_role(Role.VIEWER)
    fragment = client.get("/audit/chain").get_data(as_text=True)
    sentence = r'<span class="chain-summary">No break in the \d+ rows[^<]*; head <code>\d+:[0-9a-f]{16}…</code>\.'
    assert re.search(sentence, fragment)


def test_each_filter_box_is_wide_enough_for_its_placeholder(users, as_role):
    """A placeholder cut off ("prefix, e.g. auth or user.c") hides the example that says how to filter."""
    page = as_role(Role.VIEWER).get("/audit").get_data(as_text=True)
    boxes = re.findall(r"<input name=\"(\w+)\"[^>]*?placeholder=\"([^\"]*)\"([^>]*)>", page)
    assert {name for name, _, _ in boxes} == {"actor", "action", "target"}
    for name, placeholder, rest in boxes:
        size = re.search(r'size="(\d+)"', rest)
        width = int(size.group(1)) if size else 20  # an input's default size
        assert width >= len(placeholder), f"{name}: {len(placeholder)} characters of placeholder in a box of {width}"


@both_databases
def test_a_failed_full_check_stays_on_the_badge_after_the_row_is_put_back_until_a_full_check_passes(
    app, users, as_role
):
    """QA: full check #13 passed; row 30 changed; full check #14 found it; the row set back by hand; the badge then
    named #13 ("which found rows 1 to 248 intact") as the last full check, green, though #14 had found a break."""
    seed(app, 6)
    verify = ["rewind", "audit", "verify"]
    assert app.test_cli_runner().invoke(args=verify).exit_code == 0
    client = as_role(Role.VIEWER)
    assert "New rows intact" in summary(client.get("/audit/chain").get_data(as_text=True))
    with app.app_context():
        was = db.session.execute(text("SELECT actor_name FROM audit_event WHERE id = 3")).scalar()
        db.session.execute(text("UPDATE audit_event SET actor_name = 'ghost' WHERE id = 3"))
        db.session.commit()
    failed = app.test_cli_runner().invoke(args=verify)
    assert failed.exit_code == 1 and "row 3 was changed" in failed.output
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET actor_name = :was WHERE id = 3"), {"was": was})  # put back
        db.session.commit()
    fragment = client.get("/audit/chain").get_data(as_text=True)
    words = summary(fragment)
    assert "chain-bad" in fragment and "badge-ok" not in fragment and "New rows intact" not in words
    assert "Last full check found a break" in words and ") found a break at row 3: row 3 was changed" in words
    assert "only one that passes clears this" in words and "which found rows 1 to" not in words
    with app.app_context():
        full = store.read_full_check()
    assert (full.row_id, full.break_row, full.found_break) == (2, 3, True), "rows 1 and 2 were found intact"
    sql = "UPDATE audit_mark SET full_break = NULL, full_break_row = NULL WHERE id = 1"  # hidden without the key
    with app.app_context():
        db.session.execute(text(sql))
        db.session.commit()
        assert store.read_full_check() is None, "a failed check is not turned into a passed one without the key"
    assert "No full check on record" in summary(client.get("/audit/chain").get_data(as_text=True))

    assert app.test_cli_runner().invoke(args=verify).exit_code == 0
    fragment = client.get("/audit/chain").get_data(as_text=True)
    words = summary(fragment)
    assert "chain-ok" in fragment and "New rows intact" in words and "found a break" not in words
    assert f", which found rows 1 to {newest_id(app)} intact)" in words


def test_the_badge_after_a_full_check_says_a_row_changed_after_its_own_check_shows_only_at_the_next(
    app, users, as_role
):
    """QA: a row written after the full check, read intact by the badge, then changed by hand: the badge goes on
    reading only newer rows, so it must not say flatly that the rows since the full check have no break."""
    seed(app, 2)
    assert app.test_cli_runner().invoke(args=["rewind", "audit", "verify"]).exit_code == 0
    seed(app, 2)
    client = as_role(Role.VIEWER)
    client.get("/audit/chain")  # the new rows are read intact here
    with app.app_context():
        db.session.execute(text("UPDATE audit_event SET actor_name = 'ghost' WHERE id = :i"), {"i": newest_id(app)})
        db.session.commit()
    seed(app, 1)
    words = summary(client.get("/audit/chain").get_data(as_text=True))
    assert "New rows intact" in words
    assert "intact), as each was first checked here: a row changed after its check shows only at the next full" in words
