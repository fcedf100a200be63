"""What a screen reader says of a page's buttons and field labels, read from its HTML.

A list page repeats its buttons in every row. Read out of context (a screen reader's list of buttons, or Tab from
one to the next), ten "Revert" buttons are ten guesses; each must name its row."""

from __future__ import annotations

import html
import re
from collections import Counter
from html.parser import HTMLParser

NAMED = ("button", "label")


class _Names(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.names: dict[str, list[str]] = {tag: [] for tag in NAMED}
        self._tag: str | None = None
        self._text: list[str] = []
        self._label: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in NAMED and self._tag is None:
            self._tag, self._text, self._label = tag, [], dict(attrs).get("aria-label")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._tag:
            self.names[tag].append(self._label or " ".join("".join(self._text).split()))
            self._tag = None

    def handle_data(self, data: str) -> None:
        if self._tag is not None:
            self._text.append(data)


def names(html: str, tag: str = "button") -> list[str]:
    """Each button's (or label's) accessible name: its aria-label, else all its text, visually hidden text too."""
    parser = _Names()
    parser.feed(html)
    return parser.names[tag]


def repeated_names(html: str) -> dict[str, int]:
    """The names more than one button, or more than one field label, on the page answers to, with how many."""
    parser = _Names()
    parser.feed(html)
    repeated = {}
    for tag in NAMED:
        repeated |= {name: n for name, n in Counter(parser.names[tag]).items() if n > 1}
    return repeated


def form_of(page: str, button: str) -> str:
    """The first <form> whose submit button reads `button` (its visible words; a row's hidden name may follow)."""
    end = re.search(rf">{re.escape(button)}(</button>|<span class=\"sr-only\">)", page).start()
    return page[page.rindex("<form", 0, end) : end]


def form_fields(page: str, button: str) -> tuple[str, dict[str, str]]:
    """The address and every named field of the form whose button reads `button`, as a browser would send them."""
    form = form_of(page, button)
    action = html.unescape(re.search(r'action="([^"]+)"', form).group(1))
    fields = {}
    for tag in re.findall(r"<input [^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag).group(1)
        value = re.search(r'value="([^"]*)"', tag)
        fields[name] = html.unescape(value.group(1)) if value else ""
    return action, fields
