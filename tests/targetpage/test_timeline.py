"""The timeline: one list of what happened to a target, newest first, by kind, page by page."""

import re

import pytest

from app.audit.store import Actor, record_and_commit
from app.auth.roles import Role
from app.statuses import Outcome
from app.targetpage import timeline
from tests.conftest import both_databases
from tests.deployments.test_runbooks import run
from tests.support.apps import post
from tests.support.targets import git


def ids_in(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)"', page)]


def words_in(page: str) -> list[str]:
    return re.findall(r'<tr id="event-\d+" data-kind="([a-z]+)"', page)


@pytest.fixture
def history(app, users, as_role, runner, code_target):
    """A failed deploy, a refused revert, the revert that fixes it, and an area's own action."""
    deploy, _ = run(app, "deploy", ref="feature/bad", auto_rollback="off")
    refused = post(as_role(Role.OPERATOR), "/jobs", {"runbook": "revert", "target": "staging", "commits": "abc"})
    bad = git(code_target.repo, "rev-parse", "feature/bad")
    revert, _ = run(app, "revert", commits=bad)
    with app.app_context():
        oncall = Actor(None, "oncall")
        change = {"flag": "signup", "old": True, "new": False}
        toggled = {**change, "changes": [change]}
        record_and_commit("flags.toggle", actor=oncall, target="staging", details=toggled)
        record_and_commit("flags.toggle", actor=oncall, target="production", details={"flag": "other"})
    assert deploy.state == "failed" and refused.status_code == 400 and revert.state == "succeeded", revert.result
    return deploy, revert


@pytest.fixture
def flags_kind():
    """The flags area's own kind, registered with the app: an area's `<area>.` audit rows join the timeline."""
    return next(kind for kind in timeline.all_kinds() if kind.key == "flags")


def test_the_timeline_lists_deploy_failure_refusal_and_revert_newest_first(app, as_role, history, flags_kind):
    deploy, revert = history
    page = as_role(Role.VIEWER).get("/targets/staging/timeline").get_data(as_text=True)
    assert words_in(page) == ["flags", "checkpoints", "checkpoints", "reverts", "refusals", "checkpoints", "deploys"]
    ids = ids_in(page)
    assert ids == sorted(ids, reverse=True)
    rows = page.split('<tr id="event-')[1:]
    assert f"job #{deploy.id}</a> Deploy a branch or commit (auto rollback off; ref feature/bad (" in rows[6]
    assert '<span class="badge badge-bad">failed</span>' in rows[6] and "Automatic rollback is off" in rows[6]
    assert "Revert commits refused: &#39;abc&#39; is not a commit id" in rows[4] and "badge-warn" in rows[4]
    assert f"job #{revert.id}</a> Revert commits" in rows[3] and 'badge-ok">succeeded</span>' in rows[3]
    assert "Checkpoint #" in rows[2] and "before “Revert commits”" in rows[2]
    assert f"marked known good: verified by job #{revert.id}" in rows[1]  # the failed deploy marked nothing
    assert "signup turned off" in rows[0]  # the flags area's own words for its rows
    assert "other" not in page, "another target's rows stay on its own timeline"


def test_a_job_s_parameters_read_as_words(app, users, as_role):
    """Not Python: no unticked boxes as 'False', no underscores, no typed confirmation."""
    params = {"backup_confirmed": False, "confirm": "staging", "revision": "c3d9f27e4b10", "skip_backup": True}
    with app.app_context():
        details = {"job_id": 999, "runbook": "schema_downgrade", "params": params}
        record_and_commit("job.queued", actor=Actor(None, "oncall"), target="staging", details=details)
    page = as_role(Role.VIEWER).get("/targets/staging/timeline").get_data(as_text=True)
    assert "Downgrade the schema (revision c3d9f27e4b10; skip backup)" in page
    assert "False" not in page and "backup_confirmed" not in page
    with app.app_context():
        details = {"job_id": 998, "runbook": "config_restore", "params": {"expect": "9" * 64, "version": 1}}
        record_and_commit("job.queued", actor=Actor(None, "oncall"), target="staging", details=details)
    page = as_role(Role.VIEWER).get("/targets/staging/timeline").get_data(as_text=True)
    assert "Restore an env file version (version 1)" in page and "9" * 64 not in page  # not its guard digest


def test_a_guard_s_refusal_names_the_request_it_refused(app, users, as_role):
    with app.app_context():
        details = {"method": "POST", "path": "/targets/staging/config/reveal", "reason": "needs the admin role"}
        record_and_commit(
            "auth.denied", actor=Actor(None, "vera"), target="staging", outcome=Outcome.DENIED, details=details
        )
    page = as_role(Role.VIEWER).get("/targets/staging/timeline").get_data(as_text=True)
    assert "POST /targets/staging/config/reveal refused: needs the admin role" in page
    assert "auth.denied refused" not in page


@both_databases
def test_filter_by_kind(app, as_role, history, flags_kind):
    client = as_role(Role.VIEWER)
    assert words_in(client.get("/targets/staging/timeline?kind=deploys").get_data(as_text=True)) == ["deploys"]
    assert words_in(client.get("/targets/staging/timeline?kind=jobs").get_data(as_text=True)) == ["reverts", "deploys"]
    assert words_in(client.get("/targets/staging/timeline?kind=refusals").get_data(as_text=True)) == ["refusals"]
    assert words_in(client.get("/targets/staging/timeline?kind=flags").get_data(as_text=True)) == ["flags"]
    page = client.get("/targets/staging/timeline?kind=restarts").get_data(as_text=True)
    assert words_in(page) == [] and "Nothing recorded yet." in page
    options = client.get("/targets/staging/timeline").get_data(as_text=True)
    assert '<option value="flags">Flag changes</option>' in options


def test_pages_follow_the_cursor_without_gaps_or_repeats(app, as_role, history, flags_kind):
    with app.app_context():
        everything = [e.event.id for e in timeline.page("staging", limit=100).items]
        seen, before = [], None
        while True:
            page = timeline.page("staging", before=before, limit=2)
            seen += [e.event.id for e in page.items]
            if page.next_cursor is None:
                break
            before = page.next_cursor
    assert seen == everything and len(everything) == 7
    client = as_role(Role.VIEWER)
    first = client.get("/targets/staging/timeline").get_data(as_text=True)
    assert "Older »" not in first, "one page holds seven entries"
    older = client.get(f"/targets/staging/timeline?before={everything[2]}").get_data(as_text=True)
    assert ids_in(older) == everything[3:] and "« Newest" in older


def test_bad_filters_are_refused_clearly(as_role, users):
    client = as_role(Role.VIEWER)
    bad_kind = client.get("/targets/staging/timeline?kind=weather")
    assert bad_kind.status_code == 400
    assert "there is no timeline kind &#39;weather&#39;; choose one of jobs" in bad_kind.get_data(as_text=True)
    bad_cursor = client.get("/targets/staging/timeline?before=yesterday")
    assert bad_cursor.status_code == 400 and "the page cursor must be a row number" in bad_cursor.get_data(as_text=True)
    assert client.get("/targets/mars/timeline").status_code == 404


def test_two_kinds_cannot_share_a_key():
    with pytest.raises(ValueError, match="two timeline kinds are keyed 'deploys'"):
        timeline.register_kind(timeline.Kind("deploys", "Something else"))


def test_the_overview_shows_the_latest_entries(app, as_role, history):
    page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    recent = page[page.index("<h2>Recently</h2>") :]
    assert words_in(recent) == ["flags", "checkpoints", "checkpoints", "reverts", "refusals", "checkpoints", "deploys"]
    assert 'href="/targets/staging/timeline"' in recent


def test_an_area_row_that_failed_reads_failed(app, as_role, users):
    with app.app_context():
        record_and_commit("backups.create", outcome=Outcome.FAILED, target="staging", details={"reason": "disk full"})
        (entry,) = timeline.page("staging").items
    assert (entry.word, entry.tone, entry.text) == ("failed", "bad", "backups.create: reason disk full")


def test_a_checkpoint_without_a_commit_says_so_instead_of_a_question_mark(app, as_role, users):
    with app.app_context():
        details = {"checkpoint_id": 7, "commit": None, "reason": "flags first seen", "job_id": None}
        record_and_commit("checkpoints.record", target="staging", details=details)
        (entry,) = timeline.page("staging").items
    assert entry.text == "Checkpoint #7 before “flags first seen”: no commit recorded"
    page = as_role(Role.VIEWER).get("/targets/staging/timeline").get_data(as_text=True)
    assert "commit ?" not in page and "no commit recorded" in page


def test_a_checkpoint_taken_after_a_swap_says_after(app, as_role, users):
    with app.app_context():
        details = {"checkpoint_id": 8, "commit": "a" * 40, "reason": "after: Restore a backup", "job_id": None}
        record_and_commit("checkpoints.record", target="staging", details=details)
        (entry,) = timeline.page("staging").items
    assert entry.text == f"Checkpoint #8 after “Restore a backup”: commit {'a' * 12}"
