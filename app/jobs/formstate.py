"""A refused job form, carried across post/redirect/get so the page it came from can show it.

The refusal is kept in the session for exactly one page view: the page puts
each error beside its field and the typed values back in their fields, and a
reload neither re-submits nor shows the error again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import g, redirect, request, session
from werkzeug.wrappers import Response

SESSION_KEY = "job_form"


@dataclass(frozen=True)
class FormState:
    runbook: str | None = None
    target: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def error(self, name: str) -> str:
        return self.errors.get(name, "")


EMPTY = FormState()


# Each typed value kept at most this long: the session travels with every request.
VALUE_LIMIT = 500


def remember(runbook: str, target: str | None, values: dict[str, str], errors: dict[str, str]) -> None:
    kept = {k: str(v)[:VALUE_LIMIT] for k, v in values.items()}
    session[SESSION_KEY] = {"runbook": runbook, "target": target, "values": kept, "errors": errors}


def send_back(
    runbook: str, target: str | None, values: dict[str, str], errors: dict[str, str], default: str | None = None
) -> Response | None:
    """Post/redirect/get to the page the form came from (else `default`), which shows the refusal beside its
    fields with what was typed; None when there is no page of this site to go back to."""
    back = came_from() or default
    if back is None:
        return None
    remember(runbook, target, values, errors)
    return redirect(back, 303)


def take_for_this_page() -> None:
    """Called before every request: the next full page view takes the refusal, whether it shows it or not.

    So a refusal never lingers to reappear beside a field on some later page;
    background polls and htmx fragments leave it for the page.
    """
    if request.method != "GET" or request.headers.get("HX-Request") or request.headers.get("X-Rewind-Background"):
        return
    if request.endpoint == "static" or SESSION_KEY not in session:
        return
    raw = session.pop(SESSION_KEY) or {}
    g.job_form_state = FormState(
        raw.get("runbook"), raw.get("target"), dict(raw.get("values") or {}), dict(raw.get("errors") or {})
    )


def _recalled() -> FormState:
    return g.get("job_form_state", EMPTY)


def form_for(runbook: str | None = None, target: str | None = None, **match: str) -> FormState:
    """The refused form if it was for this runbook and target (and these values, e.g. commit=…), else EMPTY."""
    state = _recalled()
    if state.runbook is None or (runbook is not None and state.runbook != runbook):
        return EMPTY
    if target is not None and state.target != target:
        return EMPTY
    if any(state.values.get(k) != v for k, v in match.items()):
        return EMPTY
    return state


def local_path(candidate: str | None) -> str | None:
    """candidate as a path on this site, or None: a refusal never sends anyone to another site."""
    if not candidate or "\\" in candidate or any(ord(c) < 32 for c in candidate):
        return None
    parts = urlsplit(candidate)
    foreign = parts.scheme not in ("http", "https") or parts.netloc != request.host
    if (parts.scheme or parts.netloc) and foreign:
        return None
    path = parts.path
    if not path.startswith("/") or path.startswith("//"):
        return None
    return path + (f"?{parts.query}" if parts.query else "")


def this_page() -> str:
    """This request's path and query, as a form's `next` or the sign-in page's: no bare '?' without a query."""
    return request.full_path if request.query_string else request.path


def came_from() -> str | None:
    """Where the form was posted from: its `next` field (a path), else the Referer (same site only)."""
    nxt = request.form.get("next")
    if nxt:
        return local_path(nxt) if not urlsplit(nxt).netloc else None
    return local_path(request.referrer)
