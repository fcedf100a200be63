"""A Flask-Migrate application per test, on SQLite or on the session's PostgreSQL."""

import shutil

import psycopg
import pytest

# The backups area's GnuPG homes (ours, a stranger's): one pair for the session, shared with its tests.
from tests.backups.conftest import RECIPIENT, gpg_homes  # noqa: F401
from tests.schema.apps import database_url, make_migrate_app

both_target_databases = pytest.mark.parametrize("target_db", ["sqlite", "postgresql"])


@pytest.fixture(params=["sqlite"])
def target_db(request):
    return request.param


@pytest.fixture
def shop(tmp_path, target_db, request):
    return make_migrate_app(tmp_path / "shop", database_url(target_db, tmp_path, request))


@pytest.fixture
def shop_target(app, shop, request):
    """The shop wired into the app's targets file, its database at b2000002 (tokens), and its process running
    for a test that runs jobs (asks for `runner`). A test of what is refused before any job runs never reaches
    the process, and starting it is a second of CPU (a Flask-Migrate app loading)."""
    from app.jobs.engine import current_targets
    from app.targets import flask_db
    from tests.support.targets import write_targets_file

    write_targets_file(app, shop.toml())
    running = "runner" in request.fixturenames
    with app.app_context():
        target = current_targets().open(shop.name)
        _at_tokens(shop, lambda: flask_db.run(target, "upgrade", "b2000002", None))
        assert shop.versions() == {"b2000002"}
        if running:
            target.process().start()
            assert target.health().wait_healthy().ok, "the shop did not come up"
    yield shop
    if running:
        with app.app_context():
            current_targets().open(shop.name).process().stop()


# Per test process: a copy of the first shop database upgraded to b2000002, by kind of database. Each upgrade is
# a `flask db upgrade` process (a second of CPU importing Flask-Migrate), and nearly a hundred tests start there;
# the upgrade itself is tested on its own (test_adapter.py) and by the first shop of each kind here.
_TOKENS_COPY: dict[str, str] = {}


def _at_tokens(shop, upgrade) -> None:
    """Bring the shop's fresh, empty database to b2000002: upgraded for real once per process, copied after."""
    url = shop.url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if "sqlite" in _TOKENS_COPY:
            shutil.copyfile(_TOKENS_COPY["sqlite"], path)
            return
        upgrade()
        keep = f"{path}.tokens-copy"
        shutil.copyfile(path, keep)
        _TOKENS_COPY["sqlite"] = keep
        return
    server_url, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        if "postgresql" in _TOKENS_COPY:
            conn.execute(f'DROP DATABASE "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_TOKENS_COPY["postgresql"]}"')
            return
        upgrade()
        conn.execute(f'CREATE DATABASE "{name}_tokens" TEMPLATE "{name}"')
        _TOKENS_COPY["postgresql"] = f"{name}_tokens"


@pytest.fixture
def shop_backups(app, shop_target, gpg_homes, tmp_path):  # noqa: F811 - the fixture imported above
    """The shop with backups configured (a folder, the real GnuPG home, its recipient), as `Backups`."""
    from tests.schema.apps import Backups
    from tests.support.targets import write_targets_file

    backups = Backups(tmp_path / "backups", gpg_homes[0].home, (RECIPIENT,))
    write_targets_file(app, shop_target.toml(backups=backups))
    return backups
