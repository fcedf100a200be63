"""Controlling a target's process: configured commands, and a process Rewind supervises itself (real processes)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.targets.process import (
    AlreadyRunning,
    CommandControl,
    ManagedProcess,
    NotConfigured,
    ProcessControl,
    ProcessError,
)
from tests.conftest import wait_for
from tests.support.postgres import free_port
from tests.support.processes import cmdline, exec_script
from tests.support.sinks import Lines

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]


def py(code: str, *args: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code), *args]


def start_ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- CommandControl ---------------------------------------------------------------------------------


def recorder(path: Path, word: str, exit_code: int = 0) -> list[str]:
    """A command that appends `word` to a file, prints it, and exits with exit_code."""
    return py(
        """
        import sys
        with open(sys.argv[1], "a") as fh:
            fh.write(sys.argv[2] + "\\n")
        print(sys.argv[2] + " done")
        sys.exit(int(sys.argv[3]))
        """,
        str(path),
        word,
        str(exit_code),
    )


def test_command_control_runs_the_command_and_streams_its_output(tmp_path):
    record = tmp_path / "record"
    control = CommandControl(start=recorder(record, "start"), stop=None, restart=None, cwd=tmp_path)
    lines = Lines()
    control.start(lines)
    assert record.read_text() == "start\n"
    assert lines[0][0] == "cmd" and lines[0][1].startswith("$ ")
    assert ("out", "start done") in lines


def test_command_failure_carries_exit_status_output_and_a_fix(tmp_path):
    failing = py("import sys; print('starting'); print('unit myapp.service not found', file=sys.stderr); sys.exit(5)")
    control = CommandControl(start=failing, stop=None, restart=None)
    with pytest.raises(ProcessError) as caught:
        control.start()
    error = caught.value
    assert error.returncode == 5 and error.action == "start" and error.argv == tuple(failing)
    # stdout and stderr are read by two threads, so their lines may interleave either way
    assert sorted(error.output_tail) == ["starting", "unit myapp.service not found"]
    assert "exited with status 5" in str(error) and "unit myapp.service not found" in str(error)
    assert "fix:" in str(error)


def test_a_command_that_fails_without_a_word_says_so_and_a_kill_is_named(tmp_path):
    control = CommandControl(start=["false"], stop=["sh", "-c", "kill -TERM $$"], restart=None, cwd=tmp_path)
    with pytest.raises(ProcessError) as caught:
        control.start()
    assert caught.value.message == "start: `false` exited with status 1 and printed nothing"
    assert "run the same command by hand as Rewind's user" in caught.value.fix
    with pytest.raises(ProcessError) as caught:
        control.stop()
    assert caught.value.message == "stop: `sh -c 'kill -TERM $$'` was killed by SIGTERM and printed nothing"
    status = CommandControl(start=None, stop=None, restart=None, status=["sh", "-c", "exit 3"]).status()
    assert status.running is False and status.note == "status command exited with status 3 and printed nothing"


def test_restart_without_a_restart_command_is_stop_then_start(tmp_path):
    record = tmp_path / "record"
    control = CommandControl(start=recorder(record, "start"), stop=recorder(record, "stop"), restart=None)
    lines = Lines()
    control.restart(lines)
    assert record.read_text() == "stop\nstart\n"
    assert [text for stream, text in lines if stream == "out"] == ["stop done", "start done"]


def test_restart_stops_at_a_failed_stop(tmp_path):
    record = tmp_path / "record"
    control = CommandControl(start=recorder(record, "start"), stop=recorder(record, "stop", 1), restart=None)
    with pytest.raises(ProcessError, match="exited with status 1") as caught:
        control.restart()
    assert caught.value.action == "stop"
    assert record.read_text() == "stop\n"


def test_restart_of_a_crashed_app_starts_it_when_its_stop_fails_and_status_says_it_is_not_running(tmp_path):
    # A stop script that reads a pid file fails once the app has crashed (the file is gone): Restart must still
    # start it, as long as the status command says nothing runs; otherwise the failed stop stops the restart.
    record = tmp_path / "record"
    stop = ["sh", "-c", f"echo stop >> {record} && kill $(cat {tmp_path / 'app.pid'})"]
    status = ["test", "-e", str(tmp_path / "app.pid")]
    control = CommandControl(start=recorder(record, "start"), stop=stop, restart=None, status=status)
    lines = Lines()
    control.restart(lines)
    assert record.read_text() == "stop\nstart\n"
    assert ("out", "the stop command failed, but the status command says the application is not running") in lines
    (tmp_path / "app.pid").write_text("not a pid\n")  # status: running, so the failed stop is the answer
    with pytest.raises(ProcessError) as caught:
        control.restart()
    assert caught.value.action == "stop" and record.read_text() == "stop\nstart\nstop\n"


def test_restart_command_is_used_when_given(tmp_path):
    record = tmp_path / "record"
    control = CommandControl(
        start=recorder(record, "start"), stop=recorder(record, "stop"), restart=recorder(record, "restart")
    )
    control.restart()
    assert record.read_text() == "restart\n"


def test_missing_commands_say_what_to_configure():
    control = CommandControl(start=py("pass"), stop=None, restart=None)
    with pytest.raises(NotConfigured, match="no stop command"):
        control.stop()
    with pytest.raises(NotConfigured, match="cannot restart") as caught:
        control.restart()
    assert "fix:" in str(caught.value)


def test_a_hung_command_is_stopped_at_the_timeout():
    hangs = py("import time; print('waiting', flush=True); time.sleep(30)")
    control = CommandControl(start=hangs, stop=None, restart=None, timeout=2)  # time enough to print, even when busy
    with pytest.raises(ProcessError, match="did not finish within 2 s") as caught:
        control.start()
    assert caught.value.output_tail == ("waiting",)


def test_a_missing_program_is_reported(tmp_path):
    control = CommandControl(start=[str(tmp_path / "no-such-systemctl"), "start", "x"], stop=None, restart=None)
    with pytest.raises(ProcessError, match="cannot run") as caught:
        control.start()
    assert "no-such-systemctl" in str(caught.value)


def test_status_command_exit_status_tells_running():
    running = CommandControl(None, None, None, status=py("print('active')"))
    stopped = CommandControl(None, None, None, status=py("import sys; print('inactive'); sys.exit(3)"))
    unknown = CommandControl(None, None, None)
    assert running.status().running is True and running.status().note == "active"
    assert stopped.status().running is False and stopped.status().note == "inactive"
    assert unknown.status().running is None and "health check" in unknown.status().note


def test_a_shell_string_is_refused():
    with pytest.raises(ValueError, match="list of arguments"):
        CommandControl(start="systemctl restart myapp", stop=None, restart=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="list of arguments"):
        ManagedProcess("gunicorn app:app", Path("."), Path("p"), Path("l"))  # type: ignore[arg-type]


def test_both_modes_speak_the_same_protocol(tmp_path):
    assert isinstance(CommandControl(None, None, None), ProcessControl)
    assert isinstance(ManagedProcess(["x"], tmp_path, tmp_path / "p", tmp_path / "l"), ProcessControl)


# --- ManagedProcess ---------------------------------------------------------------------------------

APP = """
import signal, sys, time
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("app ready", flush=True)
time.sleep(60)
"""


def logged_line(process: ManagedProcess, prefix: str) -> str | None:
    return next((ln for ln in process.log_file.read_text().splitlines() if ln.startswith(prefix)), None)


@pytest.fixture
def managed(tmp_path):
    """Builds ManagedProcess objects over tmp_path, and kills whatever they left running."""
    made: list[ManagedProcess] = []

    def make(
        *args: str, command: list[str] | None = None, stop_timeout: float = 5, reload_signal: str | None = None
    ) -> ManagedProcess:
        process = ManagedProcess(
            command or py(APP, *args),
            cwd=tmp_path,
            pid_file=tmp_path / "run" / "app.pid",
            log_file=tmp_path / "log" / "app.log",
            stop_timeout=stop_timeout,
            reload_signal=reload_signal,
        )
        made.append(process)
        return process

    yield make
    for process in made:
        pid = process.status().pid
        if pid:
            os.killpg(pid, signal.SIGKILL)


def test_start_writes_the_pid_file_and_the_log(managed, tmp_path):
    process = managed()
    lines = Lines()
    process.start(lines)
    first, second = process.pid_file.read_text().splitlines()
    pid = int(first)
    assert second.split()[0] == f"start={start_ticks(pid)}", "the start time that names this process for good"
    assert stat.S_IMODE(process.pid_file.stat().st_mode) == 0o644
    status = process.status()
    assert status.running and status.pid == pid and status.started_at is not None and not status.stale_pid_file
    assert os.getsid(pid) == pid, "detached in its own session"
    wait_for(lambda: "app ready" in process.log_file.read_text().splitlines(), timeout=5)
    assert "Rewind starts:" in process.log_file.read_text()
    assert f"started pid {pid}" in lines.text()
    assert [name for name in os.listdir(process.pid_file.parent) if not name.startswith("app.pid")] == []


def test_second_start_is_refused(managed):
    process = managed()
    process.start()
    pid = process.status().pid
    with pytest.raises(AlreadyRunning, match=f"already runs as pid {pid}") as caught:
        managed().start()
    assert caught.value.pid == pid
    assert process.status().pid == pid


WITH_WORKER = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("worker", worker.pid, flush=True)
time.sleep(60)
"""


def test_stop_terminates_the_process_group(managed):
    process = managed(command=py(WITH_WORKER))
    process.start()
    pid = process.status().pid
    worker = int(wait_for(lambda: logged_line(process, "worker "), timeout=5).split()[1])
    lines = Lines()
    process.stop(lines)
    assert not alive(pid) and not alive(worker)
    assert not process.pid_file.exists()
    assert "sent SIGTERM to process group" in lines.text() and "SIGKILL" not in lines.text()
    status = process.status()
    assert status.running is False and not status.stale_pid_file
    assert f"Rewind stopped pid {pid} (SIGTERM)" in process.log_file.read_text()


def test_stop_kills_a_process_that_ignores_sigterm(managed):
    process = managed("--ignore-term", stop_timeout=0.3)
    process.start()
    pid = process.status().pid
    wait_for(lambda: "app ready" in process.log_file.read_text().splitlines(), timeout=5)  # its handler is in place
    lines = Lines()
    process.stop(lines)
    assert not alive(pid)
    assert "still running after 0.3 s; sent SIGKILL" in lines.text()
    assert not process.pid_file.exists()
    assert process.forced == (
        f"pid {pid} ignored SIGTERM for 0.3 s and was killed with SIGKILL, cutting off what it was doing — "
        "if it needs longer to finish, raise process.stop_timeout"
    )
    process.stop()
    assert process.forced is None, "a stop with nothing to stop forced nothing"


def test_stop_when_not_running_is_a_no_op(managed):
    lines = Lines()
    managed().stop(lines)
    assert lines == [("out", "not running (no pid file)")]


def test_stale_pid_file_of_a_dead_process(managed):
    gone = subprocess.Popen([PY, "-c", "pass"])
    gone.wait()
    process = managed()
    process.pid_file.parent.mkdir(parents=True)
    process.pid_file.write_text(f"{gone.pid}\n")
    status = process.status()
    assert status.running is False and status.stale_pid_file
    assert f"pid {gone.pid}, which is no longer running" in status.note
    lines = Lines()
    process.start(lines)
    assert "removed the stale pid file" in lines.text()
    assert process.status().running and process.status().pid != gone.pid


def test_a_pid_reused_by_a_process_started_later_is_stale(managed):
    process = managed()
    process.start()
    recorded = process.pid_file.read_text().splitlines()
    process.stop()
    later = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        # The pid file as the application left it, but its pid now belongs to a process started after it.
        process.pid_file.write_text(f"{later.pid}\n{recorded[1]}\n")
        assert start_ticks(later.pid) != int(recorded[1].split()[0].removeprefix("start="))
        status = process.status()
        assert status.running is False and status.stale_pid_file and "started later (pid reused)" in status.note
        process.stop()  # must not signal the later process
        assert alive(later.pid) and not process.pid_file.exists()
        process.pid_file.write_text(f"{later.pid}\n{recorded[1]}\n")
        lines = Lines()
        process.start(lines)
        assert "removed the stale pid file" in lines.text()
        assert process.status().pid not in (None, later.pid) and alive(later.pid)
    finally:
        later.kill()
        later.wait()


def test_a_pid_file_without_a_start_time_names_only_a_session_leader(managed):
    """Pid files written before start times were recorded: the application leads its own session."""
    process = managed()
    process.pid_file.parent.mkdir(parents=True)
    leader = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"], start_new_session=True)
    follower = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])  # in the test run's session
    try:
        process.pid_file.write_text(f"{leader.pid}\n")
        assert process.status().running and process.status().pid == leader.pid
        process.pid_file.write_text(f"{follower.pid}\n")
        status = process.status()
        assert status.running is False and status.stale_pid_file and "pid reused" in status.note
        process.stop()  # must not signal it
        assert alive(follower.pid) and not process.pid_file.exists()
    finally:
        for child in (leader, follower):
            child.kill()
            child.wait()


def test_a_garbled_pid_file_is_stale(managed):
    process = managed()
    process.pid_file.parent.mkdir(parents=True)
    process.pid_file.write_text("not-a-pid")
    assert process.status().stale_pid_file
    process.start()
    assert process.status().running


def test_restart_gives_a_new_pid(managed):
    process = managed()
    process.start()
    first = process.status().pid
    process.restart()
    second = process.status().pid
    assert second != first and not alive(first) and alive(second)


def test_restart_starts_what_was_not_running(managed):
    process = managed()
    process.restart()
    assert process.status().running


def test_a_missing_program_is_reported_and_leaves_no_pid_file(managed, tmp_path):
    process = managed(command=[str(tmp_path / "no-such-gunicorn"), "app:app"])
    with pytest.raises(ProcessError, match="cannot run") as caught:
        process.start()
    assert "no-such-gunicorn" in str(caught.value) and "fix:" in str(caught.value)
    assert not process.pid_file.exists()


STARTER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from app.targets.process import ManagedProcess
spec = json.loads(sys.argv[2])
keep_r, keep_w = os.pipe()  # a descriptor the application must not inherit
os.set_inheritable(keep_r, True)
os.set_inheritable(keep_w, True)
process = ManagedProcess(spec["command"], spec["cwd"], spec["pid_file"], spec["log_file"])
process.start()
print(process.status().pid, flush=True)
if spec["linger"]:
    time.sleep(60)
"""


def start_from_another_process(tmp_path: Path, linger: bool) -> tuple[subprocess.Popen, int, ManagedProcess]:
    spec = {
        "command": py(APP),
        "cwd": str(tmp_path),
        "pid_file": str(tmp_path / "app.pid"),
        "log_file": str(tmp_path / "app.log"),
        "linger": linger,
    }
    starter = subprocess.Popen(
        [PY, "-c", STARTER, str(REPO), json.dumps(spec)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    pid = int(starter.stdout.readline())
    return starter, pid, ManagedProcess(spec["command"], tmp_path, tmp_path / "app.pid", tmp_path / "app.log")


def test_the_application_outlives_the_process_that_started_it(tmp_path):
    starter, pid, process = start_from_another_process(tmp_path, linger=False)
    try:
        assert starter.wait(timeout=10) == 0
        wait_for(lambda: "app ready" in process.log_file.read_text().splitlines(), timeout=5)
        assert alive(pid) and process.status().pid == pid
        targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert targets == {"/dev/null", str(process.log_file)}, "inherits none of its starter's descriptors"
        process.stop()  # another Rewind process can stop it from the pid file
        assert not alive(pid)
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_the_application_survives_its_starter_being_killed_with_its_group(tmp_path):
    starter, pid, process = start_from_another_process(tmp_path, linger=True)
    try:
        os.killpg(starter.pid, signal.SIGKILL)  # as when Rewind's own service is stopped hard
        starter.wait(timeout=5)
        assert alive(pid) and process.status().running
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_a_missing_working_directory_is_reported(tmp_path):
    process = ManagedProcess(py(APP), tmp_path / "gone", tmp_path / "app.pid", tmp_path / "app.log")
    with pytest.raises(ProcessError, match=r"working directory .* does not exist"):
        process.start()
    assert not process.pid_file.exists()


# --- start scripts that exec, groups left behind, watching, the log ---------------------------------


def test_an_exec_style_start_script_is_still_the_application_after_the_exec(managed, tmp_path):
    port = free_port()
    process = managed(command=exec_script(tmp_path, str(port)))
    process.start()
    pid = process.status().pid
    wait_for(lambda: logged_line(process, "serving on"), timeout=10)
    assert "server.py" in cmdline(pid) and "start.sh" not in cmdline(pid), "the script has exec'd the server"
    status = process.status()
    assert status.running and status.pid == pid and process.pid_file.exists()
    assert port in process.watch().listening_ports()

    with pytest.raises(AlreadyRunning, match=f"already runs as pid {pid}"):
        process.start()  # never a second copy beside the first
    assert alive(pid) and process.status().pid == pid

    process.restart()
    second = process.status().pid
    assert second != pid and not alive(pid)
    wait_for(lambda: process.log_file.read_text().count("serving on") == 2, timeout=10)
    assert "Address already in use" not in process.log_file.read_text()
    assert process.watch().exited() is None and port in process.watch().listening_ports()

    process.stop()
    assert not alive(second) and not process.pid_file.exists()


LEAVES_A_WORKER = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("worker", worker.pid, flush=True)
"""


def test_what_an_exited_leader_left_running_blocks_a_start_and_is_stopped_with_its_group(managed):
    process = managed(command=py(LEAVES_A_WORKER))
    process.start()
    leader = int(process.pid_file.read_text().splitlines()[0])
    worker = int(wait_for(lambda: logged_line(process, "worker "), timeout=5).split()[1])
    wait_for(lambda: not alive(leader), timeout=10)
    status = process.status()
    assert status.running is False and f"pid {leader} exited, but processes it started still run" in status.note
    with pytest.raises(AlreadyRunning, match="fight them for the port"):
        process.start()
    assert alive(worker)
    lines = Lines()
    process.stop(lines)
    assert not alive(worker) and not process.pid_file.exists()
    assert f"sent SIGTERM to process group {leader}" in lines.text()


def test_a_watch_sees_its_process_exit_and_a_restart_as_another_process(managed):
    process = managed()
    process.start()
    watch = process.watch()
    assert watch.exited() is None and watch.pid == process.status().pid
    process.restart()
    assert watch.exited() == f"the application (pid {watch.pid}) exited"
    assert process.watch().exited() is None
    process.stop()
    assert "not running" in process.watch().exited()


def test_log_tail_gives_the_last_lines(managed):
    process = managed()
    process.log_file.parent.mkdir(parents=True)
    process.log_file.write_text("".join(f"line {n}\n" for n in range(1, 2001)))
    assert process.log_tail(40) == [f"line {n}" for n in range(1961, 2001)]
    assert process.log_tail(0) == []
    assert managed().log_tail() == process.log_tail()
    process.log_file.unlink()
    assert process.log_tail() == []


def test_log_tail_takes_colour_codes_out(managed):
    process = managed()
    process.log_file.parent.mkdir(parents=True)
    process.log_file.write_bytes(
        b"\x1b[31m\x1b[1mWARNING: This is a development server.\x1b[0m\n"
        b" * Running on http://127.0.0.1:5000\n"
        b'127.0.0.1 - - "\x1b[35m\x1b[1mGET /health HTTP/1.1\x1b[0m" 500 -\n'
    )
    assert process.log_tail() == [
        "WARNING: This is a development server.",
        " * Running on http://127.0.0.1:5000",
        '127.0.0.1 - - "GET /health HTTP/1.1" 500 -',
    ]


MASTER = """
import signal, subprocess, sys, time

def spawn(code):
    return subprocess.Popen([sys.executable, "-c", code])

workers = [spawn("import time; time.sleep(600)") for _ in range(2)]

def reload(signum, frame):
    # As a master whose new workers fail to load the new code: they die, then the old ones are retired.
    global workers
    new = [spawn("import sys; print('ImportError: cannot import name create_app', file=sys.stderr); sys.exit(3)")
           for _ in range(2)]
    for worker in new:
        worker.wait()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait()
    workers = []

signal.signal(signal.SIGHUP, reload)
print("master up with 2 workers", flush=True)
while True:
    time.sleep(0.1)
"""


def test_a_reload_whose_new_workers_died_does_not_claim_it_worked(managed):
    """The old workers retired is no reload done: no new worker runs, and the restart's words say so."""
    process = managed(command=py(MASTER), reload_signal="SIGHUP")
    process.start()
    wait_for(lambda: "master up with 2 workers" in process.log_tail(), timeout=20)
    master = process.status().pid
    lines = Lines()
    process.restart(lines)
    assert process.status().pid == master, "it reloaded in place"
    said = lines.text()
    assert f"reloaded pid {master} in " in said and "its 2 old workers were retired, but no new worker runs" in said
    assert "the health check tells whether it serves" in said
    assert "every old worker was retired" not in said


def crasher(error: str) -> list[str]:
    """An application that writes a traceback ending in `error` and exits."""
    return py(
        """
        import sys
        print("Traceback (most recent call last):", file=sys.stderr)
        print(sys.argv[1], file=sys.stderr, flush=True)
        sys.exit(1)
        """,
        error,
    )


def test_the_log_since_start_leaves_out_what_an_earlier_start_wrote(managed):
    """An earlier crash's traceback stays at the end of the file: only this start's lines are its log."""
    old = managed(command=crasher("KeyError: 'DATABASE_URL' (the env file)"))
    old.start()
    wait_for(lambda: "KeyError: 'DATABASE_URL' (the env file)" in old.log_tail(), timeout=20)
    error = 'psycopg.errors.UndefinedColumn: column "signed_up_at" does not exist'
    new = managed(command=crasher(error))
    new.restart()
    wait_for(lambda: error in new.log_tail(), timeout=20)
    assert "KeyError: 'DATABASE_URL' (the env file)" in new.log_tail(), "the file's last lines hold the old crash"
    log = new.log_since_start()
    assert log.lines == ("Traceback (most recent call last):", error)
    assert log.since is not None and not log.reloaded and log.more == 0
    assert log.since_words() == f"since Rewind started it at {log.since:%H:%M:%S} UTC"


def test_the_log_since_start_is_empty_when_the_app_wrote_nothing_since(managed):
    process = managed()
    process.log_file.parent.mkdir(parents=True)
    process.log_file.write_text(
        "Traceback (most recent call last):\nKeyError: 'DATABASE_URL'\n"
        "--- 2024-05-02T10:42:07Z Rewind starts: gunicorn app:app\n"
    )
    log = process.log_since_start()
    assert log.lines == () and log.since_words() == "since Rewind started it at 10:42:07 UTC"


def test_the_log_since_a_reload_and_without_any_mark(managed):
    process = managed()
    process.log_file.parent.mkdir(parents=True)
    process.log_file.write_text(
        "--- 2024-05-02T10:40:00Z Rewind starts: gunicorn app:app\nold error\n"
        "--- 2024-05-02T10:42:07Z Rewind reloads pid 1918 (SIGHUP)\n" + "".join(f"line {n}\n" for n in range(1, 51))
    )
    log = process.log_since_start(40)
    assert log.lines == tuple(f"line {n}" for n in range(11, 51)) and log.more == 10
    assert log.reloaded and log.since_words() == "since Rewind reloaded it at 10:42:07 UTC"
    process.log_file.write_text("started by hand\nan error\n")
    log = process.log_since_start()
    assert log.lines == ("started by hand", "an error") and log.since is None and log.since_words() == ""
    process.log_file.unlink()
    assert process.log_since_start().lines == ()


def test_a_failed_commands_output_tail_has_no_colour_codes():
    failing = py("import sys; print('\\x1b[31mJob for myapp.service failed\\x1b[0m'); sys.exit(1)")
    lines = Lines()
    with pytest.raises(ProcessError) as caught:
        CommandControl(start=failing, stop=None, restart=None).start(lines)
    assert ("out", "\x1b[31mJob for myapp.service failed\x1b[0m") in lines, "the sink gets the line as printed"
    assert caught.value.output_tail == ("Job for myapp.service failed",)
    assert "\x1b" not in str(caught.value)


def test_command_control_has_nothing_to_watch_and_no_log():
    control = CommandControl(None, None, None)
    assert control.watch() is None and control.log_tail() == [] and control.log_since_start().lines == ()


def test_a_relative_command_path_not_found_names_the_folder_it_was_looked_up_from(tmp_path, monkeypatch):
    # Commands run in the checkout: a script named relative to the folder Rewind was started in (as worked before)
    # is not found there, and "No such file or directory: scripts/stop.sh" alone sent the reader to a file that is
    # right where it always was.
    rewind_folder, checkout = tmp_path / "rewind", tmp_path / "checkout"
    (rewind_folder / "scripts").mkdir(parents=True)
    checkout.mkdir()
    (rewind_folder / "scripts" / "stop.sh").write_text("#!/bin/sh\n")
    (rewind_folder / "scripts" / "stop.sh").chmod(0o755)
    monkeypatch.chdir(rewind_folder)
    control = CommandControl(start=["true"], stop=["scripts/stop.sh"], restart=None, cwd=str(checkout))
    with pytest.raises(ProcessError) as caught:
        control.stop()
    assert caught.value.message == (
        f"stop: cannot run `scripts/stop.sh`: No such file or directory: scripts/stop.sh (looked up from {checkout})"
    )
    assert caught.value.fix.endswith("; a relative path is taken from the checkout unless process.cwd is set")
    with pytest.raises(ProcessError) as caught:  # a bare name is looked up in PATH, not in a folder
        CommandControl(start=["true"], stop=["no-such-stop-command"], restart=None, cwd=str(checkout)).stop()
    assert "looked up from" not in caught.value.message
