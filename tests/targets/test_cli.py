"""`flask rewind targets check` on a reachable target and on unreachable ones."""

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
