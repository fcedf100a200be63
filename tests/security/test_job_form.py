"""The job-start form against hostile input: unknown keys, path traversal, shell syntax, markup, huge values.

Every refusal is a 400 or 404 that queues nothing and is audited; accepted
text stays data (argv items and log lines), never a shell line.
"""

import pytest
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.extensions import db
from app.jobs.models import Job
from tests.support.apps import post

HUGE = "9" * 200_000

# (form, status, words the answer must contain)
REFUSED = [
    ({"runbook": "verify", "target": "staging", "foo": "bar"}, 400, "&#39;foo&#39; is not a parameter of verify"),
    ({"runbook": "selfcheck", "target": "staging", "../../etc/passwd": "x"}, 400, "is not a parameter"),
    ({"runbook": "test.count", "lines": "3; rm -rf /"}, 400, "Lines must be a whole number"),
    ({"runbook": "test.count", "lines": "$(id)"}, 400, "Lines must be a whole number"),
    ({"runbook": "test.count", "lines": "`id`"}, 400, "Lines must be a whole number"),
    ({"runbook": "test.count", "lines": "3 | cat /etc/passwd"}, 400, "Lines must be a whole number"),
    ({"runbook": "test.count", "lines": "<script>alert(1)</script>"}, 400, "Lines must be a whole number"),
    ({"runbook": "test.count", "lines": HUGE}, 400, "Lines is too long: 200,000 characters, at most 4,096"),
    ({"runbook": "test.count", "delay": "nan; id"}, 400, "Delay must be a number"),
    ({"runbook": "test.sleep", "target": "../staging"}, 404, "There is no target"),
    ({"runbook": "test.sleep", "target": "staging/../production"}, 404, "There is no target"),
    ({"runbook": "test.sleep", "target": "staging;id"}, 404, "There is no target"),
    ({"runbook": "test.sleep", "target": "$(id)"}, 404, "There is no target"),
    ({"runbook": "test.sleep", "target": "staging\x00"}, 404, "There is no target"),
    ({"runbook": "test.sleep", "target": "x" * 100_000}, 400, "Target is too long"),
]


def jobs(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Job))


def refusals(app) -> list[str]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "job.queued", AuditEvent.outcome == "denied")
        ).all()
        return [e.details for e in rows]


@pytest.mark.parametrize("form, status, words", REFUSED, ids=[repr(f)[:60] for f, _, _ in REFUSED])
def test_hostile_job_form_is_refused_queues_nothing_and_is_audited(app, users, as_role, form, status, words):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", form)
    body = response.get_data(as_text=True)
    assert response.status_code == status
    assert words in body
    assert "<script>alert(1)</script>" not in body, "input is shown escaped"
    assert jobs(app) == 0
    assert len(refusals(app)) == 1


def test_shell_syntax_in_a_text_parameter_stays_data(app, users, as_role, runner):
    from tests.support.jobs import finished

    text = "; rm -rf / $(id) `id` | cat /etc/passwd && echo pwned"
    client = as_role(Role.OPERATOR)
    url = post(client, "/jobs", {"runbook": "test.echo", "target": "staging", "text": text}).headers["Location"]
    job, _ = finished(app, int(url.rsplit("/", 1)[1]), timeout=30)
    assert job.state == "succeeded"
    page = client.get(url).get_data(as_text=True)
    assert "echo: ; rm -rf / $(id) `id` | cat /etc/passwd &amp;&amp; echo pwned" in page
