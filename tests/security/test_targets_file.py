"""A broken targets file: one line and a clean exit at start-up, the last good one kept while running."""

import os
import subprocess
import sys
from pathlib import Path

from app.auth.roles import Role

REPO = Path(__file__).resolve().parents[2]
BROKEN = '[targets.a.repo]\npath = "/x"\nbrnch = "main"\n'


def rewind_env(instance: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWIND_")}
    return {**env, "REWIND_INSTANCE_DIR": str(instance), **extra}


def test_gunicorn_exits_with_one_line_instead_of_respawning(tmp_path):
    (tmp_path / "rewind.toml").write_text(BROKEN)
    env = rewind_env(tmp_path, REWIND_BIND="127.0.0.1:0", REWIND_ACCESS_LOG="0")
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "rewind:" in line or "Traceback" in line]
    assert errors == [
        f"rewind: cannot start: REWIND_CONFIG: {tmp_path / 'rewind.toml'}: target 'a': key 'repo.brnch': "
        "unknown key; did you mean 'branch'?"
    ]
    assert "Booting worker" not in result.stderr, "no worker was started, so none is respawned"


def test_a_non_utf8_file_gives_the_one_line_error(tmp_path):
    (tmp_path / "rewind.toml").write_bytes(b'[targets.a.repo]\npath = "/caf\xe9"\n')
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=REPO, env=rewind_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"rewind: cannot start: REWIND_CONFIG: {tmp_path / 'rewind.toml'}: "
        "is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"
    ]


def break_file(app, text: str) -> None:
    path = app.config["REWIND_SETTINGS"].config_path
    before = path.stat().st_mtime
    path.write_text(text)
    os.utime(path, (before + 5, before + 5))  # a new mtime even within one clock tick


def test_a_file_broken_while_running_keeps_the_last_good_one(app, users, as_role):
    from tests.support.apps import post

    client = as_role(Role.OPERATOR)
    assert "targets-problem" not in client.get("/").get_data(as_text=True)
    break_file(app, BROKEN)

    page = client.get("/")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="targets-problem"' in body and "key &#39;repo.brnch&#39;: unknown key" in body
    assert 'id="target-staging"' in client.get("/dashboard/cards").get_data(as_text=True), "last good targets"
    assert post(client, "/jobs", {"runbook": "test.count", "lines": "1"}).status_code == 302
    assert "targets-problem" not in app.test_client().get("/login").get_data(as_text=True), "not for strangers"

    check = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    assert check.exit_code == 1
    assert "the targets file on disk is broken" in check.output and "repo.brnch" in check.output

    from tests.conftest import TARGETS

    break_file(app, TARGETS)  # fixed
    assert "targets-problem" not in client.get("/").get_data(as_text=True)


def test_the_banner_and_the_check_say_the_last_good_version_stays_once(app, users, as_role):
    """The banner read "… until the file is fixed Rewind keeps using the last good version of it until the file is
    fixed": the registry's problem carried the sentence and the banner added it again."""
    client = as_role(Role.VIEWER)
    break_file(app, BROKEN)
    body = client.get("/").get_data(as_text=True)
    banner = body[body.index('id="targets-problem"') :]
    banner = banner[: banner.index("</div>")]
    assert banner.count("last good version") == 1, banner
    assert "unknown key; did you mean &#39;branch&#39;? — Rewind keeps using the last good version of it" in banner
    check = app.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    assert check.exit_code == 1 and check.output.count("last good version") == 1, check.output
    listed = app.test_cli_runner().invoke(args=["rewind", "targets", "list"])
    assert listed.stderr.count("last good version") == 1, listed.stderr
