"""`flask rewind audit head|verify|export`: anchor the chain outside the database, check it, write it to a file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from app.audit import export, store
from app.audit.chain import Head
from app.audit.filters import AuditFilter, FilterError
from app.clierrors import CliError, Refused
from app.files import create_new, sync_dir


@click.group(cls=AppGroup)
def audit() -> None:
    """Check the tamper-evident audit log, or export it."""


@audit.command("head")
def head() -> None:
    """Print the newest row as ID:HASH; keep it outside the ops database."""
    current = store.head()
    if current is None:
        raise CliError("the audit log is empty: there is no row to anchor yet")
    click.echo(str(current))


def _saved_head(ctx, param, value: str | None) -> Head | None:
    if value is None:
        return None
    try:
        return Head.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@audit.command("verify")
@click.option("--head", "saved", callback=_saved_head, help="a head saved earlier (ID:HASH) that must still be there")
def verify(saved: Head | None) -> None:
    """Check every row of the chain; exit status 0 only when it is intact."""
    verdict = store.verify(saved)
    if verdict.intact:
        click.echo(f"audit chain intact: {verdict.checked} rows, head {verdict.head or 'none (empty log)'}")
        return
    click.echo(f"audit chain BROKEN: {verdict.problem.message}", err=True)
    click.echo(f"({verdict.checked} rows checked before the break)", err=True)
    sys.exit(1)


OPTIONS = {field: f"--{field}" for field in AuditFilter.__dataclass_fields__} | {"since": "--from"}  # as typed


@audit.command("export")
@click.option("--format", "form", type=click.Choice(export.FORMATS), default="jsonl", show_default=True)
@click.option("--actor", default="", help="only rows by this user name")
@click.option("--action", default="", help="an action, or a prefix of whole segments: auth takes auth.login")
@click.option("--target", default="", help="only rows about this target")
@click.option("--outcome", default="", help="ok, failed or denied")
@click.option("--from", "since", default="", help="from this UTC time on (2026-11-26 14:05, or ISO 8601 with offset)")
@click.option("--until", default="", help="before this time")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="a file (default: stdout)")
def export_rows(form: str, output: str | None, **wanted: str) -> None:
    """Write the rows the audit page's filters would show, newest first, as the page's CSV or JSON-lines export.

    \b
    Example:
      flask rewind audit export --format csv --target production --from "2026-11-26 14:00" -o incident.csv
    """
    try:
        filters = AuditFilter.from_args(wanted, OPTIONS)
    except FilterError as exc:  # the page's words, each field named by the option that was typed; nothing written
        said = " · ".join(f"{OPTIONS[field]}: {problem}" for field, problem in exc.problems.items())
        raise Refused(f"bad filter: {said}") from None
    if output is None:  # bytes, UTF-8 whatever the terminal's encoding: the file a redirect makes is the download
        sys.stdout.flush()
        for chunk in export.chunks(filters, form):
            sys.stdout.buffer.write(chunk.encode("utf-8"))
        sys.stdout.buffer.flush()
        return
    # Under another name until the last row is in: a cut-off export must not pass for the whole report. A new
    # file, owner-only (audit rows hold addresses): never someone's own FILE.part, nor another export's.
    final = Path(output)
    part = final.with_name(final.name + ".part")
    try:
        out = create_new(part)
    except FileExistsError:
        raise Refused(f"{part} exists: another export is writing it, or one was stopped; remove it") from None
    except OSError as exc:
        raise CliError(f"cannot write {part}: {exc.strerror or exc}") from None
    try:
        with out:
            for chunk in export.chunks(filters, form):
                out.write(chunk.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, final)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise CliError(f"writing {final} failed, nothing was kept: {exc.strerror or exc}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    try:  # the export is whole at its name by now: a folder that cannot be synced does not undo that (review)
        sync_dir(final.parent)
    except OSError as exc:
        click.echo(f"rewind: {final} is written; its folder could not be synced: {exc.strerror or exc}", err=True)
