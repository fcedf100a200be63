"""The runbook API's building blocks: parameters, commands, redaction."""

import os
import sys
import time

import pytest

from app.auth.roles import Role
from app.jobs import runbook as runbooks
from app.jobs.process import CommandCancelled, CommandTimedOut, run_command
from app.jobs.redact import Redactor
from app.jobs.runbook import Param, ParamError, Runbook, Step


def collect():
    lines = []
    return lines, lambda stream, line: lines.append((stream, line))


def test_command_streams_stdout_and_stderr_lines():
    lines, on_line = collect()
    script = "import sys; print('one'); print('two', file=sys.stderr); print('three')"
    result = run_command([sys.executable, "-c", script], on_line=on_line)
    assert result.ok and result.returncode == 0
    assert [line for stream, line in lines if stream == "out"] == ["one", "three"]
    assert ("err", "two") in lines


def test_command_reports_exit_status():
    result = run_command([sys.executable, "-c", "raise SystemExit(4)"], on_line=lambda *a: None)
    assert result.returncode == 4 and not result.ok


def test_shell_strings_are_refused():
    with pytest.raises(TypeError, match="never a shell string"):
        run_command("rm -rf /tmp/x", on_line=lambda *a: None)


def test_timeout_stops_the_child_and_its_children(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    with pytest.raises(CommandTimedOut, match=r"did not finish within 0\.5 s"):
        run_command([sys.executable, "-c", script], on_line=lambda *a: None, timeout=0.5)
    assert time.monotonic() - started < 10
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild outlived the timeout")


def test_cancel_terminates_the_child():
    lines, on_line = collect()
    flag = {"cancel": False}

    def tick():
        if lines:
            flag["cancel"] = True

    with pytest.raises(CommandCancelled):
        run_command(
            [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
            on_line=on_line,
            on_tick=tick,
            should_cancel=lambda: flag["cancel"],
        )
    assert lines == [("out", "up")]


def test_redactor_masks_url_passwords_key_values_and_literals():
    redact = Redactor(["open-sesame"])
    text = "postgresql://app:pw123@db/app passphrase=open-sesame PGPASSWORD=abc token: xyz"
    masked = redact(text)
    assert "pw123" not in masked and "open-sesame" not in masked and "abc" not in masked and "xyz" not in masked
    assert "postgresql://app:•••@db/app" in masked


BOOK = Runbook(
    name="t.params",
    title="Params",
    role=Role.OPERATOR,
    mutates=False,
    steps=(Step("s", "S", lambda ctx: None),),
    params=(
        Param("commit", "Commit", pattern=r"[0-9a-f]{7,40}"),
        Param("count", "Count", kind=int, default=1, required=False),
        Param("mode", "Mode", choices=("soft", "hard"), default="soft", required=False),
    ),
)


def test_params_are_parsed_and_checked():
    assert BOOK.parse_params({"commit": "abc1234", "count": "3"}, "staging") == {
        "commit": "abc1234",
        "count": 3,
        "mode": "soft",
    }


@pytest.mark.parametrize(
    "raw, message",
    [
        ({}, "commit: is required"),
        ({"commit": "zzz"}, "commit: 'zzz' is not a valid commit"),
        ({"commit": "abc1234", "count": "many"}, "count: expected a whole number"),
        ({"commit": "abc1234", "mode": "sideways"}, "mode: choose one of soft, hard"),
        ({"commit": "abc1234", "extra": "1"}, "extra: is not a parameter of t.params"),
    ],
)
def test_bad_params_name_the_field(raw, message):
    with pytest.raises(ParamError, match=message):
        BOOK.parse_params(raw, "staging")


def test_unknown_runbook():
    with pytest.raises(runbooks.UnknownRunbook, match="there is no runbook 'nope'"):
        runbooks.get("nope")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("password: a health check failed", "password: a health check failed"),
        ("the token: expired again", "the token: expired again"),
        ("password: hunter2 was used", "password: ••• was used"),
        ("PASSWORD=abc def", "PASSWORD=••• def"),
        ("token: xyz", "token: •••"),
    ],
)
def test_redactor_masks_values_not_prose(text, expected):
    assert Redactor()(text) == expected
