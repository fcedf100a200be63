"""Times on pages: a UTC instant the browser shows in its own zone, with the UTC time on hover."""

from datetime import UTC, datetime, timedelta, timezone

from app.timetags import duration, time_tag


def test_a_naive_utc_time_becomes_a_time_element_with_the_utc_time_as_title():
    tag = time_tag(datetime(2026, 3, 4, 5, 6, 7, 891234))
    assert tag == '<time datetime="2026-03-04T05:06:07Z" title="2026-03-04 05:06:07 UTC">2026-03-04 05:06:07 UTC</time>'


def test_aware_times_and_epoch_seconds_are_converted_to_utc():
    paris = datetime(2026, 3, 4, 6, 6, 7, tzinfo=timezone(timedelta(hours=1)))
    assert 'datetime="2026-03-04T05:06:07Z"' in time_tag(paris)
    epoch = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()
    assert 'datetime="2026-03-04T05:06:07Z"' in time_tag(epoch)


def test_no_time_is_a_dash_and_text_is_escaped():
    assert time_tag(None) == "—"
    assert time_tag(None, empty="<never>") == "&lt;never&gt;"


def test_durations_read_at_a_glance():
    shown = [duration(s) for s in (None, 4.24, 65, 3599.6, 7440)]
    assert shown == ["—", "4.2 s", "1 min 05 s", "1 h 00 min", "2 h 04 min"]
