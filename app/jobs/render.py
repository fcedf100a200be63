"""Job state as HTML fragments that htmx swaps in by id (out-of-band), for pages and websockets.

Rendered once per event for every watcher, so fragments use no request
state: no url_for, no CSRF token, nothing per user.
"""

from __future__ import annotations

from flask import render_template

from app.jobs.events import JobView
from app.jobs.models import JobEvent


def stamp(event: JobEvent) -> str:
    return event.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render_event(view: JobView, event: JobEvent) -> str:
    return render_template("jobs/_event.html", view=view, event=event, ts=stamp(event))


def render_snapshot(view: JobView) -> str:
    return render_template("jobs/_snapshot.html", view=view)
