"""The runbook API's building blocks: parameters and redaction."""

import pytest

from app.auth.roles import Role
from app.jobs import runbook as runbooks
from app.jobs.redact import Redactor
from app.jobs.runbook import Param, ParamError, Runbook, Step


def test_redactor_masks_url_passwords_key_values_and_literals():
    redact = Redactor(["open-sesame"])
    text = "postgresql://app:pw123@db/app passphrase=open-sesame PGPASSWORD=abc token: xyz"
    masked = redact(text)
    assert "pw123" not in masked and "open-sesame" not in masked and "abc" not in masked and "xyz" not in masked
    assert "postgresql://app:•••@db/app" in masked


BOOK = Runbook(
    name="t.params",
    title="Params",
    role=Role.OPERATOR,
    mutates=False,
    steps=(Step("s", "S", lambda ctx: None),),
    params=(
        Param("commit", "Commit", pattern=r"[0-9a-f]{7,40}"),
        Param("count", "Count", kind=int, default=1, required=False),
        Param("mode", "Mode", choices=("soft", "hard"), default="soft", required=False),
    ),
)


def test_params_are_parsed_and_checked():
    assert BOOK.parse_params({"commit": "abc1234", "count": "3"}, "staging") == {
        "commit": "abc1234",
        "count": 3,
        "mode": "soft",
    }


@pytest.mark.parametrize(
    "raw, param, problem, message",
    [
        ({}, "commit", "is required", "Commit is required"),
        ({"commit": "zzz"}, "commit", "'zzz' is not a valid commit", "'zzz' is not a valid commit"),
        ({"commit": "abc1234", "count": "many"}, "count", "must be a whole number", "Count must be a whole number"),
        ({"commit": "abc1234", "mode": "sideways"}, "mode", "must be one of soft, hard", "Mode must be one of soft"),
        ({"commit": "abc1234", "extra": "1"}, "extra", "'extra' is not a parameter", "'extra' is not a parameter"),
    ],
)
def test_bad_params_name_the_field(raw, param, problem, message):
    """The field gets the problem beside it; the message is a sentence that names it by its label, never 'count: …'."""
    with pytest.raises(ParamError) as refused:
        BOOK.parse_params(raw, "staging")
    assert refused.value.param == param and refused.value.problem.startswith(problem)
    assert str(refused.value).startswith(message)


def test_unknown_runbook():
    with pytest.raises(runbooks.UnknownRunbook, match="there is no runbook 'nope'"):
        runbooks.get("nope")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("password: a health check failed", "password: a health check failed"),
        ("the token: expired again", "the token: expired again"),
        ("password: hunter2 was used", "password: ••• was used"),
        ("PASSWORD=abc def", "PASSWORD=••• def"),
        ("token: xyz", "token: •••"),
    ],
)
def test_redactor_masks_values_not_prose(text, expected):
    assert Redactor()(text) == expected


def test_the_readme_names_every_runbook_a_protected_target_asks_its_name_for(app):
    """The targets-file table is where an admin learns what `protected = true` means: no such runbook left out."""
    import re
    from pathlib import Path

    from app.jobs import runbook as runbooks

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| `protected` |")]
    named = set(re.findall(r"`([a-z_]+)`", row)) - {"protected"}
    asking = {b.name for b in runbooks.all_runbooks() if b.asks_confirmation and not b.name.startswith("test.")}
    assert asking and asking == named, f"left out: {sorted(asking - named)}; not asking: {sorted(named - asking)}"


def test_redactor_masks_a_secret_holding_a_quote_in_a_shell_quoted_command_line():
    import shlex

    redact = Redactor(["ab'cd-secret"])
    for argv in (["tool", "--password", "ab'cd-secret"], ["tool", "--key=ab'cd-secret"]):
        line = shlex.join(argv)
        assert "cd-secret" in line and "ab'cd-secret" not in line  # how shlex writes it: ab'"'"'cd-secret
        assert "cd-secret" not in redact(line), redact(line)
