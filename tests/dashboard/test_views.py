"""The dashboard: its recent activity follows by itself, as a background request that keeps no session alive."""

from sqlalchemy import select

from app.auth.models import ServerSession
from app.auth.roles import Role
from app.checkpoints import store
from app.extensions import db
from tests.auth.test_views import age_sessions
from tests.support.apps import post
from tests.support.targets import git


def _section(page: str, section_id: str) -> str:
    start = page.index(f'id="{section_id}"')
    return page[page.rindex("<section", 0, start) : page.index("</section>", start)]


def _last_seen(app, user_id: int):
    with app.app_context():
        return db.session.scalar(select(ServerSession.last_seen_at).where(ServerSession.user_id == user_id))


def test_recent_activity_follows_by_itself_without_keeping_the_session_alive(app, users, as_role):
    """An account created by someone else while the dashboard is open shows in its activity on the next poll."""
    viewer = as_role(Role.VIEWER)
    page = viewer.get("/").get_data(as_text=True)
    activity = _section(page, "recent-activity")
    tag = activity.split(">", 1)[0]
    assert 'hx-get="/dashboard/activity"' in tag and 'hx-trigger="every 10s"' in tag, tag
    assert 'hx-select="#recent-activity"' in tag and 'hx-swap="outerHTML"' in tag, tag
    assert """hx-headers='{"X-Rewind-Background": "1"}'""" in tag, tag
    assert "admin <code>user.create</code>" not in activity

    admin = as_role(Role.ADMIN)
    assert post(admin, "/users", {"name": "dana", "role": "operator"}).status_code == 201
    age_sessions(app, 29)
    before = _last_seen(app, users[Role.VIEWER])

    polled = viewer.get("/dashboard/activity", headers={"HX-Request": "true", "X-Rewind-Background": "1"})
    assert polled.status_code == 200
    fresh = _section(polled.get_data(as_text=True), "recent-activity")
    assert "admin <code>user.create</code>" in fresh, fresh
    assert _last_seen(app, users[Role.VIEWER]) == before, "the poll did not push the idle deadline back"

    assert "admin <code>user.create</code>" in _section(viewer.get("/").get_data(as_text=True), "recent-activity")
    assert _last_seen(app, users[Role.VIEWER]) > before, "a person's request still counts"


def test_the_target_cards_follow_by_themselves_too(app, users, as_role):
    page = as_role(Role.VIEWER).get("/").get_data(as_text=True)
    start = page.index('id="target-cards"')
    tag = page[page.rindex("<div", 0, start) : page.index(">", start)]
    assert 'hx-get="/dashboard/cards"' in tag and 'hx-select="#target-cards"' in tag, tag
    assert """hx-headers='{"X-Rewind-Background": "1"}'""" in tag, tag


def test_a_known_good_commit_a_reset_removed_is_named_not_none_recorded_yet(app, users, as_role, code_target):
    """After a reset past every verified commit (a reset gone wrong), "none recorded yet" read as if nothing had
    ever been verified: the card and the overview name the newest verified commit, no longer on the branch."""
    good = code_target.commits[-1]
    with app.app_context():
        store.mark_known_good(code_target.name, good, None)
    git(code_target.repo, "reset", "-q", "--hard", code_target.commits[1])
    viewer = as_role(Role.VIEWER)
    words = f"the newest verified commit, <code>{good[:12]}</code>, is no longer on it"
    overview = viewer.get(f"/targets/{code_target.name}").get_data(as_text=True)
    known = overview[overview.index('id="overview-known-good"') :]
    known = known[: known.index("</dd>")]
    assert f"none on <code>main</code>: {words}" in known and "none recorded yet" not in known, known
    card = viewer.get("/").get_data(as_text=True)
    known = card[card.index("Last known good:") :]
    known = known[: known.index("</p>")]
    assert f"none on the branch: {words}" in known and "none recorded yet" not in known, known
