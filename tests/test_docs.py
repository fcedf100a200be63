"""The README says what the code does: every targets-file key, command, setting and exit status is in it.

An on-call engineer reads the README, not the parser: a key, command or variable the code has and the
README lacks is one nobody uses, and one the README has and the code lacks fails in the middle of an incident.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from app.cli import rewind
from app.statuses import ExitStatus
from app.targets import config
from app.targets.config import parse_targets

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLE = ROOT / "docs" / "targets.example.toml"
ENV = {"PRODUCTION_DATABASE_URL": "postgresql://app:pw@db/app", "BACKUP_PASSPHRASE": "pass"}


def readme_block(language: str, after: str) -> str:
    """The first fenced block of that language after a heading or sentence of the README."""
    start = README.index(after)
    return re.search(rf"```{language}\n(.*?)```", README[start:], re.S).group(1)


def keys_the_parser_reads(monkeypatch) -> set[str]:
    """Every dotted key the parser looks up, seen by parsing the example (it has every table)."""
    keys: set[str] = set()
    tables: set[str] = set()
    real_done = config._Table.done

    def done(table: config._Table) -> None:
        tables.add(table.prefix)
        keys.update(table.key(name) for name in table.used)
        real_done(table)

    monkeypatch.setattr(config._Table, "done", done)
    parse_targets(EXAMPLE.read_text(), EXAMPLE, ENV)
    return keys - tables  # a sub-table's name is not a key of its own


def keys_written(toml: str) -> dict[str, str]:
    """Each key the file sets or shows commented out, with its line, by the table it sits under."""
    found: dict[str, str] = {}
    table = ""
    for line in toml.splitlines():
        if header := re.match(r"\[targets\.[a-z0-9_-]+\.?([a-z_.]*)\]", line):
            table = header.group(1)
        elif key := re.match(r"#? ?([a-z_]+) = ", line):
            found.setdefault(f"{table}.{key.group(1)}" if table else key.group(1), line)
    return found


def keys_in_the_table() -> set[str]:
    """The keys the README's key table explains: `a.b/c` names a.b and a.c."""
    start = README.index("| key | meaning |")
    rows = README[start:].split("\n\n", 1)[0].splitlines()[2:]
    named = set()
    for row in rows:
        for token in re.findall(r"`([a-z_./]+)`", row.split("|")[1]):
            first, *more = token.split("/")
            prefix = first.rpartition(".")[0]
            named |= {first, *(f"{prefix}.{name}" if prefix else name for name in more)}
    return named


def test_the_readme_shows_the_example_file_as_it_is():
    assert readme_block("toml", "### Targets file") == EXAMPLE.read_text()


def test_every_key_the_parser_reads_is_in_the_example_where_it_belongs_with_a_comment(monkeypatch):
    """Where it belongs: a key shown under the wrong table is refused when someone uncomments it."""
    accepted = keys_the_parser_reads(monkeypatch)
    assert {"repo.path", "process.reload", "database.flags_columns.tag", "env_file"} <= accepted
    written = keys_written(EXAMPLE.read_text())
    assert accepted - set(written) == set(), "missing from docs/targets.example.toml (or under the wrong table)"
    assert set(written) - accepted == set(), "shown in docs/targets.example.toml but refused by the parser"
    bare = sorted(key for key, line in written.items() if " # " not in line.lstrip("# "))
    assert bare == [], "say what these keys do, in a comment on their line"


def test_every_key_the_parser_reads_is_explained_in_the_readme_table(monkeypatch):
    accepted = keys_the_parser_reads(monkeypatch)
    explained = keys_in_the_table()
    assert accepted - explained == set(), "missing from the README's key table"
    assert explained - accepted == set(), "in the README's key table but not read by the parser"


def test_every_command_line_command_is_in_the_readme():
    def leaves(group: click.Group, path: str) -> list[str]:
        found = []
        for name, command in group.commands.items():
            found += leaves(command, f"{path} {name}") if isinstance(command, click.Group) else [f"{path} {name}"]
        return found

    commands = leaves(rewind, "flask rewind")
    assert "flask rewind backups due" in commands and "flask rewind init-admin" in commands
    assert [c for c in commands if c not in README] == []


def test_every_command_line_option_is_in_the_readme():
    def options(group: click.Group, path: str) -> list[str]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += options(command, f"{path} {name}")
            else:
                found += [
                    f"{path} {name} {opt}"
                    for param in command.params
                    if isinstance(param, click.Option)
                    for opt in param.opts
                    if opt.startswith("--")
                ]
        return found

    every = options(rewind, "flask rewind")
    assert "flask rewind backups due --dry-run" in every and "flask rewind run --as" in every
    assert [o for o in every if o.rsplit(" ", 1)[1] not in README] == []


def test_the_readme_s_tab_example_is_the_tab_the_code_registers(app):
    """It named flags.index, the page of every target's flags, not the tab's flags.tab."""
    from app.targetpage.tabs import Tab, all_tabs

    examples = re.findall(r'Tab\("(\w+)", "([^"]+)", "([\w.]+)", order=(\d+)\)', README)
    assert examples and [e for e in examples if Tab(*e[:3], int(e[3])) not in all_tabs()] == []


def test_every_setting_read_is_in_the_readme_table_and_the_other_way_round():
    read = set()
    for source in ("app/settings.py", "gunicorn.conf.py", "app/bindcheck.py"):
        read |= set(re.findall(r"(?<!config\[)\"(REWIND_[A-Z_]+)\"", (ROOT / source).read_text()))  # not app.config
    start = README.index("| variable | default | meaning |")
    table = README[start:].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `(REWIND_[A-Z_]+)` \|", table, re.M))
    assert "REWIND_BIND" in read and "REWIND_IDLE_MINUTES" in read
    assert read - documented == set(), "read by Rewind but missing from the README's Configuration table"
    assert documented - read == set(), "in the README's Configuration table but read nowhere"


def test_every_exit_status_is_in_the_readme_table():
    start = README.index("Exit statuses, for scripts:")
    table = README[start:].split("\n\n", 2)[1]
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented == {int(status) for status in ExitStatus}


def test_every_runbook_is_in_a_readme_table_with_the_role_it_needs(app):
    from app.auth.roles import Role
    from app.jobs import runbook as runbooks

    documented: dict[str, str] = {}
    for table in README.split("| runbook | role | what it does |")[1:]:
        for row in table.split("\n\n", 1)[0].splitlines()[2:]:
            names, role = row.split(" | ")[0:2]
            documented |= dict.fromkeys(re.findall(r"`([a-z_]+)`", names), role.split()[0])
    registered = {b.name: Role(b.role).label for b in runbooks.all_runbooks() if not b.name.startswith("test.")}
    registered.pop("selfcheck")  # Rewind's own check, named where `run -` is
    assert "`selfcheck`" in README
    assert len(documented) > 20 and documented == registered


def test_the_example_s_commented_out_alternative_parses_once_uncommented():
    """A managed process instead of service commands, a symlink switch, the optional keys: what a reader will try."""
    production, staging = EXAMPLE.read_text().split("[targets.staging]")
    optional = "command|cwd|pid_file|log_file|stop_timeout|reload|env|env_file|link|slot_dirs|tag|pg_bin|passphrase"
    lines = []
    for line in production.splitlines():
        if re.match(r"(start|stop|restart|status) = ", line):
            line = "# " + line  # either service commands or a managed process
        elif re.match(rf"# ({optional}) = ", line):
            line = line[2:]
        lines.append(line)
    text = "\n".join(lines) + "\n[targets.staging]" + staging
    prod = parse_targets(text, EXAMPLE, ENV)["production"]
    assert prod.process.managed and prod.process.reload == "SIGHUP" and prod.process.env_file
    assert prod.process.stop_timeout == 35.0 and prod.process.env == {"FLASK_ENV": "production"}
    assert prod.bluegreen.link == Path("/srv/app/current") and prod.database.flags_columns.tag == "team"
    assert prod.database.pg_bin == Path("/usr/lib/postgresql/16/bin") and prod.backups.passphrase == "pass"


def test_the_readme_lists_every_path_targets_check_checks():
    source = (ROOT / "app" / "targets" / "reach.py").read_text()
    checked = set(re.findall(r"(?:need|program)\(\"([a-z_.]+)\"", source))
    start = README.index("`flask rewind targets check` tries")
    said = README[start : README.index("exits 1 on any problem", start)]
    assert {"database.migrations", "process.command"} <= checked
    assert [key for key in sorted(checked) if f"`{key}`" not in said] == []
    assert "release.commands[" in source and re.search(r"each\s+release command", said)
