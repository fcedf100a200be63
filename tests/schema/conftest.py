"""A Flask-Migrate application per test, on SQLite or on the session's PostgreSQL."""

import pytest

from tests.schema.apps import database_url, make_migrate_app

both_target_databases = pytest.mark.parametrize("target_db", ["sqlite", "postgresql"])


@pytest.fixture(params=["sqlite"])
def target_db(request):
    return request.param


@pytest.fixture
def shop(tmp_path, target_db, request):
    return make_migrate_app(tmp_path / "shop", database_url(target_db, tmp_path, request))
