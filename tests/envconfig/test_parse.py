"""The env-file parser reads what python-dotenv reads, and names the line and reason where it cannot."""

from __future__ import annotations

import io

import pytest
from dotenv import dotenv_values
from dotenv.parser import parse_stream

from app.targets.envfile import EnvFileError, format_value, parse, set_key

CORPUS = [
    "A=1",
    "A=1\nB=2\n",
    "export A=1",
    "export   A = spaced ",
    "exportA=1",
    "export=1",
    "A='single quoted'",
    'A="double quoted"',
    'A="esc \\n \\t \\\\ \\" \\\' \\x \\u00e9"',
    "A='esc \\n \\' \\\\'",
    'A="line one\nline two\nline three"\nB=after',
    "A='multi\nline'\n# comment\nB=2",
    "A=value # a comment",
    "A=value#not a comment",
    "A= # only a comment",
    "A=#novalue",
    "A=",
    "A",
    "A # bare key with comment",
    "  A=indented",
    "\ufeffA=bom",
    "A=1\r\nB=2\r\n",
    "A=1\rB=2",
    "A=caf\u00e9 \u2603",
    "'QUOTED KEY'=v",
    "A=x\nA=y",
    'A="x" # trailing comment',
    "A=  lots of   spaces   ",
    "A=${OTHER}",
    "A='a' 'b'",
    'A="x" junk\nB=2',
    'A="never closed\nB=2',
    "A='never closed",
    "=novalue\nB=2",
    "A B=1\nC=3",
    "\n\n\nA=after blank lines\n\n",
    "# only a comment",
    "A=1\n\n   \n=bad\n",
    'A="x\ny" junk\nB="z"',
    "A=\t\ttabbed\t",
    'A=""',
    "A=''",
    "A=\\\\backslash",
    'A="ends with backslash\\',
    "DB_URL=postgresql://u:p@h:5432/db?sslmode=require",
    "  # indented comment\nA=1",
    "A=1 #c\nexport B='2' # c\nC=\"3\"#c",
]


def dotenv_bad_lines(text: str) -> list[int]:
    """python-dotenv's bad entries, each at the line its first non-blank character is on."""
    lines = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raw = binding.original.string
            lead = raw[: len(raw) - len(raw.lstrip())]
            lines.append(binding.original.line + lead.count("\n") + lead.count("\r") - lead.count("\r\n"))
    return lines


@pytest.mark.parametrize("text", CORPUS)
def test_same_values_and_same_bad_lines_as_python_dotenv(text):
    parsed = parse(text)
    assert parsed.values() == dict(dotenv_values(stream=io.StringIO(text), interpolate=False))
    assert [p.line for p in parsed.problems] == dotenv_bad_lines(text)


def test_a_bad_file_names_the_line_and_the_reason():
    with pytest.raises(EnvFileError) as caught:
        parse("A=1\nB='open\nC=3\n").check("staging's env file")
    message = str(caught.value)
    assert "staging's env file does not parse: line 2" in message
    assert "quote" in message and "never closed" in message
    assert caught.value.line == 2


def test_junk_after_a_value_is_explained_by_where_it_is_not_what_it_says():
    problem = parse('A=1\nB="x" y\n').problems[0]
    assert problem.line == 2 and problem.reason == "unexpected text at column 7, after the closing quote"
    # the text may be the rest of a secret whose quote closed too early: never quoted (review)
    leak = parse('DATABASE_URL="postgresql://u:pa"ss@h/db\nTOKEN abc123\n').problems
    assert [p.reason for p in leak] == [
        "unexpected text at column 33, after the closing quote",
        "unexpected text at column 7, after the key 'TOKEN' (no '=')",
    ]


@pytest.mark.parametrize(
    "value", ["plain", "two words", 'quo"te', "back\\slash", "multi\nline", "", "#hash", "it's", "a $b ${c}", "é"]
)
def test_a_written_value_reads_back_the_same_in_both_parsers(value):
    text = set_key("# settings\nexport A=old # keep\nB=2\n", "A", value)
    assert parse(text).values()["A"] == value
    assert dotenv_values(stream=io.StringIO(text), interpolate=False)["A"] == value
    assert text.startswith("# settings\nexport A=") and text.endswith("\nB=2\n")


def test_set_key_appends_a_new_key_and_refuses_bad_names_and_bad_files():
    assert set_key("A=1", "B", "x y") == 'A=1\nB="x y"\n'
    with pytest.raises(EnvFileError, match="not a key name"):
        set_key("A=1\n", "1BAD", "x")
    with pytest.raises(EnvFileError, match="line 1"):
        set_key("A='open\n", "B", "x")
    assert format_value("simple-1.2") == "simple-1.2"
    assert set_key("exportX=1\n", "exportX", "2") == "exportX=2\n"
