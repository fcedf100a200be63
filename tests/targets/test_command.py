"""The one command primitive: argv only, lines to a sink, timeout, cancel, pipelines."""

import contextlib
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from app.targets.command import (
    CommandCancelled,
    CommandTimedOut,
    ReadProgress,
    Stage,
    Uncancellable,
    _wait_any,
    ended,
    run_command,
    run_pipeline,
    said_nothing,
    status_words,
)
from tests.conftest import wait_for
from tests.support.sinks import Lines

PY = sys.executable


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_command_streams_stdout_and_stderr_lines():
    lines = Lines()
    script = "import sys; print('one'); print('two', file=sys.stderr); print('three')"
    result = run_command([PY, "-c", script], lines)
    assert result.ok and result.returncode == 0
    assert lines.of("out") == ["one", "three"]
    assert lines.of("err") == ["two"]


def test_reader_threads_only_buffer_and_the_caller_ticks():
    """Lines arrive on reader threads; tick() (where a job writes events) runs on the calling thread only."""
    caller = threading.get_ident()
    line_threads, tick_threads = set(), set()

    class Watching(Lines):
        def line(self, stream, text):
            line_threads.add(threading.get_ident())
            super().line(stream, text)

        def tick(self):
            tick_threads.add(threading.get_ident())

    sink = Watching()
    run_command([PY, "-c", "print('\\n'.join(str(i) for i in range(2000)))"], sink)
    assert len(sink.of("out")) == 2000  # a chatty command loses nothing
    assert tick_threads == {caller}
    assert caller not in line_threads


def test_command_reports_exit_status_and_captures():
    result = run_command([PY, "-c", "import sys; print('x'); raise SystemExit(4)"], capture=True)
    assert result.returncode == 4 and not result.ok
    assert result.stdout.strip() == "x"


def test_shell_strings_are_refused():
    with pytest.raises(TypeError, match="never a shell string"):
        run_command("rm -rf /tmp/x")


def test_timeout_stops_the_child_and_its_children(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); print('ready', flush=True); time.sleep(60)"
    )
    with pytest.raises(CommandTimedOut, match=r"did not finish within 0\.5 s"):
        run_command([PY, "-c", script], Lines(), timeout=0.5)
    grandchild = int(pidfile.read_text())
    wait_for(lambda: gone(grandchild), timeout=10)


def test_a_captured_command_that_times_out_is_stopped_with_its_children(tmp_path):
    """The quiet path too (git's reads and hooks run there): the group goes, not only the command."""
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    with pytest.raises(CommandTimedOut, match=r"did not finish within 0\.5 s"):
        run_command([PY, "-c", script], timeout=0.5, capture=True)
    grandchild = int(pidfile.read_text())
    wait_for(lambda: gone(grandchild), timeout=10)


def test_a_captured_command_whose_child_left_the_group_with_its_output_still_returns(tmp_path):
    """A helper that started its own session and kept stdout open cannot hold the timeout's return for ever."""
    pidfile = tmp_path / "escaped.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    raised: list[BaseException] = []

    def call() -> None:
        try:
            run_command([PY, "-c", script], timeout=0.5, capture=True)
        except BaseException as exc:  # handed to the test's thread
            raised.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        caller.join(60)  # it would wait for the escaped helper (600 s) to close the pipe
        assert not caller.is_alive()
        assert len(raised) == 1 and isinstance(raised[0], CommandTimedOut), raised
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), 9)
        caller.join(10)


def test_cancel_stops_the_whole_group_and_reports_it():
    sink = Lines(cancel_when=lambda seen: ("out", "up") in seen)
    with pytest.raises(CommandCancelled):
        run_command([PY, "-c", "import time; print('up', flush=True); time.sleep(60)"], sink)
    assert sink.of("out") == ["up"]
    assert len(sink.groups) == 1
    wait_for(lambda: gone(sink.groups[0]), timeout=10)


def test_the_environment_is_exactly_what_is_given():
    result = run_command([PY, "-c", "import os; print(sorted(os.environ))"], env={"ONLY": "1"}, capture=True)
    assert "ONLY" in result.stdout
    assert "PATH" not in result.stdout


# --- pipelines ------------------------------------------------------------------------------


def test_pipeline_streams_through_os_pipes(tmp_path):
    out = tmp_path / "out.txt"
    produce = Stage.of([PY, "-c", "print('\\n'.join(str(i) for i in range(10000)))"], "produce")
    upper = Stage.of([PY, "-c", "import sys; [sys.stdout.write(l.replace('9', 'nine')) for l in sys.stdin]"], "change")
    with out.open("wb") as fh:
        result = run_pipeline([produce, upper], Lines(), stdout=fh)
    assert result.ok
    assert [s.name for s in result.stages] == ["produce", "change"]
    text = out.read_text().splitlines()
    assert len(text) == 10000 and text[9] == "nine"


def test_pipeline_reports_each_stage_and_blames_the_one_that_failed(tmp_path):
    sink = Lines()
    produce = Stage.of([PY, "-c", "import sys, time\nfor i in range(10**6): print(i)"], "produce")
    fail = Stage.of(
        [PY, "-c", "import sys; sys.stdin.readline(); print('bad key', file=sys.stderr); sys.exit(2)"], "gpg"
    )
    with open(os.devnull, "wb") as devnull:
        result = run_pipeline([produce, fail], sink, stdout=devnull)
    assert not result.ok
    assert result.failed.name == "gpg" and result.failed.returncode == 2
    assert result.failed.stderr_tail == ("bad key",)
    assert ("err:gpg", "bad key") in sink
    assert result.stages[0].returncode != 0  # the producer was stopped, not left writing into a dead pipe


def test_pipeline_last_stage_output_goes_to_the_sink_when_no_file_is_given():
    sink = Lines()
    result = run_pipeline([Stage.of([PY, "-c", "print('a'); print('b')"]), Stage.of(["cat"])], sink)
    assert result.ok and sink.of("out") == ["a", "b"]


def test_pipeline_cancel_stops_every_stage():
    sink = Lines(cancel_when=lambda seen: ("err:first", "up") in seen)
    first = Stage.of([PY, "-c", "import sys, time; print('up', file=sys.stderr, flush=True); time.sleep(60)"], "first")
    second = Stage.of([PY, "-c", "import sys, time; sys.stdin.read(); time.sleep(60)"], "second")
    with pytest.raises(CommandCancelled):
        run_pipeline([first, second], sink)
    pgid = sink.groups[0]
    wait_for(lambda: gone(pgid), timeout=10)


def test_a_wait_wakes_when_any_stage_exits_not_only_the_first():
    """The end of a pipeline is seen when it happens, whichever stage ends: a later stage that ends while an
    earlier one still runs wakes the wait too (a waiting loop would sleep out its turn on the first)."""
    slow = subprocess.Popen([PY, "-c", "import time; time.sleep(600)"])
    quick = subprocess.Popen([PY, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)  # ends when told
    woke = threading.Event()
    waiting = threading.Thread(target=lambda: (_wait_any([slow, quick], 300), woke.set()), daemon=True)
    try:
        waiting.start()
        assert not woke.is_set()  # nothing has ended yet
        quick.stdin.close()
        assert woke.wait(timeout=60), "the wait slept on past the quick stage's end"
        assert quick.wait(timeout=5) == 0 and slow.poll() is None
    finally:
        slow.kill()
        slow.wait()
        quick.kill()
        quick.wait()


@contextlib.contextmanager
def busy_descriptors(upto: int = 1100) -> Iterator[None]:
    """Every descriptor below `upto` taken, as in a long-lived web process holding many sockets: the next ones
    opened (a command's pipes, its pidfd) get numbers past select()'s limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, upto + 256)), hard))
    held = []
    try:
        base = os.open(os.devnull, os.O_RDONLY)
        held.append(base)
        while held[-1] < upto - 1:
            held.append(os.dup(base))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_commands_run_when_the_process_holds_more_than_a_thousand_descriptors():
    """A command's end is waited on with descriptors numbered past 1024 too (select() refuses those)."""
    with busy_descriptors():
        lines = Lines()
        result = run_command([PY, "-c", "print('ran')"], lines)
        piped = run_pipeline([Stage.of([PY, "-c", "print('a')"]), Stage.of(["cat"])], lines)
    assert result.ok and piped.ok
    assert lines.of("out") == ["ran", "a"]


def test_of_two_stages_failing_on_their_own_the_upstream_one_is_blamed_whichever_ended_first():
    from app.targets.command import PipelineResult, StageResult

    guard = StageResult("sqlguard", ("guard",), 3, ("refused at line 9",))
    psql = StageResult("psql", ("psql",), 3, ('ERROR:  relation "orders" does not exist',))
    stopped = StageResult("gpg", ("gpg",), -15, ())
    for exit_order in ((2, 1, 0), (1, 2, 0), (0, 1, 2)):
        assert PipelineResult((stopped, guard, psql), 1.0, exit_order).failed is guard
    # a stage its neighbour took down is blamed only when no stage failed on its own: then the first to end
    killed = StageResult("psql", ("psql",), -15, ())
    assert PipelineResult((stopped, killed), 1.0, (1, 0)).failed is killed
    assert PipelineResult((stopped, killed), 1.0, (0, 1)).failed is stopped


# --- how a failure is told -----------------------------------------------------------------


def test_an_exit_by_signal_is_named_never_a_negative_number():
    result = run_command(["sh", "-c", "kill -KILL $$"], capture=True)
    assert result.returncode == -9
    assert result.ended == "was killed by SIGKILL" and status_words(result.returncode) == "killed by SIGKILL"
    terminated = run_command(["sh", "-c", "kill -TERM $$"], Lines())
    assert terminated.ended == "was killed by SIGTERM"
    assert ended(3) == "exited with status 3" and status_words(3) == "exit status 3"
    assert status_words(-200) == "killed by signal 200"


def test_a_stage_that_fails_without_a_word_is_told_with_the_command_to_run_by_hand(tmp_path):
    lines = Lines()
    tool = tmp_path / "dump tool"  # a space: the command shown must still paste into a shell
    tool.write_text("#!/bin/sh\nexit 1\n")
    tool.chmod(0o755)
    result = run_pipeline([Stage.of([PY, "-c", "print('data')"], "source"), Stage.of([str(tool), "--all"])], lines)
    stage = result.failed
    assert stage is not None and stage.name == "dump tool" and stage.returncode == 1
    assert stage.failure() == (
        f"dump tool exited with status 1 and it printed nothing on stderr — run it by hand as Rewind's user, with the "
        f"target's environment, to see why: `'{tool}' --all`"
    )
    assert said_nothing(["x", "a b"], where="/srv/app", hint="look in its log") == (
        "it printed nothing — run it by hand in /srv/app as Rewind's user, with the target's environment, "
        "to see why: `x 'a b'`; look in its log"
    )


def test_a_stage_that_says_something_is_quoted_and_bad_bytes_do_not_break_the_words():
    lines = Lines()
    script = "import sys; sys.stderr.buffer.write(b'\\xff\\xfe not utf-8\\n\\n  \\nlast words\\n'); sys.exit(4)"
    result = run_pipeline([Stage.of([PY, "-c", script], "tool")], lines)
    assert result.failed.failure() == "tool exited with status 4:\n  \ufffd\ufffd not utf-8\n  last words"
    killed = run_pipeline([Stage.of(["sh", "-c", "kill -KILL $$"], "tool")], lines)
    assert killed.failed.failure().startswith("tool was killed by SIGKILL and it printed nothing on stderr")


def test_an_uncancellable_sink_runs_its_command_to_the_end_though_a_cancel_is_asked():
    """A recovery (a branch put back) goes through such a sink: the cancel that stops the work must not stop it."""
    cancelling = Lines(cancel_when=lambda _: True)
    with pytest.raises(CommandCancelled):
        run_command([sys.executable, "-c", "import time; time.sleep(0.5); print('done')"], cancelling)
    shielded = Lines(cancel_when=lambda _: True)
    result = run_command([sys.executable, "-c", "import time; time.sleep(0.5); print('done')"], Uncancellable(shielded))
    assert result.returncode == 0 and ("out", "done") in shielded


class TakesProgress(Lines):
    """A sink that takes progress, as a job's does."""

    def __init__(self) -> None:
        super().__init__()
        self.progress_said: list[tuple[float, str]] = []

    def progress(self, fraction: float, message: str) -> None:
        self.progress_said.append((fraction, message))


def test_read_progress_says_how_far_the_command_has_read_its_file_while_it_reads(tmp_path):
    """The offset is the child's own (one open file): measured mid-read, then at the end, never guessed."""
    data = tmp_path / "backup"
    data.write_bytes(b"x" * 40_000)
    slow_reader = "import sys, time\nwhile sys.stdin.buffer.read(4000):\n    time.sleep(0.05)\n"
    sink = TakesProgress()
    with data.open("rb") as source:
        watched = ReadProgress(sink, source, 40_000, lambda done, size: f"{done} of {size}", every_s=0.1)
        result = run_pipeline([Stage.of([PY, "-c", slow_reader], "reader")], watched, stdin=source)
        watched.report()
    assert result.ok
    middle = [f for f, _ in sink.progress_said[:-1]]
    assert any(0 < f < 1 for f in middle), sink.progress_said  # seen while it read
    assert middle == sorted(middle)
    assert sink.progress_said[-1] == (1.0, "40000 of 40000")
    assert sink.progress_said.count((1.0, "40000 of 40000")) == 1, "an offset that did not move is told once"
    with data.open("rb") as source:
        ReadProgress(Lines(), source, 40_000, str).report()  # a sink without progress: asked nothing, no error
        closed = ReadProgress(sink, source, 40_000, str)
    said = len(sink.progress_said)
    closed.report()  # the file closed meanwhile: nothing to say
    assert len(sink.progress_said) == said
