"""The pure hash chain: canonical encoding, keyed row hashes, and verification.

Nothing here touches a database or Flask, so the rules that make the log
tamper-evident can be read (and tested) on their own. Each row's hash is an
HMAC-SHA-256, keyed with a secret kept outside the ops database, over the
row's canonical encoding including the previous row's hash: changing,
removing or inserting a row breaks the chain at that row, and someone with
only database access cannot rebuild it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

GENESIS = "0" * 64

# The order of these fields is part of the hash format; never reorder them.
FIELDS = (
    "id",
    "ts",
    "actor_id",
    "actor_name",
    "action",
    "target",
    "details",
    "outcome",
    "address",
    "user_agent",
    "prev_hash",
)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # one encoder: verify runs it per row


def format_ts(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds") + "Z"


def canonical_details(details: dict | None) -> str:
    """The one JSON text stored for details, so the hash covers exactly what is kept."""
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def encode(values: tuple) -> bytes:
    """Canonical bytes of one row: a compact JSON array in FIELDS order."""
    row = list(values)
    row[1] = format_ts(row[1]) if isinstance(row[1], datetime) else row[1]
    return _ENCODER.encode(row).encode()


def row_hash(key: bytes, values: tuple) -> str:
    return hmac.digest(key, encode(values), "sha256").hex()


@dataclass(frozen=True)
class Head:
    """The newest row's id and hash: kept somewhere else, it proves the tail was not cut."""

    id: int
    hash: str

    def __str__(self) -> str:
        return f"{self.id}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Head:
        row_id, sep, digest = text.strip().partition(":")
        if not sep or not row_id.isdigit() or len(digest) != 64:
            raise ValueError(f"a saved head looks like ID:HASH (64 hex digits), got {text!r}")
        try:
            int(digest, 16)
        except ValueError:
            raise ValueError(f"the hash of a saved head is 64 hex digits, got {digest!r}") from None
        return cls(int(row_id), digest.lower())


@dataclass(frozen=True)
class ChainBreak:
    """The first place the chain is wrong, and why, in words an operator can act on."""

    row_id: int | None
    kind: str  # changed | removed | out_of_place | tail_cut | head_mismatch
    message: str


@dataclass(frozen=True)
class Verdict:
    checked: int
    head: Head | None
    problem: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify_rows(key: bytes, rows: Iterable[tuple], saved_head: Head | None = None) -> Verdict:
    """Walk rows (tuples in FIELDS order plus the stored hash, in id order) and judge the chain."""
    expected_prev = GENESIS
    last: Head | None = None
    saved_seen = False
    checked = 0
    for row in rows:
        values, stored = tuple(row[: len(FIELDS)]), row[len(FIELDS)]
        row_id, prev_hash = values[0], values[-1]
        if last is not None and row_id != last.id + 1:
            gap = f"row {last.id + 1}" if row_id == last.id + 2 else f"rows {last.id + 1}-{row_id - 1}"
            return Verdict(
                checked, last, ChainBreak(last.id + 1, "removed", f"{gap} removed: row {row_id} follows row {last.id}")
            )
        if prev_hash != expected_prev:
            after = f"row {last.id}" if last else "the start of the log"
            return Verdict(
                checked,
                last,
                ChainBreak(
                    row_id,
                    "out_of_place",
                    f"row {row_id} does not link to {after}: a row was inserted, removed or reordered here",
                ),
            )
        if not hmac.compare_digest(row_hash(key, values), stored):
            return Verdict(
                checked,
                last,
                ChainBreak(
                    row_id,
                    "changed",
                    f"row {row_id} was changed: its contents do not match its hash "
                    "(edited, or written without the audit key)",
                ),
            )
        checked += 1
        last = Head(row_id, stored)
        expected_prev = stored
        if saved_head and row_id == saved_head.id:
            saved_seen = True
            if stored != saved_head.hash:
                return Verdict(
                    checked,
                    last,
                    ChainBreak(row_id, "head_mismatch", f"row {row_id} differs from the saved head {saved_head}"),
                )
    if saved_head and not saved_seen:
        end = f"row {last.id}" if last else "no rows"
        return Verdict(
            checked,
            last,
            ChainBreak(
                saved_head.id,
                "tail_cut",
                f"the tail was cut: the saved head is row {saved_head.id} but the log ends at {end}",
            ),
        )
    return Verdict(checked, last, None)
