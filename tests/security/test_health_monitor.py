"""One target's broken health check never blinds the other cards."""

import dataclasses

from app.auth.roles import Role
from app.jobs.engine import engine
from app.targets.config import HealthConfig


def test_one_failing_check_does_not_stop_the_others(app, users, as_role, monkeypatch):
    with app.app_context():
        targets = engine(app).targets
        loaded = {config.name: config for config in targets.all()}
        # a check the loader would refuse today, as an older Rewind accepted it: it raises when used
        broken = dataclasses.replace(loaded["production"], health=HealthConfig("http://ops:pw@127.0.0.1:9/health"))
        monkeypatch.setattr(targets, "_current", lambda: {**loaded, "production": broken})
        health = engine(app).health
        health.probe_all()
        assert health.reading("staging") is not None and health.reading("staging").failed is None
        failed = health.reading("production").failed
    assert failed.startswith("ValueError: ") and "ops:pw" not in failed
    cards = as_role(Role.VIEWER).get("/dashboard/cards").get_data(as_text=True)
    card = cards[cards.index('id="target-production"') :]
    card = card[: card.index("</section>")]
    # the badge says it; the words beside it are the reason (they read "check failed check failed: ValueError")
    assert "check failed</span> ValueError: " in card and card.count("check failed") == 1, card
