"""envfile:NAME in the targets file, and process.env_file: one source for the application's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.targets.config import TargetsFileError, parse_targets
from app.targets.registry import Targets
from app.targets.target import Target

ENV = 'DATABASE_URL="postgresql://app:s3cret-pw@db:5432/app"\nMODE=safe\nBARE\n'


def targets_text(env_file: Path, **extra: str) -> str:
    lines = [f'[targets.a]\nenv_file = "{env_file}"\n', '[targets.a.repo]\npath = "/x"\n']
    for table, body in extra.items():
        lines.append(f"[targets.a.{table}]\n{body}\n")
    return "".join(lines)


@pytest.fixture
def env_file(tmp_path) -> Path:
    path = tmp_path / "app.env"
    path.write_text(ENV)
    return path


def load(text: str, tmp_path: Path):
    return parse_targets(text, tmp_path / "rewind.toml", env={})["a"]


def test_envfile_values_are_read_from_the_env_file_and_masked(env_file, tmp_path):
    config = load(targets_text(env_file, database='url = "envfile:DATABASE_URL"'), tmp_path)
    assert config.database.url == "postgresql://app:s3cret-pw@db:5432/app"
    assert config.database.url in config.secrets
    assert config.reads_env_file


def test_envfile_works_in_lists_and_tables_too(env_file, tmp_path):
    config = load(
        targets_text(env_file, process='command = ["run", "envfile:MODE"]\nenv = { APP_MODE = "envfile:MODE" }'),
        tmp_path,
    )
    assert config.process.command == ("run", "safe") and config.process.env == {"APP_MODE": "safe"}


@pytest.mark.parametrize(
    "body, problem",
    [
        ('url = "envfile:NOPE"', "key 'database.url': NOPE is not set in the env file"),
        ('url = "envfile:BARE"', "BARE is named without a value"),
    ],
)
def test_a_missing_key_is_named(env_file, tmp_path, body, problem):
    with pytest.raises(TargetsFileError, match=problem):
        load(targets_text(env_file, database=body), tmp_path)


def test_envfile_needs_an_env_file_that_parses(env_file, tmp_path):
    text = '[targets.a.repo]\npath = "/x"\n[targets.a.database]\nurl = "envfile:DATABASE_URL"\n'
    with pytest.raises(TargetsFileError, match="set env_file first"):
        load(text, tmp_path)
    env_file.write_text("DATABASE_URL='open\n")
    with pytest.raises(TargetsFileError, match=r"cannot be read: .* does not parse: line 1"):
        load(targets_text(env_file, database='url = "envfile:DATABASE_URL"'), tmp_path)


def test_process_env_file_needs_an_env_file(tmp_path):
    text = '[targets.a.repo]\npath = "/x"\n[targets.a.process]\ncommand = ["x"]\nenv_file = true\n'
    with pytest.raises(TargetsFileError, match=r"key .process\.env_file.: takes the target.s env file"):
        load(text, tmp_path)


def test_process_env_file_puts_the_file_in_every_command_env_read_when_asked(env_file, tmp_path):
    config = load(targets_text(env_file, process='command = ["x"]\nenv_file = true\nenv = { EXTRA = "1" }'), tmp_path)
    target = Target(config, tmp_path)
    env = target.command_env()
    assert env["MODE"] == "safe" and env["EXTRA"] == "1" and "BARE" not in env
    assert env["DATABASE_URL"].startswith("postgresql://app:")
    env_file.write_text("MODE=fast\n")
    assert target.command_env()["MODE"] == "fast", "a restored file is what the next command sees"


def test_without_process_env_file_the_env_file_stays_out(env_file, tmp_path):
    config = load(targets_text(env_file, process='command = ["x"]'), tmp_path)
    assert "MODE" not in Target(config, tmp_path).command_env()


def test_the_registry_rereads_envfile_values_when_the_env_file_changes(env_file, tmp_path):
    path = tmp_path / "rewind.toml"
    path.write_text(targets_text(env_file, database='url = "envfile:DATABASE_URL"'))
    targets = Targets(path, tmp_path).load()
    assert targets.config("a").database.url.endswith("/app")
    env_file.write_text('DATABASE_URL="postgresql://app:other@db:5432/restored"\n')
    assert targets.config("a").database.url.endswith("/restored")
    env_file.write_text("DATABASE_URL='broken\n")
    assert targets.config("a").database.url.endswith("/restored"), "the last good configuration stays"
    assert "does not parse" in targets.problem


def test_an_envfile_value_is_masked_in_job_logs(app, runner, tmp_path):
    from tests.deployments.test_runbooks import log_text, run
    from tests.support.targets import write_targets_file

    env = tmp_path / "app.env"
    env.write_text('API_KEY="envfile-only-9d2f"\n')
    write_targets_file(
        app,
        f'[targets.staging]\nenv_file = "{env}"\n[targets.staging.repo]\npath = "{tmp_path}"\n'
        '[targets.staging.process]\nrestart = ["true"]\nenv = { API_KEY = "envfile:API_KEY" }\n',
    )
    job, view = run(app, "test.echo", text="the key is envfile-only-9d2f")
    assert job.state == "succeeded"
    assert "the key is •••" in log_text(view) and "envfile-only-9d2f" not in log_text(view)
