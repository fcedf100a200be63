"""`flask rewind targets check` on a reachable target and on unreachable ones."""

import sys

from tests.deployments.conftest import code_target, write_targets  # noqa: F401 - the fixture is used below


def test_check_reports_each_part(app, code_target):  # noqa: F811
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    assert result.exit_code == 0, result.output
    assert "staging: repo: ok — main at" in result.output
    assert "staging: health: ok — healthy" in result.output
    assert "staging: process: ok — running" in result.output


def test_unreachable_parts_fail_the_check(app):
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    assert result.exit_code == 1
    assert "staging: repo: UNREACHABLE" in result.output and "production: repo: UNREACHABLE" in result.output


def test_check_names_each_key_whose_path_or_program_is_wrong(app, code_target, tmp_path):  # noqa: F811
    from tests.support.targets import write_targets_file

    migrations = tmp_path / "migrations"
    migrations.mkdir()
    backups = tmp_path / "backups"
    backups.mkdir()
    env_file = tmp_path / "app.env"
    env_file.write_text("A=1\n")
    good = code_target.toml().replace(
        "[targets.staging.repo]", f'env_file = "{env_file}"\n\n[targets.staging.repo]', 1
    ) + (
        f"""
[targets.staging.database]
url = "sqlite:///{tmp_path / "app.db"}"
migrations = "{migrations}"
flask = ["{sys.executable}", "-m", "flask"]

[targets.staging.backups]
dir = "{backups}"

[targets.staging.release]
commands = [["git", "status"]]
"""
    )
    write_targets_file(app, good)
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    for key in ("database.migrations", "database.flask", "env_file", "backups.dir", "release.commands[1]"):
        assert f"staging: {key}: ok" in result.output, result.output
    bad = (
        good.replace(str(migrations), str(tmp_path / "migrashuns"))
        .replace(str(env_file), str(tmp_path / "missing.env"))
        .replace(str(backups), str(env_file))
        .replace(sys.executable, str(tmp_path / "venv" / "bin" / "python"))
        .replace('["git", "status"]', '["no-such-pip", "install"]')
    )
    write_targets_file(app, bad)
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    assert result.exit_code == 1
    out = result.output
    assert f"staging: database.migrations: WRONG — {tmp_path / 'migrashuns'} does not exist" in out
    assert "check database.migrations in the targets file" in out
    assert f"staging: env_file: WRONG — {tmp_path / 'missing.env'} does not exist" in out
    assert f"staging: backups.dir: WRONG — {env_file} is not a folder" in out
    assert f"staging: database.flask: WRONG — program {tmp_path / 'venv' / 'bin' / 'python'} does not exist" in out
    assert "staging: process.command: WRONG" in out  # the managed process used the same interpreter
    assert "staging: release.commands[1]: WRONG — program 'no-such-pip' is not on the target's PATH" in out


def test_list_names_each_target_with_what_rewind_manages_of_it(app, code_target):  # noqa: F811
    write_targets(app, code_target, protected=True)
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "list"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "staging  protected    code, process, health\n"


def test_list_of_a_file_broken_since_start_up_says_so_and_lists_the_last_good_version(app):
    from tests.support.targets import write_targets_file

    write_targets_file(app, "[targets.staging\n")
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "list"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("the targets file on disk is broken (the last good version is listed)")
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["production", "protected"],
        ["staging", "unprotected"],
    ]


def test_check_of_a_target_whose_env_file_is_gone_names_it_and_checks_the_rest(app, tmp_path):
    """process.env_file = true and the file missing (often the incident itself): said per part, not a traceback."""
    from tests.support.targets import make_code_target, write_targets_file

    target = make_code_target(tmp_path / "targets")
    missing = tmp_path / "gone.env"
    text = target.toml().replace("[targets.staging.repo]", f'env_file = "{missing}"\n\n[targets.staging.repo]', 1)
    write_targets_file(app, text.replace("[targets.staging.health]", "env_file = true\n\n[targets.staging.health]", 1))
    result = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"staging: process: UNREACHABLE — its commands cannot run: the env file {missing} does not exist" in out
    assert f"staging: env_file: WRONG — {missing} does not exist" in out
    assert f"staging: process.command: ok — program {sys.executable}" in out
    assert "staging: repo: ok — main at" in out
