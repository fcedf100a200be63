"""`flask rewind config versions TARGET`, `config diff TARGET A B`, `config snapshot TARGET`: the Config tab in a
terminal."""

from __future__ import annotations

import textwrap

import click
from flask.cli import AppGroup

from app.auth.roles import Role
from app.clierrors import CliError, Refused, acting_user, allowed
from app.envconfig import diff, store
from app.jobs.engine import current_targets
from app.statuses import EnvSource
from app.targets.errors import TargetError
from app.targets.registry import UnknownTarget


@click.group("config", cls=AppGroup)
def config() -> None:
    """Env file versions of a target (values never shown)."""


def _open(name: str):
    try:
        target = current_targets().open(name)
    except UnknownTarget as exc:
        raise Refused(str(exc)) from None
    if target.config.env_file is None:
        raise Refused(store.NoEnvFile(name).in_words())
    return target


@config.command("versions")
@click.argument("target")
@click.option("--before", type=click.IntRange(min=1), help="only versions older than this id (the next page)")
@click.option(
    "--limit", default=store.PAGE_SIZE, show_default=True, type=click.IntRange(1, 1000), help="newest first, this many"
)
def versions(target: str, before: int | None, limit: int) -> None:
    """List the versions of TARGET's env file, newest first: the ids `config diff` and config_restore take.
    When there are more, the last line is the command that lists the older ones.

    Example: flask rewind config versions production --before 120
    """
    _open(target)
    page = store.versions_page(target, before=before, limit=limit)
    if not page.items:
        click.echo(f"{target}: no env file versions {f'older than #{before}' if before else 'yet'}")
        return
    for v in page.items:
        who = EnvSource(v.source).label if v.source != EnvSource.REWIND else f"Rewind, by {v.actor_name or '?'}"
        if v.source == EnvSource.SNAPSHOT:
            who = f"snapshot by {v.actor_name or '?'}"
        changes = v.changes
        kinds = [kind for kind in ("added", "removed", "changed") if changes.get(kind)]
        summary = "; ".join(f"{kind}: {', '.join(changes[kind])}" for kind in kinds)
        problem = f" [does not parse: {v.parse_error}]" if v.parse_error else ""
        click.echo(f"#{v.id:<5} {v.created_at:%Y-%m-%d %H:%M:%S} UTC  {who}")
        # what changed, wrapped under the version: key lists grow long, an 80-column terminal does not
        click.echo(
            textwrap.fill(
                f"{summary or ('keys cannot be compared' if v.parse_error else 'no key changed')}"
                f"{f' {v.compared_since}' if v.compared_since else ''}{problem}",
                80,
                initial_indent=" " * 7,
                subsequent_indent=" " * 9,
                break_on_hyphens=False,
                break_long_words=False,
            )
        )
    if page.next_cursor is not None:
        more = f" --limit {limit}" if limit != store.PAGE_SIZE else ""
        click.echo(f"older versions: flask rewind config versions {target} --before {page.next_cursor}{more}")


@config.command("diff")
@click.argument("target")
@click.argument("a")
@click.argument("b")
def diff_(target: str, a: str, b: str) -> None:
    """Which keys differ between A and B; values stay masked.

    A and B are version ids from `flask rewind config versions TARGET`, or
    "now" for the file on disk. Comparing an old version with now also prints
    the command that puts that version back.

    Example: flask rewind config diff production 3 now
    """
    opened = _open(target)
    try:
        result = diff.between(opened, a, b)
    except store.UnknownVersion as exc:
        raise Refused(exc.in_words()) from None
    except TargetError as exc:
        raise CliError(exc.in_words()) from None
    click.echo(f"{target}: {result.before.label} → {result.after.label}")
    for side in (result.before, result.after):
        if side.problem:
            click.echo(f"  {side.label} does not parse: {side.problem}")
    if not result.comparable:
        click.echo("  the keys cannot be compared")
    elif not result.changed:
        click.echo(f"  {result.no_key_differs}")
    for row in result.changed:
        click.echo(f"  {row.change:8} {row.key} = •••")
    sides = {side.ref == diff.NOW: side for side in (result.before, result.after)}
    now, version = sides.get(True), sides.get(False)
    if now and version and now.file_digest != version.file_digest and not version.problem:
        # the exact command, with the digest that refuses it should the file change after this diff
        click.echo(
            f"to put version #{version.ref} back: flask rewind run {target} config_restore version={version.ref} "
            f"expect={now.file_digest} --as YOU"
        )


@config.command("snapshot")
@click.argument("target")
@click.option("--as", "as_user", required=True, metavar="USER", help="who does it (operator or above; audited)")
def snapshot(target: str, as_user: str) -> None:
    """Keep TARGET's env file as it is now as a version (the Config tab's Snapshot now), audited as USER
    (envconfig.snapshot, via: cli). A file the newest version already holds is left as it is (exit 0).

    Example: flask rewind config snapshot production --as oncall
    """
    opened = _open(target)
    # the area's audit rows say why under "reason" (as store.snapshot's failures do)
    denied = {"via": "cli"}
    actor = allowed(
        acting_user(as_user), Role.OPERATOR, "envconfig.snapshot", target, denied, "take snapshots", key="reason"
    )
    try:
        version, recorded = store.snapshot(opened, actor=actor, via="cli")
    except TargetError as exc:
        raise CliError(f"no snapshot: {exc.in_words()}") from None
    if recorded:
        click.echo(f"{target}: snapshot kept as version #{version.id}")
    else:
        click.echo(f"{target}: the env file is unchanged since version #{version.id}; nothing new to keep")
