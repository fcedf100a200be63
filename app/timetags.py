"""Times on pages: stored and sent in UTC, shown by the browser in its own time zone.

`<time datetime="…Z">` carries the instant; static/js/rewind.js rewrites the
text to local time (with the date when it is not today) and keeps the UTC
time as the hover title, so a page without script still reads correctly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape


def time_tag(value: datetime | float | None, empty: str = "—") -> Markup:
    if value is None:
        return escape(empty)
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    iso = value.isoformat(timespec="seconds") + "Z"
    shown = value.strftime("%Y-%m-%d %H:%M:%S") + " UTC"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, shown, shown)


def duration(seconds: float | None) -> str:
    """'4.2 s', '3 min 05 s', '2 h 04 min': how long, at a glance."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def zone_words(offset: timedelta | None) -> str:
    """'UTC', 'UTC+05:30', 'UTC-03:00': a fixed offset worded as the top bar words the browser's zone."""
    if not offset:
        return "UTC"
    minutes = round(offset.total_seconds() / 60)
    hours, minutes = divmod(abs(minutes), 60)
    return f"UTC{'-' if offset < timedelta(0) else '+'}{hours:02d}:{minutes:02d}"
