"""The demo builder's command runner: a failure names the step, how the command ended and what it said."""

from __future__ import annotations

import os

import pytest

from app.demo.command import run
from app.demo.target import DemoError

ENV = {"PATH": os.environ.get("PATH", os.defpath)}


def test_a_command_that_fails_without_a_word_says_so_with_the_command_to_run(tmp_path):
    with pytest.raises(DemoError) as caught:
        run(["sh", "-c", "exit 1", "setup"], env=ENV, what="installing the shop's packages", cwd=tmp_path)
    assert str(caught.value) == (
        f"installing the shop's packages failed (exit status 1) and it printed nothing — run it by hand in {tmp_path} "
        "as Rewind's user, with the target's environment, to see why: `sh -c 'exit 1' setup`"
    )


def test_a_command_killed_by_a_signal_is_named_so_and_its_words_are_kept(tmp_path):
    with pytest.raises(DemoError) as caught:
        run(["sh", "-c", "echo 'out of memory'; kill -KILL $$"], env=ENV, what="building the shop", cwd=tmp_path)
    assert str(caught.value) == "building the shop failed (killed by SIGKILL):\n  out of memory"
