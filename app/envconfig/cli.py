"""`flask rewind config versions TARGET`, `flask rewind config diff TARGET A B`: the Config tab in a terminal."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.envconfig import diff, store
from app.statuses import EnvSource
from app.targets import registry
from app.targets.errors import TargetError
from app.targets.registry import UnknownTarget


@click.group("config", cls=AppGroup)
def config() -> None:
    """Env file versions of a target (values never shown)."""


def _open(name: str):
    try:
        return registry.current().open(name)
    except UnknownTarget as exc:
        raise click.ClickException(str(exc)) from None


@config.command("versions")
@click.argument("target")
def versions(target: str) -> None:
    """List the versions of TARGET's env file, newest first."""
    if _open(target).config.env_file is None:  # not "no versions yet": there never will be any
        exc = store.NoEnvFile(target)
        raise click.ClickException(f"{exc.message} — {exc.fix}")
    rows = store.versions(target)
    if not rows:
        click.echo(f"{target}: no env file versions yet")
        return
    for v in rows:
        who = EnvSource(v.source).label if v.source != EnvSource.REWIND else f"Rewind, by {v.actor_name or '?'}"
        if v.source == EnvSource.SNAPSHOT:
            who = f"snapshot by {v.actor_name or '?'}"
        changes = v.changes
        kinds = [kind for kind in ("added", "removed", "changed") if changes.get(kind)]
        summary = "; ".join(f"{kind}: {', '.join(changes[kind])}" for kind in kinds)
        problem = f" [does not parse: {v.parse_error}]" if v.parse_error else ""
        click.echo(f"#{v.id}\t{v.created_at:%Y-%m-%d %H:%M:%S}\t{who}\t{summary or 'no key changed'}{problem}")


@config.command("diff")
@click.argument("target")
@click.argument("a")
@click.argument("b")
def diff_(target: str, a: str, b: str) -> None:
    """Which keys differ between A and B (version ids, or "now" for the file on disk); values stay masked."""
    opened = _open(target)
    try:
        result = diff.between(opened, a, b)
    except TargetError as exc:
        raise click.ClickException(f"{exc.message}{' — ' + exc.fix if exc.fix else ''}") from None
    click.echo(f"{target}: {result.before.label} → {result.after.label}")
    for side in (result.before, result.after):
        if side.problem:
            click.echo(f"  {side.label} does not parse: {side.problem}")
    if not result.changed:
        click.echo("  no key differs")
    for row in result.changed:
        click.echo(f"  {row.change:8} {row.key} = •••")
    sides = {side.ref == diff.NOW: side for side in (result.before, result.after)}
    now, version = sides.get(True), sides.get(False)
    if now and version and result.changed and not version.problem:
        # the exact command, with the digest that refuses it should the file change after this diff
        click.echo(
            f"to put version #{version.ref} back: flask rewind run {target} config_restore version={version.ref} "
            f"expect={now.file_digest} --as YOU"
        )
