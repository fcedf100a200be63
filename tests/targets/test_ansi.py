"""Terminal escape codes taken out of application output, everything else kept."""

import pytest

from app.targets.ansi import strip_ansi


@pytest.mark.parametrize(
    "raw, plain",
    [
        ("\x1b[31m\x1b[1mWARNING: dev server\x1b[0m", "WARNING: dev server"),  # colour and bold
        ("\x1b[38;5;208morange\x1b[m and \x1b[38;2;1;2;3mtrue colour\x1b[0m", "orange and true colour"),
        ("\x1b[2K\x1b[1Aprogress 50%", "progress 50%"),  # cursor moves and line erase
        ("\x1b]0;window title\x07text", "text"),  # OSC ended by BEL
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink ended by ST
        ("\x1b(Bcharset \x1b=keypad", "charset keypad"),  # a charset choice, a keypad mode
        ("cut short \x1b[3", "cut short "),  # a sequence cut at the end of a line
        ("a lone \x1b escape", "a lone  escape"),
        ("no codes: tabs\tand ünïcode €", "no codes: tabs\tand ünïcode €"),
        ("", ""),
    ],
)
def test_escape_codes_go_and_text_stays(raw, plain):
    assert strip_ansi(raw) == plain
