"""REWIND_BIND taken or wrong: one line naming the address and what to do, from `make run` and from gunicorn."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.bindcheck import check
from app.settings import SettingsError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def taken():
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_to_bind(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_taken_port_is_named_with_a_free_one_to_pick(taken):
    with pytest.raises(SettingsError) as caught:
        check(f"127.0.0.1:{taken}")
    message = str(caught.value)
    assert message.startswith(f"REWIND_BIND: 127.0.0.1:{taken} is taken by another program")
    suggested = int(re.search(r"`REWIND_BIND=127\.0\.0\.1:(\d+) make run`", message).group(1))
    assert suggested != taken and free_to_bind(suggested)


def test_a_free_port_port_0_and_a_unix_socket_pass():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    check(f"127.0.0.1:{port}")
    check("127.0.0.1:0")  # any free port
    check("unix:/run/rewind.sock")


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1:99999", "127.0.0.1:http", "127.0.0.1:"])
def test_a_malformed_address_says_the_form_expected(value):
    with pytest.raises(SettingsError, match=f"expected host:port, e.g. 127.0.0.1:5000, got '{re.escape(value)}'"):
        check(value)


def test_an_address_not_of_this_machine_says_which_to_use():
    with pytest.raises(SettingsError, match=r"192\.0\.2\.1 is not an address of this machine: use 127\.0\.0\.1"):
        check("192.0.2.1:5000")  # TEST-NET-1: never a local address


def run_env(tmp_path: Path, bind: str) -> dict[str, str]:
    return {**os.environ, "REWIND_BIND": bind, "REWIND_INSTANCE_DIR": str(tmp_path / "instance"), "FLASK_APP": "wsgi"}


def test_make_run_says_so_in_one_line_before_anything_starts(tmp_path, taken):
    # The first step of `make run`, as a second `make run` meets it while the first one serves.
    done = subprocess.run(
        [sys.executable, "-m", "app.bindcheck"],
        cwd=REPO,
        env=run_env(tmp_path, f"127.0.0.1:{taken}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rewind: cannot start: REWIND_BIND: 127.0.0.1:{taken} is taken")
    assert done.stdout == ""


def test_gunicorn_stops_with_the_same_line_instead_of_retrying(tmp_path, taken):
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=REPO,
        env=run_env(tmp_path, f"127.0.0.1:{taken}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    said = done.stdout + done.stderr
    assert f"rewind: cannot start: REWIND_BIND: 127.0.0.1:{taken} is taken by another program" in said
    assert "Connection in use" not in said and "Traceback" not in said
