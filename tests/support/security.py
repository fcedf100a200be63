"""Shared security checks generated from the app's URL map, so a new route is covered the day it is added.

routes() lists every (endpoint, method, role) the app serves, with the role
its view declares. AccessCase answers "what must this caller get from this
route?"; an area with routes of its own needs nothing more than a filled-in
URL (FILL) for any new placeholder name.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.auth.guards import PUBLIC
from app.auth.roles import Role

CALLERS: list[Role | None] = [None, Role.VIEWER, Role.OPERATOR, Role.ADMIN]
SAFE = {"GET"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}

# Placeholder name -> sample value. Ids come from the test (a victim user, a queued job); the rest are samples.
FILL = {"name": "staging", "sha": "abcdef1", "target": "staging"}

# Fields every POST carries, so a route is judged on its guard, not on a missing field.
FORM = {"version": "", "name": "newcomer", "role": "operator", "runbook": "selfcheck"}
FORM_FOR = {"jobs.start": {"runbook": "selfcheck"}}


@dataclass(frozen=True)
class Route:
    endpoint: str
    rule: str
    method: str  # GET, POST … or WS for a websocket handshake
    role: Role | str  # the declared role, or PUBLIC

    @property
    def id(self) -> str:
        return f"{self.method} {self.endpoint}"

    def url(self, ids: dict[str, int]) -> str:
        def value(match: re.Match) -> str:
            name = match.group(2)
            return str(ids[name]) if name in ids else FILL.get(name, "1")

        url = re.sub(r"<(?:(\w+):)?(\w+)>", value, self.rule)
        return url + ("?runbook=selfcheck" if self.endpoint == "jobs.new" else "")

    def form(self) -> dict:
        return dict(FORM_FOR.get(self.endpoint, FORM))


def routes(app) -> list[Route]:
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        role = app.view_functions[rule.endpoint].required_role
        if rule.websocket:
            found.append(Route(rule.endpoint, rule.rule, "WS", role))
            continue
        for method in sorted(rule.methods - IGNORED_METHODS):
            found.append(Route(rule.endpoint, rule.rule, method, role))
    return sorted(found, key=lambda r: r.id)


def collect_routes() -> list[Route]:
    """The routes of an app built with the test settings, at collection time (no database is touched)."""
    from tests.conftest import TARGETS
    from tests.support.apps import build_app

    instance = Path(tempfile.mkdtemp(prefix="rewind-routes-"))
    (instance / "rewind.toml").write_text(TARGETS)
    app = build_app(instance, f"sqlite:///{instance / 'unused.db'}", REWIND_RUNBOOKS="tests.support.runbooks")
    app.extensions["rewind"].bus.close()
    return routes(app)


def expectation(route: Route, caller: Role | None) -> str:
    """What this caller must get: 'public', 'login', 'forbidden' or 'allowed'."""
    if route.role == PUBLIC:
        return "public"
    if caller is None:
        return "login"
    return "allowed" if caller >= route.role else "forbidden"
