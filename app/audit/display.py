"""An audit row's details as a person reads them: one "key: value" line each, nested values kept compact.

Only the page uses this; the exports keep the stored JSON as it is.
"""

from __future__ import annotations

import json


def _compact(value: object) -> str:
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def detail_pairs(details: str) -> list[tuple[str, str]]:
    """(key, value) in stored order; details that are not a JSON object come back whole under an empty key."""
    try:
        value = json.loads(details)
    except ValueError:
        return [("", details)] if details else []
    if isinstance(value, dict):
        return [(str(key), _compact(item)) for key, item in value.items()]
    return [("", _compact(value))]
