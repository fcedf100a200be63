"""What a target's commands inherit from Rewind's own environment: enough to run, none of Rewind's secrets.

The one allow-list for every command a target runs (git, its start/stop
commands, its smoke test, its managed process, its migrations). Rewind's
own settings (REWIND_SECRET_KEY, REWIND_AUDIT_KEY, REWIND_DATABASE_URL …)
are never on it; a target that needs a value gets it from its own `env`
table in the targets file.
"""

from __future__ import annotations

import os

INHERITED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    # git push over ssh or through a proxy
    "SSH_AUTH_SOCK",
    "GIT_SSH_COMMAND",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)


def inherited_env() -> dict[str, str]:
    """The allow-listed part of this process's environment."""
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return env
