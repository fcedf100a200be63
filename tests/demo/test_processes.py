"""Starting the demo apps: one that cannot start is said at once, with the last lines of its log."""

from __future__ import annotations

import sys

import pytest

from app.demo import processes
from app.demo.target import DemoError, DemoTarget
from tests.support.ports import free_port

CRASHES = """\
import sys
print("\\x1b[33mloading settings\\x1b[0m", flush=True)
print("KeyError: 'DATABASE_URL'", file=sys.stderr, flush=True)
sys.exit(3)
"""


def test_a_demo_app_that_exits_at_start_is_said_at_once_with_its_log(tmp_path):
    """A fresh build's app that crashes on import: the build stops with its last log lines, colour codes out,
    without waiting out the health wait (20 s) for an app that is gone."""
    t = DemoTarget("staging", tmp_path / "staging", free_port(), python=sys.executable)
    t.app_dir.mkdir(parents=True)
    (t.app_dir / "wsgi.py").write_text(CRASHES)
    said = []
    with pytest.raises(DemoError) as caught:
        processes.start({"staging": t}, fresh=True, say=said.append)
    message = str(caught.value)
    assert message.startswith(f"staging: {t.health_url} is not healthy: "), message
    assert f"the app's log ({t.log_file}) ends with:" in message
    assert message.endswith("\n  loading settings\n  KeyError: 'DATABASE_URL'"), message
    assert "exited while it was being verified" in message, "waited out the health wait for an app gone"
