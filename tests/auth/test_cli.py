"""`flask rewind users …` and `flask rewind init-admin`."""

import os
import stat

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.models import User
from app.auth.roles import Role
from app.extensions import db
from app.statuses import ExitStatus


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
    assert refused.exit_code == ExitStatus.REFUSED and refused.stderr.startswith(
        "rewind: ops1 is the last active admin"
    )
    assert run(app, "users", "create", "ops2", "--role", "admin").exit_code == 0
    assert run(app, "users", "disable", "ops1").exit_code == 0
    assert user(app, "ops1").disabled
    with app.app_context():
        actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        actors = {e.actor_name for e in db.session.scalars(select(AuditEvent))}
    assert actions == ["user.create", "user.set_role", "user.set_password", "user.create", "user.disable"]
    assert actors == {"system"}


def test_list_names_every_account_and_enable_undoes_disable(app):
    assert run(app, "users", "list").stdout.startswith("no users yet")
    run(app, "users", "create", "ops1", "--role", "operator")
    run(app, "users", "create", "a-much-longer-name", "--role", "admin")
    run(app, "users", "disable", "ops1")
    listed = run(app, "users", "list")
    assert listed.exit_code == 0 and listed.stdout.splitlines() == [
        "NAME                ROLE      STATE",
        "a-much-longer-name  admin     active",
        "ops1                operator  disabled",
    ]
    result = run(app, "users", "enable", "ops1")
    assert result.exit_code == 0 and result.stdout == "ops1 is enabled\n" and not user(app, "ops1").disabled
    again = run(app, "users", "enable", "ops1")
    assert again.exit_code == ExitStatus.REFUSED and again.stderr == "rewind: ops1 is already enabled\n"
    with app.app_context():
        actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions[-2:] == ["user.disable", "user.enable"]


def test_bad_input_is_refused_with_a_reason(app):
    assert "unknown role 'boss'" in run(app, "users", "create", "x", "--role", "boss").output
    for command in (
        ["set-role", "ghost", "viewer"],
        ["set-password", "ghost"],
        ["disable", "ghost"],
        ["enable", "ghost"],
    ):
        result = run(app, "users", *command)
        assert result.exit_code == ExitStatus.REFUSED, result.output
        assert result.stderr == "rewind: there is no user 'ghost'; see them with: flask rewind users list\n"
    result = run(app, "users", "create", "shorty", "--password-stdin", input="short\n")
    assert result.exit_code == ExitStatus.REFUSED and "at least 12 characters" in result.stderr
    assert user(app, "shorty") is None


def test_an_empty_password_on_stdin_is_refused_rather_than_replaced_by_one_nobody_sees(app):
    run(app, "users", "create", "ops1", "--password-stdin", input="the-first-password\n")
    for command, stdin in ((["set-password", "ops1"], ""), (["set-password", "ops1"], "\n"), (["create", "ops2"], "")):
        result = run(app, "users", *command, "--password-stdin", input=stdin)
        assert result.exit_code == ExitStatus.REFUSED and result.stdout == "", result.output
        assert result.stderr.startswith("rewind: no password on standard input: pipe one in, or leave out")
    with app.app_context():
        assert db.session.scalar(select(User).filter_by(name="ops1")).check_password("the-first-password")
    assert user(app, "ops2") is None
