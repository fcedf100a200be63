"""One target's broken health check never blinds the other cards."""

import dataclasses

from app.auth.roles import Role
from app.targets import registry
from app.targets.config import HealthConfig
from app.targets.monitor import monitor


def test_one_failing_check_does_not_stop_the_others(app, users, as_role):
    with app.app_context():
        loaded = registry.targets()
        # a check the loader would refuse today, as an older Rewind accepted it: it raises when used
        broken = dataclasses.replace(loaded["production"], health=HealthConfig("http://ops:pw@127.0.0.1:9/health"))
        path = app.config["REWIND_SETTINGS"].config_path
        registry._cache[path] = (path.stat().st_mtime, {**loaded, "production": broken}, None)
        health = monitor(app)
        health.probe_all()
        assert health.reading("staging") is not None and health.reading("staging").failed is None
        failed = health.reading("production").failed
    assert failed.startswith("ValueError: ") and "ops:pw" not in failed
    cards = as_role(Role.VIEWER).get("/dashboard/cards").get_data(as_text=True)
    assert "check failed: ValueError" in cards
