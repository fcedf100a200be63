"""The Config tab: masked diffs, reveal for admins only and audited, snapshot, restore and edit doors; the CLI."""

from __future__ import annotations

import html
import json
import re
import secrets

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.envconfig import keys, store
from app.envconfig.models import EnvVersion
from app.extensions import db
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.statuses import EnvSource
from tests.envconfig.conftest import GOOD
from tests.support.apps import post
from tests.support.pages import names, repeated_names
from tests.support.targets import write_targets_file

SECRET = "tok-first-7f3a9c"
NEWER = "tok-second-e41d"


def refused(client, url: str, form: dict) -> str:
    """Post a form Rewind refuses: it sends the person back (303) to the page, which is returned."""
    answer = post(client, url, form)
    assert answer.status_code == 303
    return client.get(answer.headers["Location"]).get_data(as_text=True)


def no_job_queued(app) -> bool:
    with app.app_context():
        return db.session.scalar(select(Job).limit(1)) is None


def two_versions(app, env_target) -> tuple[int, int]:
    with app.app_context():
        target = current_targets().open("staging")
        first, _ = store.ensure_current(target)
        env_target.env_path.write_text(GOOD.replace(SECRET, NEWER) + "ADDED=yes\n")
        second, _ = store.ensure_current(target)
        return first.id, second.id


def many_versions(app, env_target, count: int) -> list[int]:
    """`count` versions, oldest first: the file as first seen, then copies of that real row (sealing each anew
    would only make the test slow)."""
    with app.app_context():
        first, _ = store.ensure_current(current_targets().open("staging"))
        columns = [a.key for a in EnvVersion.__mapper__.column_attrs if a.key != "id"]
        copies = [EnvVersion(**{c: getattr(first, c) for c in columns}) for _ in range(count - 1)]
        db.session.add_all(copies)
        db.session.commit()
        return [first.id, *(c.id for c in copies)]


def audit_rows(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def shown_digest(page: str) -> str:
    return re.search(r'name="expect" value="([0-9a-f]{64})"', page).group(1)


def test_the_tab_lists_versions_and_masks_every_value(app, as_role, env_target):
    first, second = two_versions(app, env_target)
    page = as_role(Role.ADMIN).get(f"/targets/staging/config?a={first}&b={second}").get_data(as_text=True)
    assert f"version #{first} → version #{second}" in page
    assert 'id="key-API_TOKEN"' in page and 'id="key-ADDED"' in page and 'id="key-MODE"' not in page
    assert "changed outside Rewind" in page and "first seen" in page
    for value in (SECRET, NEWER, "hello there", "safe"):
        assert value not in page
    assert "config/reveal" in page


def test_reveal_is_for_admins_only_and_audited_without_the_value(app, as_role, env_target):
    first, second = two_versions(app, env_target)
    assert "config/reveal" not in as_role(Role.OPERATOR).get(f"/targets/staging/config?a={first}&b={second}").get_data(
        as_text=True
    )
    refused = post(as_role(Role.OPERATOR), "/targets/staging/config/reveal", {"side": first, "key": "API_TOKEN"})
    assert refused.status_code == 403 and SECRET not in refused.get_data(as_text=True)
    admin = as_role(Role.ADMIN)
    shown = post(admin, "/targets/staging/config/reveal", {"side": str(first), "key": "API_TOKEN"})
    assert shown.status_code == 200 and SECRET in shown.get_data(as_text=True)
    # the reveal button is swapped away: keyboard focus moves to the value (rewind.js), not to the top of the page
    opening = '<span class="revealed" data-key="API_TOKEN" tabindex="-1" data-focus-after-swap>'
    assert shown.get_data(as_text=True).startswith(opening)
    assert NEWER in post(admin, "/targets/staging/config/reveal", {"side": "now", "key": "API_TOKEN"}).get_data(
        as_text=True
    )
    missing = post(admin, "/targets/staging/config/reveal", {"side": str(first), "key": "ADDED"})
    assert missing.status_code == 404
    rows = audit_rows(app, "envconfig.reveal")
    assert [(r.actor_name, r.outcome) for r in rows] == [("admin", "ok"), ("admin", "ok"), ("admin", "failed")]
    assert '"key":"API_TOKEN"' in rows[0].details
    assert all(SECRET not in r.details and NEWER not in r.details for r in rows)


def test_one_version_is_current_when_an_older_one_has_the_same_content(app, as_role, env_target):
    first, _ = two_versions(app, env_target)
    env_target.env_path.write_text(GOOD)  # put back by hand: a third version, the same as the first
    with app.app_context():
        third, _ = store.ensure_current(current_targets().open("staging"))
        third = third.id
    page = as_role(Role.VIEWER).get("/targets/staging/config").get_data(as_text=True)
    assert page.count('<span class="badge badge-info">current</span>') == 1
    cell = page.split(f'id="version-{third}">')[1].split("</td>")[0]
    assert cell.endswith('<span class="badge badge-info">current</span>')
    cell = page.split(f'id="version-{first}">')[1].split("</td>")[0]
    assert cell.endswith('<span class="hint">same as the file now</span>')


def test_a_hand_edit_since_the_newest_version_is_said_and_diffed_alone(app, as_role, env_target):
    first, second = two_versions(app, env_target)
    client = as_role(Role.VIEWER)
    page = client.get("/targets/staging/config").get_data(as_text=True)
    assert f"version #{first} → the file now" in page, "while the file is the newest version: its own change"
    assert 'id="changed-outside"' not in page
    with env_target.env_path.open("a") as env_file:
        env_file.write("MANUAL_KEY=hand-edited\n")  # by hand, not yet recorded by the monitor
    page = client.get("/targets/staging/config").get_data(as_text=True)
    notice = page.split('id="changed-outside">')[1].split("</p>")[0]
    assert f"The file differs from version #{second} (changed outside Rewind)" in notice
    assert 'class="flash flash-warn" role="status" id="changed-outside"' in page
    assert f"version #{second} → the file now" in page
    assert 'id="key-MANUAL_KEY"' in page
    assert 'id="key-API_TOKEN"' not in page and 'id="key-ADDED"' not in page, "the last recorded change stays out"
    assert "hand-edited" not in page
    assert 'badge-info">current</span>' not in page


def test_snapshot_now_keeps_a_version_once(app, as_role, env_target):
    client = as_role(Role.OPERATOR)

    def snapshot():
        # the token from the tab itself: the dashboard (whose monitor records versions too) stays unvisited
        page = client.get("/targets/staging/config").get_data(as_text=True)
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        return client.post("/targets/staging/config/snapshot", data={"csrf_token": token})

    assert snapshot().status_code == 303
    env_target.env_path.write_text(GOOD + "MORE=1\n")
    snapshot()
    unchanged = snapshot()
    assert "unchanged since version" in client.get(unchanged.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        versions = store.versions("staging")
        assert [(v.source, v.actor_name) for v in versions] == [
            (EnvSource.SNAPSHOT, "operator"),
            (EnvSource.SNAPSHOT, "operator"),
        ]
        assert versions[0].changes["added"] == ["MORE"]
    assert len(audit_rows(app, "envconfig.snapshot")) == 3


def test_versions_past_the_first_page_are_reached_by_an_older_versions_link(app, as_role, env_target):
    ids = many_versions(app, env_target, 105)
    client = as_role(Role.VIEWER)
    page = client.get("/targets/staging/config").get_data(as_text=True)
    assert f'id="version-{ids[-1]}"' in page and f'id="version-{ids[4]}"' not in page
    assert f"Versions #{ids[-1]} to #{ids[5]}; older versions on the next page." in page
    older = html.unescape(re.search(r'<a rel="next" href="([^"]+)">Older versions »</a>', page).group(1))
    assert older == f"/targets/staging/config?before={ids[5]}"
    page = client.get(older).get_data(as_text=True)
    assert [int(i) for i in re.findall(r'<tr id="version-(\d+)">', page)] == ids[4::-1]
    assert f"Versions #{ids[4]} to #{ids[0]}, the oldest." in page and "Older versions" not in page
    assert '<a href="/targets/staging/config">« Newest</a>' in page
    assert 'badge-info">current</span>' not in page, "the current version is the newest, on the first page"
    assert f'name="before" value="{ids[5]}"' in page  # choosing a diff here stays on this page
    diff_link = f"/targets/staging/config?a={ids[0]}&amp;b=now&amp;before={ids[5]}"
    assert diff_link in page
    page = client.get(html.unescape(diff_link)).get_data(as_text=True)
    assert f'<option value="{ids[0]}" selected>' in page
    page = client.get(f"/targets/staging/config?a={ids[0]}&b=now").get_data(as_text=True)
    assert f'<option value="{ids[0]}" selected>version #{ids[0]}</option>' in page  # shown though on page two


def test_a_stale_diff_is_refused_at_the_door(app, as_role, env_target):
    first, _ = two_versions(app, env_target)
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/staging/config").get_data(as_text=True)
    env_target.env_path.write_text(GOOD + "LATE=1\n")
    follow = refused(client, "/targets/staging/config/restore", {"version": first, "expect": shown_digest(page)})
    # a sentence, not the guard's parameter name ("expect: the env file …")
    assert "<strong>Error:</strong> the env file of staging changed on disk after the diff was shown" in follow
    assert no_job_queued(app)


def test_an_operator_is_told_why_there_is_no_edit_form(app, as_role, env_target):
    """QA: on a target that is not protected an operator has Restore on every version but no "Edit one setting"
    panel, and nothing said why (a protected target's tab says who restores and edits)."""
    two_versions(app, env_target)
    page = as_role(Role.OPERATOR).get("/targets/staging/config").get_data(as_text=True)
    assert 'class="danger">Restore' in page and "Edit one setting" not in page
    assert "Editing one setting is for admins; Restore puts back a whole version." in page
    for role in (Role.ADMIN, Role.VIEWER):
        assert 'id="edit-by-admin"' not in as_role(role).get("/targets/staging/config").get_data(as_text=True)


@pytest.mark.parametrize("protected, who", [(False, "operators"), (True, "admins (staging is protected)")])
def test_a_viewer_is_told_who_restores(app, as_role, env_target, protected, who):
    """QA: a viewer's Config tab had no Snapshot, Restore or Edit, and no word why: in an incident that reads as
    "this cannot be restored"."""
    write_targets_file(app, env_target.toml(protected=protected))
    two_versions(app, env_target)
    page = as_role(Role.VIEWER).get("/targets/staging/config").get_data(as_text=True)
    assert "Restore<" not in page and "Snapshot now" not in page
    said = f"Your role reads only: snapshots are for operators, restores for {who}; editing one setting and "
    assert said in page
    for role in (Role.ADMIN, Role.OPERATOR):
        assert 'id="config-read-only"' not in as_role(role).get("/targets/staging/config").get_data(as_text=True)


def test_a_protected_target_is_restored_by_an_admin_who_types_its_name(app, as_role, env_target):
    write_targets_file(app, env_target.toml(protected=True))
    first, _ = two_versions(app, env_target)
    operator = as_role(Role.OPERATOR)
    page = operator.get("/targets/staging/config").get_data(as_text=True)
    assert 'class="danger">Restore' not in page
    assert "staging is protected: an admin restores or edits its env file." in page  # why there is no button
    for role in (Role.ADMIN, Role.VIEWER):  # admins have the buttons; viewers change nothing anywhere
        assert 'id="restore-by-admin"' not in as_role(role).get("/targets/staging/config").get_data(as_text=True)
    shown = as_role(Role.ADMIN).get("/targets/staging/config").get_data(as_text=True)
    restore = shown.split(f'id="version-{first}"')[1].split("</form>")[0]
    # a visible label saying what to type, not a placeholder cut off in a narrow box
    assert (
        f'<label for="confirm-{first}">Type <kbd>staging</kbd> to confirm<span class="sr-only"> the restore' in restore
    )
    assert "placeholder" not in restore
    form = {
        "version": first,
        "expect": shown_digest(as_role(Role.ADMIN).get("/targets/staging/config").get_data(as_text=True)),
    }
    assert post(operator, "/targets/staging/config/restore", form).status_code == 403
    admin = as_role(Role.ADMIN)
    untyped = post(admin, "/targets/staging/config/restore", form, follow_redirects=True).get_data(as_text=True)
    assert "<strong>Error:</strong> staging is protected: type its name, staging" in untyped
    typed = post(admin, "/targets/staging/config/restore", {**form, "confirm": "staging"})
    assert typed.status_code == 303 and "/jobs/" in typed.headers["Location"]


def test_edit_seals_the_value_before_it_reaches_the_job_or_the_audit_log(app, as_role, env_target):
    two_versions(app, env_target)
    admin = as_role(Role.ADMIN)
    page = admin.get("/targets/staging/config").get_data(as_text=True)
    # the browser's refusal of a bad key says what a key is (its bubble shows the title), not just "match the format"
    assert "title=\"letters, digits, '_' and '.', not starting with a digit\"" in page
    answer = post(
        admin,
        "/targets/staging/config/edit",
        {"key": "API_TOKEN", "value": "tok-typed-by-hand-99", "expect": shown_digest(page)},
    )
    assert answer.status_code == 303 and "/jobs/" in answer.headers["Location"]
    shown = admin.get(answer.headers["Location"]).get_data(as_text=True).split("<dt>Parameters</dt>")[1]
    assert "<code>key=API_TOKEN</code>" in shown.split("</dd>")[0] and "sealed=" not in shown  # ciphertext: unreadable
    with app.app_context():
        job = db.session.scalar(select(Job))
        assert job.runbook == "config_edit" and "tok-typed-by-hand-99" not in job.params_json
    assert all("tok-typed-by-hand-99" not in r.details for r in audit_rows(app, "job.queued"))
    assert post(as_role(Role.OPERATOR), "/targets/staging/config/edit", {"key": "A", "value": "b"}).status_code == 403


def test_a_target_without_an_env_file_says_how_to_add_one(app, as_role):
    page = as_role(Role.VIEWER).get("/targets/staging/config").get_data(as_text=True)
    assert "has no env file" in page and "env_file" in page


def test_cli_lists_versions_and_diffs_with_values_masked(app, env_target):
    first, second = two_versions(app, env_target)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["rewind", "config", "versions", "staging"])
    assert listed.exit_code == 0
    assert f"#{second}" in listed.output and "changed outside Rewind" in listed.output
    assert "added: ADDED; changed: API_TOKEN" in listed.output
    shown = runner.invoke(args=["rewind", "config", "diff", "staging", str(first), "now"])
    assert shown.exit_code == 0, shown.output
    assert "changed  API_TOKEN = •••" in shown.output and "added    ADDED = •••" in shown.output
    assert SECRET not in shown.output and NEWER not in shown.output
    with app.app_context():
        target = current_targets().open("staging")
        digest = keys.file_digest(target.instance_dir, env_target.env_path.read_bytes())
    # how to restore it from here, as a command to run (was "… passes expect=<that>")
    assert shown.output.splitlines()[-1] == (
        f"to put version #{first} back: flask rewind run staging config_restore version={first} "
        f"expect={digest} --as YOU"
    )
    same = runner.invoke(args=["rewind", "config", "diff", "staging", str(second), "now"])
    assert "no key differs" in same.output and "config_restore" not in same.output  # nothing to put back
    unknown = runner.invoke(args=["rewind", "config", "diff", "staging", "4242", "now"])
    assert unknown.exit_code == 6 and "no env file version '4242'" in unknown.stderr


def test_an_unparsable_file_is_shown_with_its_line_and_reason(app, as_role, env_target):
    two_versions(app, env_target)
    env_target.env_path.write_text("MODE=safe\nGREETING='never closed\n")
    page = as_role(Role.ADMIN).get("/targets/staging/config").get_data(as_text=True)
    assert "The file on disk does not parse: line 2: the single quote opened on this line is never closed" in page
    assert "Edit one setting" not in page, "no edit of a file that cannot be read as the app reads it"


def test_an_unknown_version_in_the_diff_is_a_404_naming_it(app, as_role, env_target):
    two_versions(app, env_target)
    answer = as_role(Role.VIEWER).get("/targets/staging/config?a=4242&b=now")
    assert answer.status_code == 404 and "staging has no env file version" in answer.get_data(as_text=True)
    for bad in (2**70, 0, "-1"):
        answer = as_role(Role.VIEWER).get(f"/targets/staging/config?a={bad}&b=now")
        assert answer.status_code == 404 and "staging has no env file version" in answer.get_data(as_text=True)


def test_the_overview_and_dashboard_card_name_the_env_version_in_force(app, as_role, env_target):
    _, second = two_versions(app, env_target)
    client = as_role(Role.VIEWER)
    for url in ("/targets/staging", "/dashboard/cards"):
        assert f"version #{second}: changed outside Rewind at" in client.get(url).get_data(as_text=True)
    assert '<option value="config">' in client.get("/targets/staging/timeline").get_data(as_text=True)
    # QA: a hand edit read as the recorded version in force for up to the monitor's next look (30 s)
    env_target.env_path.write_text(env_target.env_path.read_text() + "HAND_EDIT=1\n")
    for url in ("/targets/staging", "/dashboard/cards"):
        page = client.get(url).get_data(as_text=True)
        assert f"the file differs from version #{second}: changed outside Rewind (modified <time" in page, url
    env_target.env_path.unlink()  # review: a file gone read as "unchanged", the card green
    for url in ("/targets/staging", "/dashboard/cards"):
        page = client.get(url).get_data(as_text=True)
        assert f'badge-bad">version #{second}: the file cannot be read: ' in page, url


@pytest.mark.parametrize("how", ["snapshot", "outside"])
def test_a_version_that_does_not_parse_is_a_warning_naming_the_problem(app, as_role, env_target, how):
    client = as_role(Role.OPERATOR)
    two_versions(app, env_target)
    env_target.env_path.write_text("MODE=safe\nGREETING='never closed\n")
    with app.app_context():  # as Snapshot now does, or the monitor on its round
        source = EnvSource.SNAPSHOT if how == "snapshot" else None
        newest, recorded = store.ensure_current(current_targets().open("staging"), source=source, actor="operator")
        newest = newest.id
    assert recorded
    problem = "line 2: the single quote opened on this line is never closed"
    said = "recorded" if how == "snapshot" else "changed outside Rewind at"
    line = re.compile(
        rf'badge-warn">version #{newest}[:,] {said} <time [^>]*>[^<]*</time>; it does not parse: {problem}</span>'
    )
    for url in ("/targets/staging", "/dashboard/cards"):
        got = client.get(url).get_data(as_text=True)
        assert line.search(got), [
            ln for ln in got.splitlines() if "version #" in ln
        ]  # a snapshot's was green, without the why
    row = client.get("/targets/staging/config").get_data(as_text=True).split(f'id="version-{newest}">')[1]
    assert f'<span class="badge badge-warn">does not parse</span> {problem}' in row.split("</tr>")[0]


def test_the_timeline_says_snapshots_and_reveals_in_words(app, as_role, env_target):
    first, second = two_versions(app, env_target)
    admin = as_role(Role.ADMIN)
    page = admin.get("/targets/staging/config").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    admin.post("/targets/staging/config/snapshot", data={"csrf_token": token})  # the file is the second version
    post(admin, "/targets/staging/config/reveal", {"side": str(first), "key": "API_TOKEN"})
    post(admin, "/targets/staging/config/reveal", {"side": "now", "key": "NOPE"})
    timeline = admin.get("/targets/staging/timeline?kind=config").get_data(as_text=True)
    assert f"Snapshot of the env file: unchanged since version #{second}, nothing new kept" in timeline
    assert f"Revealed API_TOKEN of version #{first}" in timeline
    assert "Reveal of NOPE of the file now failed: the file now has no key &#39;NOPE&#39;" in timeline
    assert "recorded False" not in timeline and "envconfig.reveal" not in timeline
    assert SECRET not in timeline


def test_a_hand_edit_of_the_env_file_is_on_the_timeline(app, as_role, env_target):
    """QA: a restore, an edit, even a reveal were on the target's timeline; the hand edit that broke the app (kept as
    a version "changed outside Rewind") was only on the Config tab."""
    _, second = two_versions(app, env_target)  # the file as first seen, then the same file edited by hand
    timeline = as_role(Role.VIEWER).get("/targets/staging/timeline?kind=config").get_data(as_text=True)
    said = html.unescape(re.sub(r"<[^>]+>", "", timeline))
    assert "The env file changed outside Rewind (modified " in said
    assert f"added: ADDED; changed: API_TOKEN): kept as version #{second}" in said
    assert SECRET not in timeline and NEWER not in timeline
    [row] = audit_rows(app, "envconfig.outside")
    assert (row.actor_name, row.target) == ("system", "staging")
    assert "the file as Rewind first saw it" not in timeline, "the first sight of a file is no outside change"
    assert "does not parse" not in said


def test_a_hand_edit_that_breaks_the_env_file_says_so_on_the_timeline_and_in_the_shell(app, as_role, env_target):
    """Review: the edit that broke the file, the prime suspect, read as an outside change with no key named and no
    word of its not parsing; the shell listed it as "no key changed"."""
    two_versions(app, env_target)
    env_target.env_path.write_text("MODE=safe\nGREETING='never closed ghp-secret-part\n")
    with app.app_context():
        broken, recorded = store.ensure_current(current_targets().open("staging"))
        broken = broken.id
    assert recorded
    timeline = as_role(Role.VIEWER).get("/targets/staging/timeline?kind=config").get_data(as_text=True)
    said = html.unescape(re.sub(r"<[^>]+>", "", timeline))
    assert f"kept as version #{broken}; it does not parse (the Config tab says where)" in said
    assert "ghp-secret-part" not in timeline  # where and why is on the Config tab, for those who may see it
    listed = app.test_cli_runner().invoke(args=["rewind", "config", "versions", "staging"])
    entry = listed.output.split(f"#{broken} ")[1].split("\n#")[0]
    assert "keys cannot be compared [does not parse: line 2:" in " ".join(entry.split()), entry


def test_the_version_that_fixes_a_broken_file_says_what_it_is_compared_with(app, as_role, env_target):
    """QA: the file broken by hand, then put back as it was: the fixed version read "no key changed" in the shell
    (and nothing on the tab) right under the broken one, as if the fix had done nothing. Its keys are compared with
    the newest version that parses, and it says which."""
    _, second = two_versions(app, env_target)
    good = env_target.env_path.read_bytes()
    env_target.env_path.write_text("MODE=safe\nGREETING='never closed\n")
    with app.app_context():
        target = current_targets().open("staging")
        broken = store.ensure_current(target)[0].id
        env_target.env_path.write_bytes(good)
        fixed = store.ensure_current(target)[0].id
    listed = app.test_cli_runner().invoke(args=["rewind", "config", "versions", "staging"])
    entry = " ".join(listed.output.split(f"#{fixed} ")[1].split("\n#")[0].split())
    assert f"no key changed since version #{second}, the newest before it that parses" in entry, entry
    page = as_role(Role.VIEWER).get("/targets/staging/config").get_data(as_text=True)
    row = " ".join(re.sub(r"<[^>]+>", " ", page.split(f'id="version-{fixed}"')[1].split("</tr>")[0]).split())
    assert f"no key changed since version #{second}, the newest before it that parses" in row, row
    assert f"#{broken}" not in row


def test_a_diff_where_no_key_differs_shows_no_empty_table_head(app, as_role, env_target):
    _, second = two_versions(app, env_target)
    page = as_role(Role.VIEWER).get(f"/targets/staging/config?a={second}&b=now").get_data(as_text=True)
    diff = page.split('id="diff"')[1].split("</table>")[0]
    assert f"version #{second} → the file now: no key differs" in diff and "<thead>" not in diff


def test_a_diff_where_only_comments_differ_says_the_files_differ_and_how_to_restore(app, as_role, env_target):
    """QA: a comment added by hand read "no key differs" on the tab, beside a Restore button for that version, and
    the shell printed no restore command at all, though it is the command the shell's refusal points to."""
    _, second = two_versions(app, env_target)
    env_target.env_path.write_bytes(env_target.env_path.read_bytes() + b"# rotated by hand, see the incident\n")
    page = as_role(Role.OPERATOR).get(f"/targets/staging/config?a={second}&b=now").get_data(as_text=True)
    diff = page.split('id="diff">')[1].split("</table>")[0]
    words = "no key differs; the files differ elsewhere (comments, blank lines, order or quoting)"
    assert f"version #{second} → the file now: {words}" in diff
    assert "Restore<" in restore_form(page, second)
    said = app.test_cli_runner().invoke(args=["rewind", "config", "diff", "staging", str(second), "now"])
    assert said.exit_code == 0 and f"  {words}" in said.output, said.output
    assert f"to put version #{second} back: flask rewind run staging config_restore version={second}" in said.output


def restore_form(page: str, version: int) -> str:
    return page.split(f'id="version-{version}"')[1].split("</form>")[0]


def test_a_refused_restore_comes_back_to_its_form_with_the_reason_beside_it(app, as_role, env_target):
    write_targets_file(app, env_target.toml(protected=True))
    first, _ = two_versions(app, env_target)
    admin = as_role(Role.ADMIN)
    shown = admin.get(f"/targets/staging/config?a={first}&b=now").get_data(as_text=True)
    form = {"version": first, "expect": shown_digest(shown), "confirm": "stagin", "next": restore_form(shown, first)}
    form["next"] = re.search(r'name="next" value="([^"]+)"', form["next"]).group(1).replace("&amp;", "&")
    answer = post(admin, "/targets/staging/config/restore", form)
    # back to the tab as it was shown (the same diff), not to the job form or a bare tab
    assert answer.status_code == 303 and answer.headers["Location"] == f"/targets/staging/config?a={first}&b=now"
    page = admin.get(answer.headers["Location"]).get_data(as_text=True)
    refused = restore_form(page, first)
    assert f'id="confirm-{first}" name="confirm" value="stagin"' in refused  # what was typed, kept
    assert f'aria-invalid="true" aria-describedby="confirm-{first}-error"' in refused
    assert "staging is protected: type its name, staging, to confirm" in refused  # the reason, beside the field
    assert "<strong>Error:</strong> staging is protected" in page
    # shown once: a reload neither re-submits nor shows it again
    again = admin.get(answer.headers["Location"]).get_data(as_text=True)
    assert "field-error" not in again and 'value="stagin"' not in again


def test_a_stale_restore_says_why_beside_its_button(app, as_role, env_target):
    first, _ = two_versions(app, env_target)
    client = as_role(Role.OPERATOR)
    digest = shown_digest(client.get("/targets/staging/config").get_data(as_text=True))
    env_target.env_path.write_text(GOOD + "LATE=1\n")
    answer = post(client, "/targets/staging/config/restore", {"version": first, "expect": digest})
    refused = restore_form(client.get(answer.headers["Location"]).get_data(as_text=True), first)
    assert f'<span class="field-error" id="restore-{first}-error">the env file of staging changed on disk' in refused
    assert f'aria-describedby="restore-{first}-error"' in refused


def test_a_refused_edit_keeps_the_key_and_confirmation_but_never_the_value(app, as_role, env_target):
    write_targets_file(app, env_target.toml(protected=True))
    two_versions(app, env_target)
    admin = as_role(Role.ADMIN)
    page = admin.get("/targets/staging/config").get_data(as_text=True)
    form = {"key": "GREETING", "value": "tok-typed-by-hand-99", "expect": shown_digest(page), "confirm": "prod"}
    back = refused(admin, "/targets/staging/config/edit", form)
    edit = back.split('action="/targets/staging/config/edit"')[1].split("</form>")[0]
    assert 'id="edit-key" name="key" value="GREETING"' in edit
    assert 'id="edit-confirm" name="confirm" value="prod"' in edit
    assert 'aria-describedby="edit-confirm-error"' in edit and "type its name, staging" in edit
    assert "tok-typed-by-hand-99" not in back, "a typed secret is never sent back to the page"
    assert "type the value again" in edit
    bad_key = post(admin, "/targets/staging/config/edit", {**form, "key": "1BAD", "confirm": "staging"})
    edit = admin.get(bad_key.headers["Location"]).get_data(as_text=True).split('id="edit-key"')[1].split("</form>")[0]
    assert 'name="key" value="1BAD"' in edit and 'aria-describedby="edit-key-error"' in edit
    assert "&#39;1BAD&#39; is not a key name" in edit
    assert no_job_queued(app)


def test_a_value_too_long_to_seal_for_a_job_is_refused_beside_the_value_field(app, as_role, env_target):
    two_versions(app, env_target)
    admin = as_role(Role.ADMIN)
    page = admin.get("/targets/staging/config").get_data(as_text=True)
    typed = secrets.token_urlsafe(6000)  # 8,000 random characters: about 6,000 bytes even compressed
    form = {"key": "GREETING", "value": typed, "expect": shown_digest(page)}
    back = refused(admin, "/targets/staging/config/edit", form)
    edit = back.split('action="/targets/staging/config/edit"')[1].split("</form>")[0]
    assert 'aria-describedby="edit-value-error"' in edit
    assert "is too long: sealed for the job it takes" in edit and "a job holds at most 4,096" in edit
    assert "Sealed value" not in back and typed not in back
    assert no_job_queued(app)
    with app.app_context():  # refused, so audited as a refusal, without the value
        refusal = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (refusal.action, refusal.outcome) == ("job.queued", "denied") and "is too long" in refusal.details
    assert typed not in refusal.details


def test_the_job_page_and_jobs_show_leave_out_the_typed_name_and_the_guard_digest(app, as_role, env_target):
    write_targets_file(app, env_target.toml(protected=True))
    first, _ = two_versions(app, env_target)
    admin = as_role(Role.ADMIN)
    digest = shown_digest(admin.get("/targets/staging/config").get_data(as_text=True))
    typed = post(admin, "/targets/staging/config/restore", {"version": first, "expect": digest, "confirm": "staging"})
    page = admin.get(typed.headers["Location"]).get_data(as_text=True)
    shown = page.split("<dt>Parameters</dt>")[1].split("</dd>")[0]
    assert f"<code>version={first}</code>" in shown
    assert "confirm=" not in shown and digest not in page
    job_id = typed.headers["Location"].rsplit("/", 1)[1]
    out = app.test_cli_runner().invoke(args=["rewind", "jobs", "show", job_id]).output
    assert f"params:   version={first}\n" in out and digest not in out and "confirm" not in out
    with app.app_context():  # kept on the job all the same: the runbook checks the digest again before writing
        assert db.session.get(Job, int(job_id)).params["expect"] == digest


def test_each_diff_with_now_link_says_which_version_to_a_screen_reader(app, as_role, env_target):
    first, second = two_versions(app, env_target)
    page = as_role(Role.VIEWER).get("/targets/staging/config").get_data(as_text=True)
    links = re.findall(r'<a href="/targets/staging/config\?a=(\d+)&amp;b=now">(.*?)</a>', page)
    names = {version: re.sub(r"<[^>]+>", "", text) for version, text in links}
    # the visible words start the accessible name (label in name); the hidden rest tells the links apart
    assert names == {str(v): f"Diff with now (version #{v})" for v in (first, second)}
    assert all('<span class="sr-only"> (version #' in text for _, text in links)


def test_each_reveal_button_and_refusal_names_its_side_as_the_page_does(app, as_role, env_target):
    first, second = two_versions(app, env_target)
    admin = as_role(Role.ADMIN)
    page = admin.get(f"/targets/staging/config?a={first}&b=now").get_data(as_text=True)
    labels = set(re.findall(r'aria-label="(Reveal API_TOKEN in [^"]*)"', page))
    assert labels == {f"Reveal API_TOKEN in version #{first}", "Reveal API_TOKEN in the file now"}, labels
    missing = post(admin, "/targets/staging/config/reveal", {"side": str(second), "key": "NOPE"})
    assert missing.status_code == 404
    assert f"version #{second} has no key &#39;NOPE&#39;" in missing.get_data(as_text=True)


def test_a_restore_or_edit_of_a_target_without_an_env_file_is_refused_saying_so_and_audited(app, as_role):
    admin = as_role(Role.ADMIN)  # a tab opened before env_file was taken out of the targets file
    for door, form in (("restore", {"version": "1", "expect": "0" * 64}), ("edit", {"key": "MODE", "value": "x"})):
        page = refused(admin, f"/targets/staging/config/{door}", form)
        assert "Nothing was changed: staging has no env file" in page, door
        assert "no env file version" not in page
    denied = [json.loads(row.details) for row in audit_rows(app, "job.queued")]
    assert [(d["runbook"], d["reason"]) for d in denied] == [
        ("config_restore", "Nothing was changed: staging has no env file."),
        ("config_edit", "Nothing was changed: staging has no env file."),
    ]
    assert all(row.outcome == "denied" for row in audit_rows(app, "job.queued")) and no_job_queued(app)


def test_a_restore_while_another_job_holds_the_target_is_refused_as_busy_not_as_stale(app, as_role, env_target, runner):
    """Review: the restore's checks read the env file before the busy check, so a job rewriting it answered for the
    busy target with a stale-page refusal; the busy target is said first, naming the job."""
    from app.audit.store import Actor
    from app.jobs import runbook as runbooks
    from app.jobs import service
    from app.jobs.models import Job
    from tests.conftest import wait_for
    from tests.support.jobs import finished

    first, _ = two_versions(app, env_target)
    client = as_role(Role.OPERATOR)
    digest = shown_digest(client.get("/targets/staging/config").get_data(as_text=True))
    env_target.env_path.write_text(GOOD + "LATE=1\n")  # as a job rewriting it would leave it, mid-way
    with app.app_context():
        book = runbooks.get("test.sleep")
        job_id = service.enqueue(
            book, "staging", book.parse_params({"seconds": "60"}, "staging"), Actor(None, "ops")
        ).id
        wait_for(lambda: db.session.get(Job, job_id).state == "running" or db.session.commit(), timeout=30)
    try:
        answer = post(client, "/targets/staging/config/restore", {"version": first, "expect": digest})
        page = html.unescape(client.get(answer.headers["Location"]).get_data(as_text=True))
        assert f"staging is busy: job #{job_id} (Sleep on a target" in page, page
        assert "the env file of staging changed on disk" not in page  # the stale refusal, answering for a busy one
    finally:
        with app.app_context():
            service.cancel(db.session.get(Job, job_id), Actor(None, "ops"))
        finished(app, job_id)


def test_while_a_job_holds_the_target_restore_and_set_are_greyed_naming_the_job(app, users, as_role, env_target):
    """As the other tabs do: offered, they could only be refused as busy."""
    from app.audit.store import Actor
    from app.jobs import runbook as runbooks
    from app.jobs import service

    first, _ = two_versions(app, env_target)
    admin = as_role(Role.ADMIN)
    for button in ("Restore", "Set"):
        page = admin.get("/targets/staging/config").get_data(as_text=True)
        assert f'<button type="submit" class="danger">{button}<' in page, button
    with app.app_context():
        held = service.enqueue(
            runbooks.get("test.sleep"), "staging", {"seconds": 60}, Actor(users[Role.ADMIN], "admin")
        )
        words = f"Wait for job #{held.id} (Sleep on a target, queued) to end."
    page = admin.get("/targets/staging/config").get_data(as_text=True)
    # one per version: greyed, pointing to the busy notice above rather than saying it again in every row
    assert '<button type="submit" class="danger" disabled aria-describedby="busy-notice">Restore<' in (
        restore_form(page, first)
    )
    assert f"job #{held.id}</a> (Sleep on a target, queued) is changing staging" in page
    assert f'<button type="submit" class="danger" disabled>Set</button> <span class="hint why-disabled">{words}' in page


def test_each_version_s_restore_and_typed_name_say_which_version(app, as_role, env_target):
    """QA: every version's "Restore" and "Type staging to confirm" read alike out of the row's context."""
    write_targets_file(app, env_target.toml(protected=True))
    first, _ = two_versions(app, env_target)
    page = as_role(Role.ADMIN).get("/targets/staging/config").get_data(as_text=True)
    assert repeated_names(page) == {}
    assert f"Restore version #{first}" in names(page)
    assert f"Type staging to confirm the restore of version #{first}" in names(page, "label")


def test_a_diff_with_a_side_that_does_not_parse_lists_no_key_as_removed(app, as_role, env_target):
    """QA: a quote left open made "version → the file now" list every setting as removed, beside "the file now
    does not parse"; the shell's diff did too. Its keys are unknown, not gone; and the way back is still said."""
    _, second = two_versions(app, env_target)
    env_target.env_path.write_text("MODE=safe\nGREETING='never closed\n")
    page = as_role(Role.ADMIN).get(f"/targets/staging/config?a={second}&b=now").get_data(as_text=True)
    diff = page.split('id="diff">')[1].split("</table>")[0]
    assert f"version #{second} → the file now: the keys cannot be compared" in diff and "removed" not in diff
    assert "the file now does not parse: line 2: the single quote opened on this line is never closed" in page
    said = app.test_cli_runner().invoke(args=["rewind", "config", "diff", "staging", str(second), "now"])
    assert said.exit_code == 0 and "  the keys cannot be compared" in said.output and "removed" not in said.output
    assert f"to put version #{second} back: flask rewind run staging config_restore version={second}" in said.output
