"""The time typed into "Restore as of": read in the zone it was typed in, and a refusal says it as typed."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

import pytest

from app.auth.roles import Role
from app.clock import utcnow
from app.flags import restore
from app.flags.restore import parse_moment
from app.flags.store import BadFlagInput
from tests.flags.conftest import plan_page

NOW = datetime(2026, 11, 27, 12, 0)  # UTC; 17:30 in Asia/Kolkata (UTC+05:30)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("10:00", datetime(2026, 11, 27, 10, 0)),  # without an offset (a page without script): UTC
        ("9:05:15", datetime(2026, 11, 27, 9, 5, 15)),
        ("13:55:15+05:30", datetime(2026, 11, 27, 8, 25, 15)),  # as the pages list today's times
        ("17:00+05:30", datetime(2026, 11, 27, 11, 30)),
        ("2026-11-27 17:00+05:30", datetime(2026, 11, 27, 11, 30)),
        ("2026-11-27T10:00", datetime(2026, 11, 27, 10, 0)),  # the forms read before still read the same
        ("2026-05-01 10:00:30", datetime(2026, 5, 1, 10, 0, 30)),
        ("2026-01-01", datetime(2026, 1, 1)),
        ("2026-11-27 11:00Z", datetime(2026, 11, 27, 11, 0)),
        ("15 minutes ago", datetime(2026, 11, 27, 11, 45)),
    ],
)
def test_a_time_with_or_without_a_date_is_read_in_the_zone_it_carries(typed, meant):
    assert parse_moment(typed, NOW) == meant


def test_a_bare_time_is_today_in_its_own_zone_where_that_is_already_tomorrow():
    """At 20:00 UTC it is 01:30 on the 28th in Kolkata: 01:00 there is half an hour ago, not 23 hours ahead."""
    assert parse_moment("01:00+05:30", datetime(2026, 11, 27, 20, 0)) == datetime(2026, 11, 27, 19, 30)


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("2026-11-27 23:00+05:30", "as of: 2026-11-27 23:00 (UTC+05:30) is in the future"),
        ("2026-11-27 13:00:05", "as of: 2026-11-27 13:00:05 (UTC) is in the future"),
        ("2026-11-27 08:00-05:00", "as of: 2026-11-27 08:00 (UTC-05:00) is in the future"),
        ("23:00+05:30", "as of: 23:00 today (UTC+05:30) is in the future; a time without a date is today's"),
        ("13:00", "as of: 13:00 today (UTC) is in the future; a time without a date is today's"),
    ],
)
def test_a_future_time_is_refused_as_typed_in_its_zone_not_in_utc(typed, said):
    """It said "2026-11-27 17:30 is in the future" of 23:00 typed in Kolkata: the UTC the browser had sent."""
    with pytest.raises(BadFlagInput) as refused:
        parse_moment(typed, NOW)
    assert refused.value.in_words().startswith(said), refused.value.in_words()


@pytest.mark.parametrize("typed", ["25:00", "10:60", "10:00:61", "10", "10:00 tomorrow", "yesterday-ish"])
def test_what_is_not_a_time_is_still_refused_naming_the_forms_read(typed):
    with pytest.raises(BadFlagInput) as refused:
        parse_moment(typed, NOW)
    assert f"cannot read {typed!r} as a time; write 2026-05-01 10:00, 10:00 (today) or" in refused.value.in_words()


def test_a_bare_time_shows_the_plan_and_a_future_one_comes_back_said_in_the_browser_zone(
    flag_app, as_role, monkeypatch
):
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the first record
    kolkata = timedelta(hours=5, minutes=30)
    # The moment the server reads times against is fixed at the next noon in Kolkata, not the wall clock's: a bare
    # time two minutes on is the same day there whenever the suite runs (it was skipped near midnight), and it is
    # never before the record just made, so a time of now has a plan.
    local_now = (utcnow() + kolkata).replace(minute=0, second=0, microsecond=0)
    local_now += timedelta(days=local_now.hour >= 12, hours=12 - local_now.hour)
    now = local_now - kolkata
    monkeypatch.setattr(restore, "utcnow", lambda: now)
    ahead = (local_now + timedelta(minutes=2)).strftime("%H:%M")
    page = plan_page(client, "as_of=" + quote(ahead + "+05:30"))
    assert f"as of: {ahead} today (UTC+05:30) is in the future" in page
    assert f'value="{ahead}+05:30"' in page  # back in its field, which the browser shows as typed
    page = plan_page(client, "as_of=" + quote(f"{local_now:%Y-%m-%d} 23:59:59+05:30"))
    assert f"as of: {local_now:%Y-%m-%d} 23:59:59 (UTC+05:30) is in the future" in page
    page = plan_page(client, "as_of=" + quote(now.strftime("%H:%M:%S")))  # no script: UTC
    assert "cannot read" not in page and "in the future" not in page, page
