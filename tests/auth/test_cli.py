"""`flask rewind users …` and `flask rewind init-admin`."""

import os
import stat

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.models import User
from app.auth.roles import Role
from app.extensions import db


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=["rewind", *args], input=input)


def user(app, name):
    with app.app_context():
        found = db.session.scalar(select(User).filter_by(name=name))
        if found:
            db.session.expunge(found)
        return found


def test_init_admin_once_with_a_private_password_file(app):
    result = run(app, "init-admin")
    assert result.exit_code == 0, result.output
    path = app.config["REWIND_SETTINGS"].instance_dir / "initial-admin-password"
    password = path.read_text().strip()
    assert f"password: {password}" in result.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with app.app_context():
        assert db.session.scalar(select(User).filter_by(name="admin")).check_password(password)
    again = run(app, "init-admin")
    assert again.exit_code == 0 and "users exist already" in again.output
    assert path.read_text().strip() == password


def test_create_set_role_set_password_disable(app):
    result = run(app, "users", "create", "ops1", "--role", "operator")
    assert result.exit_code == 0 and "password: " in result.output
    assert user(app, "ops1").role == Role.OPERATOR
    assert run(app, "users", "set-role", "ops1", "admin").exit_code == 0
    assert user(app, "ops1").role == Role.ADMIN
    result = run(app, "users", "set-password", "ops1", "--password-stdin", input="a-long-enough-secret\n")
    assert result.exit_code == 0 and "a-long-enough-secret" not in result.output
    with app.app_context():
        assert db.session.scalar(select(User).filter_by(name="ops1")).check_password("a-long-enough-secret")
    refused = run(app, "users", "disable", "ops1")
    assert refused.exit_code == 1 and "last active admin" in refused.output
    assert run(app, "users", "create", "ops2", "--role", "admin").exit_code == 0
    assert run(app, "users", "disable", "ops1").exit_code == 0
    assert user(app, "ops1").disabled
    with app.app_context():
        actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        actors = {e.actor_name for e in db.session.scalars(select(AuditEvent))}
    assert actions == ["user.create", "user.set_role", "user.set_password", "user.create", "user.disable"]
    assert actors == {"system"}


def test_bad_input_is_refused_with_a_reason(app):
    assert "unknown role 'boss'" in run(app, "users", "create", "x", "--role", "boss").output
    result = run(app, "users", "set-role", "ghost", "viewer")
    assert result.exit_code == 1 and "there is no user 'ghost'" in result.output
    result = run(app, "users", "create", "shorty", "--password-stdin", input="short\n")
    assert result.exit_code == 1 and "at least 12 characters" in result.output
    assert user(app, "shorty") is None
