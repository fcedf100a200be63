"""A real managed app that takes its settings from its env file and refuses a bad one."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.envconfig import keys
from app.jobs.engine import current_targets
from tests.support.targets import CodeTarget, commit, make_code_target, write_targets_file

# Reads MODE and GREETING from its environment (the env file, through process.env_file) and
# refuses to start with a MODE it does not know: the bad setting a config restore has to undo.
ENV_SERVER = """\
import http.server, json, os, sys

MODE = os.environ.get("MODE", "")
if MODE not in ("safe", "fast"):
    print(f"refusing to start: MODE={MODE!r} is not safe or fast", file=sys.stderr, flush=True)
    sys.exit(3)
GREETING = os.environ.get("GREETING", "")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "healthy", "mode": MODE, "greeting": GREETING}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

GOOD = 'MODE=safe\nGREETING="hello there"\nAPI_TOKEN=tok-first-7f3a9c\n'


@dataclass
class EnvTarget:
    code: CodeTarget
    env_path: Path

    @property
    def name(self) -> str:
        return self.code.name

    @property
    def url(self) -> str:
        return self.code.url

    def toml(self, *, protected: bool = False, env_path: Path | None = None, extra: str = "") -> str:
        state = self.code.repo.parent / "run"
        return f"""
[targets.{self.name}]
protected = {str(protected).lower()}
env_file = "{env_path or self.env_path}"
{extra}
[targets.{self.name}.repo]
path = "{self.code.repo}"

[targets.{self.name}.process]
command = ["{sys.executable}", "envserver.py", "{self.code.port}"]
env_file = true
pid_file = "{state}/app.pid"
log_file = "{state}/app.log"

[targets.{self.name}.health]
url = "{self.url}"
json = {{ status = "healthy" }}
timeout = 10
"""


def make_env_target(root: Path) -> EnvTarget:
    code = make_code_target(root)
    commit(code.repo, "Serve from the env file", **{"envserver.py": ENV_SERVER})
    env_path = root / "staging" / "app.env"
    env_path.write_text(GOOD)
    env_path.chmod(0o640)
    return EnvTarget(code, env_path)


@pytest.fixture
def env_target(app, tmp_path):
    """The target, configured, not started (for tests that need no running app)."""
    target = make_env_target(tmp_path / "t")
    write_targets_file(app, target.toml())
    yield target
    keys.gpg_home(app.instance_path).stop_agent()


@pytest.fixture
def running_env_target(app, env_target):
    with app.app_context():
        current_targets().open(env_target.name).process().start()
        assert current_targets().open(env_target.name).health().wait_healthy().ok, "the test app did not come up"
    yield env_target
    with app.app_context():  # stopping reads no env file: a test may have broken it
        current_targets().open(env_target.name).process(stopping=True).stop()
