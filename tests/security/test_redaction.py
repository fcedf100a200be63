"""No job log line shows one of Rewind's own secrets, however the command came by it."""

import sys

import pytest

from app import own_secrets
from app.auth.roles import Role
from app.jobs.context import JobContext
from app.jobs.runbook import Param, Runbook, Step, register
from app.settings import load_settings
from tests.conftest import wait_for
from tests.support.apps import TEST_KEYS, build_app

TOKEN = "other-target-token-9f8e7d"

TARGETS = """\
[targets.staging.repo]
path = "repos/staging"

[targets.other.repo]
path = "repos/other"

[targets.other.process]
restart = ["true"]
env = {API_TOKEN = "env:REWIND_TEST_OTHER_TOKEN"}
"""


def print_file(ctx: JobContext) -> None:
    """A command that found secrets on its own (a readable file, a leaked environment) and prints them."""
    ctx.run([sys.executable, "-c", "import sys; print(open(sys.argv[1]).read())", ctx.params["path"]])


register(
    Runbook(
        name="test.print_file",
        title="Print a file",
        role=Role.OPERATOR,
        mutates=False,
        params=(Param("path", "Path"),),
        steps=(Step("print", "Print", print_file),),
    )
)


@pytest.fixture
def leaky_app(tmp_path, sqlite_template, monkeypatch):
    monkeypatch.setenv("REWIND_TEST_OTHER_TOKEN", TOKEN)
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "rewind.toml").write_text(TARGETS)
    app = build_app(instance, sqlite_template.new_url(tmp_path))
    yield app
    app.extensions["rewind"].bus.close()


def test_a_job_cannot_print_rewinds_keys_or_another_targets_secrets(leaky_app, tmp_path):
    from app.audit.store import Actor
    from app.extensions import db
    from app.jobs import runbook, service
    from app.jobs.engine import engine
    from app.jobs.events import load_view
    from app.jobs.models import Job

    leaked = tmp_path / "environ.txt"
    secret_key, audit_key = TEST_KEYS["REWIND_SECRET_KEY"], TEST_KEYS["REWIND_AUDIT_KEY"]
    leaked.write_text(f"REWIND_SECRET_KEY={secret_key}\nkey {audit_key}\nother token is {TOKEN} ok\n")
    runner = engine(leaky_app).start_runner()
    try:
        with leaky_app.app_context():
            book = runbook.get("test.print_file")
            job_id = service.enqueue(book, "staging", {"path": str(leaked)}, Actor(None, "opal")).id

        def finished():
            with leaky_app.app_context():
                job = db.session.get(Job, job_id)
                return job if job.state in ("succeeded", "failed") else None

        wait_for(finished, timeout=30)
        with leaky_app.app_context():
            view = load_view(db.session.get(Job, job_id))
            text = "\n".join(line for _, _, line in view.lines)
    finally:
        runner.stop(wait=True)
    assert "other token is ••• ok" in text, text
    for secret in (secret_key, audit_key, TOKEN):
        assert secret not in text


def test_the_ops_database_password_is_one_of_rewinds_secrets(tmp_path):
    settings = load_settings(
        {
            "REWIND_INSTANCE_DIR": str(tmp_path),
            "REWIND_DATABASE_URL": "postgresql://rewind:ops-db-pass-77@db.internal/rewind",
            **TEST_KEYS,
        }
    )
    assert set(own_secrets(settings)) == {
        "ops-db-pass-77",
        TEST_KEYS["REWIND_SECRET_KEY"],
        TEST_KEYS["REWIND_AUDIT_KEY"],
    }
