"""The tabs of a target's page: each area registers one, so a new area is a tab, not a new island.

An area calls `register(Tab(...))` when its views module is imported; the
target page lays the tabs out in `order`. The endpoint takes `name` (the
target) as its only URL argument.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tab:
    key: str  # "overview", "deployments", "flags" …: marks the current tab
    title: str
    endpoint: str
    order: int = 50


_tabs: dict[str, Tab] = {}


def register(tab: Tab) -> Tab:
    if tab.key in _tabs and _tabs[tab.key] != tab:
        raise ValueError(f"two target-page tabs are keyed {tab.key!r}")
    _tabs[tab.key] = tab
    return tab


def all_tabs() -> list[Tab]:
    return sorted(_tabs.values(), key=lambda t: (t.order, t.title))
