"""A running code target wired into a test app's targets file."""

import pytest

from app.targets import registry
from tests.support.targets import make_code_target, write_targets_file


@pytest.fixture
def code_target(app, tmp_path):
    target = make_code_target(tmp_path / "targets")
    write_targets(app, target)
    with app.app_context():
        registry.current().open(target.name).process().start()
        assert registry.current().open(target.name).health().wait_healthy().ok, "the test app did not come up"
    yield target
    with app.app_context():
        registry.current().open(target.name).process().stop()


def write_targets(app, target, **options) -> None:
    write_targets_file(app, target.toml(**options))
