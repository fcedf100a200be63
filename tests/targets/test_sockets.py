"""Reading which processes listen on which local TCP ports, from /proc (real sockets, real processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from app.targets import sockets
from tests.conftest import wait_for


def test_the_ports_a_process_listens_on_and_only_those():
    with socket.create_server(("127.0.0.1", 0)) as listening, socket.socket() as bound_only:
        bound_only.bind(("127.0.0.1", 0))  # bound but not listening: not a port anyone can reach
        port = listening.getsockname()[1]
        assert sockets.listening_ports([os.getpid()]) == frozenset({port})
    assert sockets.listening_ports([os.getpid()]) == frozenset()


def test_another_process_listening_is_not_counted_as_this_one():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time; s = socket.create_server(('127.0.0.1', 0)); "
            "print(s.getsockname()[1], flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(child.stdout.readline())
        wait_for(lambda: port in sockets.listening_inodes().values(), timeout=10)
        assert sockets.listening_ports([child.pid]) == frozenset({port})
        assert port not in sockets.listening_ports([os.getpid()])
    finally:
        child.kill()
        child.wait()


def test_a_gone_process_has_no_ports():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert sockets.listening_ports([gone.pid]) == frozenset()


def test_which_hosts_are_this_machine():
    assert sockets.is_local_host("127.0.0.1") and sockets.is_local_host("localhost")
    assert not sockets.is_local_host("192.0.2.1"), "a documentation address no host here has"
    assert not sockets.is_local_host("no-such-host.invalid")


def test_listeners_names_the_process_listening_on_a_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert sockets.listeners(port) == []  # bound, not listening
        server.listen()
        assert sockets.listeners(port) == [os.getpid()]


def test_a_listener_of_another_user_is_named_by_its_user_when_its_pid_cannot_be_read():
    # Rewind runs as its own user and the application as its service's: /proc/<pid>/fd of the application is not
    # readable, yet /proc/net/tcp shows the socket and its owner. "No process of this machine listens" was untrue.
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the check as another user")
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/health"
        check = (
            "import sys; from app.targets import sockets; "
            "print(sockets.url_listeners(sys.argv[1])[1], sockets.url_listener_users(sys.argv[1]))"
        )
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", check]
        seen = subprocess.run([*as_nobody, url], capture_output=True, text=True, cwd=os.getcwd(), check=False)
        assert seen.stdout.strip() == "[] ['root']", seen.stderr
        assert sockets.url_listener_users(url) == ["root"]  # the same as the owner itself, pid and all
    assert sockets.url_listener_users(url) == []
    assert sockets.url_listener_users("http://192.0.2.1:80/health") == []  # not this machine: nothing said
