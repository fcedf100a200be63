"""database.migrate_on_deploy: on by default with migrations, refused without them."""

from pathlib import Path

import pytest

from app.targets.config import TargetsFileError, parse_targets

BASE = """
[targets.app.repo]
path = "/srv/app"

[targets.app.database]
url = "sqlite:////srv/app.db"
"""


def database(extra: str):
    return parse_targets(BASE + extra, Path("/etc/rewind.toml"))["app"].database


def test_migrate_on_deploy_defaults_to_on_when_migrations_are_set():
    assert database('migrations = "/srv/app/migrations"\n').migrate_on_deploy is True
    assert database("").migrate_on_deploy is False
    assert database('migrations = "/srv/app/migrations"\nmigrate_on_deploy = false\n').migrate_on_deploy is False


def test_migrate_on_deploy_without_migrations_is_refused():
    with pytest.raises(TargetsFileError) as caught:
        database("migrate_on_deploy = true\n")
    assert str(caught.value) == (
        "/etc/rewind.toml: target 'app': key 'database.migrate_on_deploy': "
        "needs database.migrations: the folder holding versions/"
    )
