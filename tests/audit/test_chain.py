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


def proofs(rows: list[tuple]) -> list[chain.Proof]:
    width = len(chain.FIELDS)
    return [(r[0], r[width - 1], r[width], chain.encode(r[:width])) for r in rows]


def test_a_wrong_candidate_encoding_is_checked_again_exactly_before_a_row_is_called_changed():
    rows = build(4)
    candidates = proofs(rows)
    candidates[2] = (*candidates[2][:3], b"not the canonical bytes")
    exact = {p[0]: p[3] for p in proofs(rows)}
    assert chain.judge(KEY, [candidates], reencode=exact.get).intact
    problem = chain.judge(KEY, [candidates]).problem
    assert (problem.row_id, problem.kind) == (3, "changed")


def test_walk_from_a_verified_row_checks_only_what_follows():
    rows = build(6)
    after = chain.Head(3, rows[2][-1])
    verdict = chain.judge(KEY, [proofs(rows[3:])], after=after)
    assert verdict.intact and (verdict.checked, verdict.since, verdict.head) == (3, 3, chain.Head(6, rows[5][-1]))
    skipped = chain.judge(KEY, [proofs(rows[4:])], after=after).problem
    assert (skipped.row_id, skipped.kind) == (4, "removed")


def test_anchor_behind_the_verified_row_means_the_head_was_moved_back():
    rows = build(6)
    anchor = chain.Anchor(chain.Head(2, rows[1][-1]), "the recorded head")
    problem = chain.judge(KEY, [proofs(rows[4:])], after=chain.Head(4, rows[3][-1]), anchors=[anchor]).problem
    assert problem.kind == "head_mismatch" and "moved back" in problem.message


def test_a_mark_seal_depends_on_the_key_and_every_field():
    at = datetime(2026, 11, 25, 12, 0, 0)
    seal = chain.seal_mark(KEY, chain.Head(5, "ab" * 32), at)
    assert seal == chain.seal_mark(KEY, chain.Head(5, "ab" * 32), at)
    assert seal != chain.seal_mark(b"y" * 32, chain.Head(5, "ab" * 32), at)
    assert seal != chain.seal_mark(KEY, chain.Head(6, "ab" * 32), at)
    assert seal != chain.seal_mark(KEY, chain.Head(5, "ab" * 32), at + timedelta(seconds=1))


@pytest.mark.parametrize("key", [b"k" * 32, b"short", b"x" * 64, b"long-" * 40])
def test_walk_hashes_exactly_like_hmac_for_any_key_length(key):
    """The walk's own HMAC (precomputed pad states) must agree with hmac.digest, which record() uses."""
    rows = build(3, key)
    assert chain.verify_rows(key, rows).intact
    assert not chain.verify_rows(key + b"!", rows).intact
