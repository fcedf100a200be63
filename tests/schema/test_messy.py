"""Migration projects and env files as real targets have them."""

from __future__ import annotations

import io
import sqlite3

from dotenv import dotenv_values

from app.targets import flask_db, registry
from tests.deployments.test_runbooks import run
from tests.support.targets import write_targets_file

# A BOM, CRLF, `export`, a quoted value followed by a comment, `#` and `=` inside quotes, a value over two lines.
MESSY_ENV = (
    '\ufeffexport DATABASE_URL="{url}" # the live one\r\n'
    "SECRET_KEY='s3cr#t=x'\r\n"
    'GREETING="two\r\nlines"\r\n'
    "BARE\r\n"
    "EMPTY=\r\n"
)


def with_env_file(shop, env_path) -> str:
    """The shop's targets-file section with DATABASE_URL only in its env file, as most apps keep it."""
    text = shop.toml().replace(f"[targets.{shop.name}.repo]", f'env_file = "{env_path}"\n[targets.{shop.name}.repo]')
    return text.replace(f'DATABASE_URL = "{shop.url}", ', "")


def test_flask_db_reads_the_env_file_as_the_application_does(tmp_path):
    env = tmp_path / "app.env"
    env.write_text(MESSY_ENV.format(url="sqlite:////srv/app.db"), newline="")
    expected = {k: v for k, v in dotenv_values(stream=io.StringIO(env.read_bytes().decode())).items() if v is not None}
    assert flask_db.read_env_file(env) == expected
    assert expected["DATABASE_URL"] == "sqlite:////srv/app.db" and expected["SECRET_KEY"] == "s3cr#t=x"
    assert flask_db.read_env_file(tmp_path / "none.env") == {}, "no env file: nothing from it"


def test_an_upgrade_runs_on_the_database_url_of_a_messy_env_file(app, runner, shop, tmp_path):
    env = tmp_path / "app.env"
    env.write_text(MESSY_ENV.format(url=shop.url), newline="")
    write_targets_file(app, with_env_file(shop, env))
    with app.app_context():
        assert flask_db.environment(registry.current().open("shop"))["DATABASE_URL"] == shop.url
    if shop.url.startswith("sqlite:///"):
        sqlite3.connect(shop.url.removeprefix("sqlite:///")).close()  # the app's empty database
    job, _ = run(app, "schema_upgrade", "shop", revision="b2000002")
    assert shop.versions() == {"b2000002"}, job.result  # the app is not running: verification may fail after
