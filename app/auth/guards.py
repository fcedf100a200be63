"""Who may do what: the decorator on every view, and the refusal path.

create_app() calls ensure_every_view_is_guarded(), so a view added without a
role fails at start-up instead of quietly serving everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import Flask, abort, request
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from app.audit.store import record_and_commit
from app.auth.roles import Role
from app.extensions import login_manager
from app.statuses import Outcome

PUBLIC = "public"


def requires(role: Role) -> Callable:
    """Let the view run only for a signed-in user holding at least `role`."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.can(role):
                refuse(f"needs the {role.label} role", target=target_asked(kwargs.get("name")))
            return view(*args, **kwargs)

        guarded.required_role = role
        return guarded

    return decorate


def public(view: Callable) -> Callable:
    view.required_role = PUBLIC
    return view


def target_asked(name: str | None = None) -> str | None:
    """The target a refused request was about (the page's, or its form's), when it is one of the targets file's:
    its refusals then show on that target's timeline and under its filter, as a busy or mistyped one does."""
    from app.jobs.engine import current_targets

    try:
        asked = name or request.form.get("target") or request.args.get("target")
    except HTTPException:  # a form too big to read: never a 413 in place of the 403
        return None
    return current_targets().known(asked)


def refuse(reason: str, *, target: str | None = None) -> None:
    """Audit the refusal, then answer 403."""
    role = current_user.role.label if current_user.is_authenticated else None
    record_and_commit(
        "auth.denied",
        outcome=Outcome.DENIED,
        target=target,
        details={"method": request.method, "path": request.path, "reason": reason, "role": role},
    )
    abort(403, description=f"You may not do this: it {reason}.")


def ensure_every_view_is_guarded(app: Flask) -> None:
    for endpoint, view in app.view_functions.items():
        if endpoint == "static":
            continue
        if not hasattr(view, "required_role"):
            raise RuntimeError(f"view {endpoint!r} declares no role: decorate it with @requires(Role.…) or @public")
