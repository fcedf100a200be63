"""The demo builder's commands: run to completion through the one command primitive, output kept for errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.demo.target import DemoError
from app.targets.command import CommandTimedOut, printed, run_command, said_nothing, status_words

COMMAND_TIMEOUT_S = 60.0
PACKAGES = {"git": "git", "gpg": "gnupg", "gpgconf": "gnupg"}


def run(argv: Sequence[str], *, env: dict[str, str], what: str, cwd: Path | None = None) -> str:
    """Run argv; DemoError with its last output lines when it fails. Returns its output (stdout and stderr)."""
    try:
        result = run_command(argv, timeout=COMMAND_TIMEOUT_S, cwd=cwd, env=env, capture=True)
    except FileNotFoundError:
        if cwd is not None and not cwd.is_dir():
            raise DemoError(f"{what}: the folder {cwd} is missing; rebuild with `flask rewind demo --reset`") from None
        package = PACKAGES.get(argv[0], argv[0])
        raise DemoError(f"{what}: {argv[0]} is not installed (on Debian: apt-get install {package})") from None
    except CommandTimedOut:
        raise DemoError(f"{what}: did not finish within {COMMAND_TIMEOUT_S:g} s") from None
    lines = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line]
    if not result.ok:
        if not printed(*lines):
            where = str(cwd) if cwd is not None else ""
            raise DemoError(f"{what} failed ({status_words(result.returncode)}) and {said_nothing(argv, where=where)}")
        tail = "\n  ".join(lines[-8:])
        raise DemoError(f"{what} failed ({status_words(result.returncode)}):\n  {tail}")
    return "\n".join(lines)
