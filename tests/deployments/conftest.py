"""A running code target wired into a test app's targets file."""

import pytest

from app.targets import registry
from tests.support.targets import make_code_target


@pytest.fixture
def code_target(app, tmp_path):
    target = make_code_target(tmp_path / "targets")
    write_targets(app, target)
    with app.app_context():
        registry.target(target.name).process().start()
        assert registry.target(target.name).health().wait_healthy().ok, "the test app did not come up"
    yield target
    with app.app_context():
        registry.target(target.name).process().stop()


def write_targets(app, target, **options) -> None:
    path = app.config["REWIND_SETTINGS"].config_path
    path.write_text(target.toml(**options))
    registry._cache.clear()  # the file may be rewritten within the same second
