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
    "raw, message",
    [
        ({}, "commit: is required"),
        ({"commit": "zzz"}, "commit: 'zzz' is not a valid commit"),
        ({"commit": "abc1234", "count": "many"}, "count: expected a whole number"),
        ({"commit": "abc1234", "mode": "sideways"}, "mode: choose one of soft, hard"),
        ({"commit": "abc1234", "extra": "1"}, "extra: is not a parameter of t.params"),
    ],
)
def test_bad_params_name_the_field(raw, message):
    with pytest.raises(ParamError, match=message):
        BOOK.parse_params(raw, "staging")


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
