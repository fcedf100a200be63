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

# A plausible value for each required parameter of any runbook, by its name: the per-runbook role rows post
# each runbook's form as a person would fill it, so a refusal is for want of the role, not of a field.
RUNBOOK_PARAM_SAMPLES = {
    "backup": "staging_20260501_100000.dump.gpg",
    "commit": "abc1234",
    "commits": "abc1234",
    "copy": "staging_restore_20260501_100000",
    "expect": "0" * 64,
    "key": "DEBUG",
    "pre_restore": "staging_pre_restore_20260501_100000",
    "ref": "main",
    "revision": "heads",
    "sealed": "sealed-value",
    "slot": "blue",
    "text": "hello",
    "version": "1",
}


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


def runbook_form(book, target: str | None) -> dict[str, str]:
    """A filled-in job-start form for this runbook: every required parameter given, a protected target confirmed."""
    form = {}
    for param in book.params:
        if param.name == "confirm" and target:
            form["confirm"] = target
        elif param.choices:
            form[param.name] = param.choices[0]
        elif param.required and param.default is None:
            assert param.name in RUNBOOK_PARAM_SAMPLES, (
                f"{book.name}: add a sample {param.name} to RUNBOOK_PARAM_SAMPLES"
            )
            form[param.name] = RUNBOOK_PARAM_SAMPLES[param.name]
    return form


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
