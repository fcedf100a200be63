"""A real target for code runbooks: a git repository of a tiny web app, run as a managed process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.postgres import free_port

SERVER = """\
import http.server, json, os, subprocess, sys

STATUS = "{status}"
GREETING = "{greeting}"
ANSWER = {{"status": STATUS, "greeting": GREETING}}
if os.environ.get("SERVE_COMMIT"):  # the commit it was started on, as apps that report their build do
    ANSWER["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(ANSWER).encode()
        self.send_response(200 if STATUS == "healthy" else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if STATUS != "healthy":  # as dev servers do: a coloured warning in the log, before the first answer
    print("\\x1b[31m\\x1b[1mWARNING: health is broken on purpose\\x1b[0m", file=sys.stderr, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid", "GIT_COMMITTER_NAME": "Dev"}
    env |= {"GIT_COMMITTER_EMAIL": "dev@example.invalid", "PATH": "/usr/bin:/bin", "HOME": str(repo.parent)}
    # Each commit would start `git maintenance run --auto` (a process that finds nothing to do in a tiny
    # repository): some 2,000 processes a full run.
    env |= {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "maintenance.auto", "GIT_CONFIG_VALUE_0": "false"}
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True)
    return result.stdout.strip()


def commit(repo: Path, message: str, **files: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class CodeTarget:
    name: str
    repo: Path
    port: int
    commits: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def head(self) -> str:
        return git(self.repo, "rev-parse", "HEAD")

    def file(self, name: str) -> str:
        return (self.repo / name).read_text()

    def toml(self, *, protected: bool = False, auto_rollback: bool = False, health_timeout: float = 5) -> str:
        state = self.repo.parent / "run"
        return f"""
[targets.{self.name}]
protected = {str(protected).lower()}
auto_rollback = {str(auto_rollback).lower()}

[targets.{self.name}.repo]
path = "{self.repo}"
branch = "main"

[targets.{self.name}.process]
command = ["{sys.executable}", "server.py", "{self.port}"]
cwd = "{self.repo}"
pid_file = "{state}/app.pid"
log_file = "{state}/app.log"

[targets.{self.name}.health]
url = "{self.url}"
json = {{ status = "healthy" }}
timeout = {health_timeout}
"""


def make_code_target(root: Path, name: str = "staging") -> CodeTarget:
    """Four commits on main, and a branch whose commit breaks /health."""
    repo = root / name / "app"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("__pycache__/\n")
    commits = [
        commit(repo, "Serve a health endpoint", **{"server.py": SERVER.format(status="healthy", greeting="hello")}),
        commit(repo, "Add a changelog", **{"CHANGES.md": "1.0 first release\n"}),
        commit(repo, "Greet in French", **{"server.py": SERVER.format(status="healthy", greeting="bonjour")}),
        commit(repo, "Note 1.1 in the changelog", **{"CHANGES.md": "1.0 first release\n1.1 french\n"}),
    ]
    git(repo, "checkout", "-q", "-b", "feature/bad")
    commit(repo, "Break health on purpose", **{"server.py": SERVER.format(status="broken", greeting="bonjour")})
    git(repo, "checkout", "-q", "main")
    return CodeTarget(name, repo, free_port(), commits)


def write_targets_file(app, text: str) -> None:
    """Replace the app's targets file as an editor does (write then rename), so Rewind sees the change at once."""
    path = app.config["REWIND_SETTINGS"].config_path
    temp = path.with_name(path.name + ".new")
    temp.write_text(text)
    os.replace(temp, path)
