"""The pure chain rules, on rows built in memory."""

from datetime import datetime, timedelta

import pytest

from app.audit import chain

KEY = b"k" * 32


def build(n: int, key: bytes = KEY) -> list[tuple]:
    rows, prev = [], chain.GENESIS
    start = datetime(2026, 11, 25, 12, 0, 0)
    for i in range(1, n + 1):
        values = (i, start + timedelta(seconds=i), None, "system", "test.event", None, "{}", "ok", None, None, prev)
        digest = chain.row_hash(key, values)
        rows.append((*values, digest))
        prev = digest
    return rows


def test_intact_chain_reports_its_head():
    rows = build(5)
    verdict = chain.verify_rows(KEY, rows)
    assert verdict.intact
    assert verdict.checked == 5
    assert verdict.head == chain.Head(5, rows[-1][-1])


def test_wrong_key_breaks_at_first_row():
    verdict = chain.verify_rows(b"x" * 32, build(3))
    assert not verdict.intact
    assert (verdict.problem.row_id, verdict.problem.kind) == (1, "changed")


def test_details_encoding_is_canonical():
    assert chain.canonical_details({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


@pytest.mark.parametrize("text", ["", "12", "x:" + "a" * 64, "3:" + "g" * 64, "3:abc"])
def test_head_parse_rejects_malformed(text):
    with pytest.raises(ValueError, match=r"ID:HASH|hex"):
        chain.Head.parse(text)


def test_head_round_trips():
    head = chain.Head(7, "ab" * 32)
    assert chain.Head.parse(str(head)) == head
