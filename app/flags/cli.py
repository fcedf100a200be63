"""`flask rewind flags list|set|kill|restore|create|delete|history`: the Flags tab from the shell, calling the same
service functions as its buttons (app/flags/store.py, restore.py, history.py), so the rules and the audit rows are the
page's, with "via": "cli"."""

from __future__ import annotations

import shlex
import sys
import textwrap
from contextlib import nullcontext

import click
from flask.cli import AppGroup

from app.auth.roles import Role
from app.clierrors import CliError, Refused, acting_user, allowed
from app.flags import history, restore, store
from app.jobs.engine import current_targets
from app.targets import registry
from app.targets.errors import TargetError
from app.targets.flags import FlagError, FlagTableError, FlagValueError, UnknownFlag, VanishedFlags

LIST_WIDTH = 80
VIA = "cli"
# What the person asked cannot be done as asked (exit 6): a name or value that cannot be used, a flag that moved or
# vanished, a plan the table no longer matches, a change while a job replaces the database. Trouble with the table
# itself (unreachable, locked, read-only, a state neither on nor off) or with the audit log is Rewind's (1).
_REFUSALS = (
    UnknownFlag,
    store.BadFlagInput,
    store.ReasonRequired,
    store.NoFlagsTable,
    store.DatabaseBeingReplaced,
    restore.PlanChanged,
    restore.RestoreTooEarly,
)


@click.group("flags", cls=AppGroup)
def flags() -> None:
    """Feature flags in a target's own database."""


def _target(name: str):
    try:
        return current_targets().open(name)
    except registry.UnknownTarget as exc:
        raise Refused(str(exc)) from None


def _fail(exc: TargetError, target: str) -> CliError:
    if isinstance(exc, UnknownFlag):
        return Refused(f"{exc.message}; see them with: flask rewind flags list {target}")
    if isinstance(exc, VanishedFlags):  # a name typed here may never have been there: not the tab's "no longer"
        names = ", ".join(exc.names)
        return Refused(
            f"not in {exc.table}: {names}; nothing was changed; see them with: flask rewind flags list {target}"
        )
    if isinstance(exc, store.ReasonRequired):
        return Refused(f'{exc.message}: pass --reason "why" (it goes to the audit log)')
    refusal = isinstance(exc, _REFUSALS) or (
        isinstance(exc, FlagError) and not isinstance(exc, FlagTableError | FlagValueError)
    )
    return Refused(exc.in_words()) if refusal else CliError(exc.in_words())


def _as_option(role: Role):
    return click.option(
        "--as", "as_user", required=True, metavar="USER", help=f"who does it ({role.label} or above; audited)"
    )


def _reason_option(help_text: str = "why, for the audit log; required on a protected target"):
    return click.option("--reason", default="", help=help_text)


@flags.command("list")
@click.argument("target")
def list_flags(target: str) -> None:
    """Every flag of TARGET with its state and description: the names `flags set` takes.

    Exits 1 when a row's state is neither on nor off (it is named after the others).
    """
    try:
        rows, unreadable = store.table_of(_target(target)).survey()
    except TargetError as exc:
        raise _fail(exc, target) from None
    width = max((len(f.name) for f in [*rows, *unreadable]), default=4)
    for flag in sorted(rows, key=store.by_name):  # the tab's order, not the table's
        click.echo(_row(f"{flag.name:<{width}}  {store.word(flag.enabled):<3}  ", flag.description or ""))
    for bad in sorted(unreadable, key=lambda row: store.place(row.name)):
        click.echo(f"{bad.name:<{width}}  ???  {bad.message}")
    if not rows and not unreadable:
        click.echo("no flags in the table")
    if unreadable:
        names = ", ".join(repr(bad.name) for bad in unreadable)
        raise CliError(f"the state of {names} is neither on nor off: set it to on or off in the database")


def _row(start: str, description: str) -> str:
    """A flag's line, its description wrapped under itself so the table stays readable on an 80-column terminal."""
    if not description:
        return start.rstrip()
    width = max(LIST_WIDTH, len(start) + 30)  # names so long that 80 columns leave no room: wrap at 30 characters
    return textwrap.fill(description, width, initial_indent=start, subsequent_indent=" " * len(start))


@flags.command("set")
@click.argument("target")
@click.argument("name")
@click.argument("state", metavar="on|off")
@_as_option(Role.OPERATOR)
@_reason_option()
def set_flag(target: str, name: str, state: str, as_user: str, reason: str) -> None:
    """Turn flag NAME of TARGET on or off at once, audited as USER (via: cli).

    NAME is as `flask rewind flags list TARGET` prints it. A flag already in
    that state is left alone (nothing written, exit 0).

    \b
    Example:
      flask rewind flags set production new_checkout off --as oncall \\
          --reason "checkout errors"
    """
    the_target = _target(target)
    asked = {"flag": name, "new": state, "reason": reason, "via": VIA}
    denied = {"flag": name, "reason": reason, "via": VIA}
    actor = allowed(acting_user(as_user), Role.OPERATOR, "flags.toggle", target, denied, "change flags")
    try:
        with store.refusing("flags.toggle", the_target, actor, asked):
            store.check_text(name, "the flag name")
            enabled = store.parse_state(state, "state")
        change, _ = store.toggle(the_target, name, enabled, seen=None, actor=actor, reason=reason, via=VIA)
    except TargetError as exc:
        raise _fail(exc, target) from None
    if change.changed:
        click.echo(f"{target}: {name} {store.word(change.old)} -> {store.word(change.new)}")
    else:
        click.echo(f"{target}: {name} was already {store.word(change.new)}; nothing written")


@flags.command("kill")
@click.argument("target")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--tag", help="every flag with this tag instead (needs database.flags_columns.tag)")
@click.option("--all", "every", is_flag=True, help="every flag of the table, as ticking every box on the tab")
@_as_option(Role.OPERATOR)
@_reason_option("why they go off, for the audit log (required)")
def kill(target: str, names: tuple[str, ...], tag: str | None, every: bool, as_user: str, reason: str) -> None:
    """The kill switch: turn the flags NAME... of TARGET (or those tagged --tag, or --all) off in one transaction,
    with one reason: all of them or none, audited as USER (flags.kill, via: cli).

    A named flag missing from the table refuses the whole switch, and nothing changes.

    \b
    Example:
      flask rewind flags kill production new_checkout new_search --as oncall \\
          --reason "checkout errors"
    """
    the_target = _target(target)
    chosen = sorted(set(names)) if not tag else None
    details = {"flags": chosen, "tag": tag, "reason": reason, "via": VIA}
    actor = allowed(acting_user(as_user), Role.OPERATOR, "flags.kill", target, details, "use the kill switch")
    try:
        with store.refusing("flags.kill", the_target, actor, details):
            given = sum([bool(names), tag is not None, every])
            if given > 1:
                raise store.BadFlagInput("the kill switch: name the flags, or give --tag, or --all; only one of them")
            if not given:  # the tab's "no flags chosen" alone leaves a shell user guessing how to choose
                raise store.BadFlagInput(
                    "no flags chosen: nothing to turn off; name the flags, or give --tag T, or --all"
                )
            for name in names:
                store.check_text(name, "the flag name")
        if every:
            rows, unreadable = store.table_of(the_target).survey()
            chosen = [flag.name for flag in rows] + [bad.name for bad in unreadable]
        changes = store.kill(the_target, names=chosen, tag=tag, actor=actor, reason=reason, via=VIA)
    except TargetError as exc:
        raise _fail(exc, target) from None
    turned = [c.name for c in changes if c.changed]
    already = [c.name for c in changes if not c.changed]
    click.echo(f"{target}: kill switch turned {len(turned)} flag(s) off: {', '.join(turned) or 'all were already off'}")
    if turned and already:
        click.echo(f"already off: {', '.join(already)}")


def _plan_lines(plan: restore.Plan, recreate: tuple[str, ...]) -> list[str]:
    """The plan as the restore page shows it: what changes, what is unknown, what is left alone."""
    when = f"{plan.as_of:%Y-%m-%d %H:%M:%S} UTC"
    said = when if plan.source == when else f"{plan.source} ({when})"  # a time chosen as such is its own words
    lines = [f"{plan.target}: flags as of {said}, as Rewind's records show"]
    if plan.swapped_by:
        jobs = ", ".join(f"#{job}" for job in plan.swapped_by)
        lines.append(
            f"  the database was replaced since (job {jobs}): each flag's state then is Rewind's own last record"
        )
    width = max((len(name) for name in _names(plan)), default=4)
    lines += [f"  change   {c.name:<{width}}  {store.word(c.old)} -> {store.word(c.new)}" for c in plan.changes]
    if not plan.changes:
        lines.append("  no flag state differs")
    for flag in plan.deleted_since:
        mark = "recreated" if flag.name in recreate else f"not recreated without --recreate {shlex.quote(flag.name)}"
        lines.append(f"  deleted  {flag.name:<{width}}  absent -> {store.word(flag.enabled)} ({mark})")
    lines += [
        f"  unknown  {flag.name:<{width}}  {store.word(flag.enabled)} now; changed outside Rewind, state then "
        "unknown: left as it is"
        for flag in plan.unknown
    ]
    lines += [
        f"  unknown  {name:<{width}}  deleted since; state then unknown: not recreated" for name in plan.unknown_gone
    ]
    lines += [f"  created  {name:<{width}}  created since: left alone" for name in plan.created_since]
    lines.append(f"  {plan.unchanged} flag(s) already as they were; fingerprint of the table: {plan.fingerprint}")
    return lines


def _names(plan: restore.Plan) -> list[str]:
    flags = [*plan.changes, *plan.deleted_since, *plan.unknown]
    return [f.name for f in flags] + plan.unknown_gone + plan.created_since


MOMENT_OPTIONS = {"as_of": "--as-of", "checkpoint": "--checkpoint", "job": "--job"}


def _apply_command(plan: restore.Plan, recreate: tuple[str, ...], reason: str, protected: bool) -> str:
    """The command that writes this very plan: its moment as recorded (a time, not "15 minutes ago"), and its
    fingerprint, which refuses it should the table move before it is run. A protected target's write needs a
    reason: with none given, the command says where it goes, as it does for the user."""
    words = ["flask rewind flags restore", shlex.quote(plan.target)]
    words += [f"{MOMENT_OPTIONS[key]} {shlex.quote(str(value))}" for key, value in plan.params.items()]
    words += [f"--recreate {shlex.quote(name)}" for name in recreate]
    words += [f"--fingerprint {plan.fingerprint}", "--yes", "--as USER"]
    if reason or protected:
        words += [f"--reason {shlex.quote(reason) if reason else 'WHY'}"]
    return " ".join(words)


@flags.command("restore")
@click.argument("target")
@click.option(
    "--as-of", "as_of", metavar="TIME", help="2026-05-01 10:00 (UTC, or with an offset), 10:00, '15 minutes ago'"
)
@click.option("--checkpoint", metavar="ID", help="a checkpoint's id (the Flags tab lists them)")
@click.option("--job", metavar="ID", help="as the flags were before job ID")
@click.option("--recreate", multiple=True, metavar="NAME", help="recreate this flag deleted since (repeatable)")
@click.option(
    "--fingerprint",
    default="",
    metavar="HEX",
    help="the plan's fingerprint as printed: the write is refused if the table moved since",
)
@click.option("--yes", is_flag=True, help="write the plan without asking")
@_as_option(Role.OPERATOR)
@_reason_option()
def restore_flags(
    target: str,
    as_of: str | None,
    checkpoint: str | None,
    job: str | None,
    recreate: tuple[str, ...],
    fingerprint: str,
    yes: bool,
    as_user: str,
    reason: str,
) -> None:
    """Restore TARGET's flags as of a time, a checkpoint or before a job (one of them): print the plan, what
    changes and what Rewind cannot prove, then write it in one transaction once confirmed (--yes, or y at
    the terminal's question), audited as USER (flags.restore, via: cli).

    Without --yes and with no terminal to ask, nothing is written and the last line is the command that writes
    this plan: its --fingerprint refuses it (exit 6, the table as it is now printed) if any flag of the table
    moved in between. The write checks the table against the plan either way.

    \b
    Examples:
      flask rewind flags restore production --as-of "15 minutes ago" --as oncall
      flask rewind flags restore production --checkpoint 42 --as oncall --yes \\
          --reason "back to before the deploy"
    """
    the_target = _target(target)
    asked = {key: value for key, value in (("as_of", as_of), ("checkpoint", checkpoint), ("job", job)) if value}
    details = {**asked, "reason": reason, "via": VIA}
    actor = allowed(acting_user(as_user), Role.OPERATOR, "flags.restore", target, details, "restore flags")
    try:
        # a plan only read is not audited, as the tab's plan page is not; the one about to be written is
        with store.refusing("flags.restore", the_target, actor, details) if yes else nullcontext():
            plan = restore.plan(the_target, **restore.plan_args(asked))
    except TargetError as exc:
        raise _fail(exc, target) from None
    for line in _plan_lines(plan, recreate):
        click.echo(line)
    if not plan.changes and not plan.deleted_since:
        click.echo("there is nothing to restore; nothing written")
        return
    if not plan.changes and not recreate:
        click.echo("nothing written: only deleted flags differ; name those to bring back with --recreate NAME")
        return
    unknown = sorted(set(recreate) - {flag.name for flag in plan.deleted_since})
    if unknown and not yes:  # the write refuses it (audited there): say so before asking or printing its command
        raise Refused(f"cannot recreate {', '.join(unknown)}: not deleted since {plan.source}; nothing written")
    if not yes and not (sys.stdin.isatty() and click.confirm(f"Write this plan to {target} now?", default=False)):
        command = _apply_command(plan, recreate, reason, the_target.config.protected)
        click.echo(f"nothing written; to write this plan: {command}")
        return
    try:
        changes = restore.apply(
            the_target,
            plan,
            seen=plan.expected,
            fingerprint=fingerprint or plan.fingerprint,
            recreate=list(recreate),
            actor=actor,
            reason=reason,
            via=VIA,
        )
    except restore.PlanChanged as exc:
        if exc.plan is None:
            raise _fail(exc, target) from None
        if exc.plan is not plan:  # the table moved while the plan was written: say the plan it is now
            for line in _plan_lines(exc.plan, recreate):
                click.echo(line)
        raise Refused(
            f"{exc.message}; the plan above is the table now: review it and run again with "
            f"--fingerprint {exc.plan.fingerprint}"
        ) from None
    except TargetError as exc:
        raise _fail(exc, target) from None
    click.echo(f"{target}: flags restored as of {plan.source}: {len(changes)} change(s) written")


@flags.command("create")
@click.argument("target")
@click.argument("name")
@click.argument("state", metavar="[on|off]", default="off")
@click.option("--description", default="", help="what the flag does, as the tab shows it")
@_as_option(Role.ADMIN)
@_reason_option()
def create(target: str, name: str, state: str, description: str, as_user: str, reason: str) -> None:
    """Add flag NAME to TARGET's flags table, off unless said, audited as USER (flags.create, via: cli).

    Example: flask rewind flags create staging new_search off --description "The new search" --as admin
    """
    the_target = _target(target)
    asked = {"flag": name, "new": state, "description": description, "reason": reason, "via": VIA}
    actor = allowed(acting_user(as_user), Role.ADMIN, "flags.create", target, asked, "create flags")
    try:
        with store.refusing("flags.create", the_target, actor, asked):
            flag = store.new_flag(name, state, description)
        store.create(the_target, flag, actor=actor, reason=reason, via=VIA)
    except TargetError as exc:
        raise _fail(exc, target) from None
    click.echo(f"{target}: flag {flag.name} created ({store.word(flag.enabled)})")


@flags.command("delete")
@click.argument("target")
@click.argument("name")
@click.option("--yes", is_flag=True, help="confirm on a protected target without asking")
@_as_option(Role.ADMIN)
@_reason_option()
def delete(target: str, name: str, yes: bool, as_user: str, reason: str) -> None:
    """Remove flag NAME from TARGET's flags table, audited as USER (flags.delete, via: cli) with its state,
    description and tag, so a restore as of an earlier time can bring it back.

    On a protected target it asks you to type the target's name; --yes answers for scripts, and with no terminal
    and no --yes it is refused.

    Example: flask rewind flags delete staging old_banner --as admin --reason "shipped"
    """
    the_target = _target(target)
    asked = {"flag": name, "seen": None, "reason": reason, "via": VIA}
    actor = allowed(acting_user(as_user), Role.ADMIN, "flags.delete", target, asked, "delete flags")
    try:
        with store.refusing("flags.delete", the_target, actor, asked):
            store.check_text(name, "the flag name")
            _confirm_delete(target, name, the_target.config.protected, yes)
        store.delete(the_target, name, seen=None, actor=actor, reason=reason, via=VIA)
    except TargetError as exc:
        raise _fail(exc, target) from None
    click.echo(f"{target}: flag {name} deleted; a restore as of an earlier time can bring it back")


def _confirm_delete(target: str, name: str, protected: bool, yes: bool) -> None:
    """A protected target's flag goes only once its name is typed, or --yes (as `run` asks for a destructive
    runbook there)."""
    if not protected or yes:
        return
    if not sys.stdin.isatty():
        raise store.BadFlagInput(f"{target} is protected and there is no terminal to ask: pass --yes")
    typed = click.prompt(f"{target} is protected. Type {target} to delete {name}", default="", show_default=False)
    if typed != target:
        raise store.BadFlagInput(f"you typed {typed!r}, not {target!r}: nothing was deleted")


@flags.command("history")
@click.argument("target")
@click.argument("name")
@click.option("--before", type=click.IntRange(min=1), help="only changes older than this audit row id (the next page)")
@click.option(
    "--limit",
    default=history.PAGE_SIZE,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="newest first, this many",
)
def flag_history(target: str, name: str, before: int | None, limit: int) -> None:
    """What Rewind did to flag NAME of TARGET, newest first, from the audit log: when, who, what, the change and
    why. When there are more, the last line is the command that lists the older ones.

    Example: flask rewind flags history production new_checkout --before 120
    """
    the_target = _target(target)
    now, problem = None, None
    try:
        now = store.table_of(the_target).get(name)
    except UnknownFlag:
        now = None
    except store.NoFlagsTable as exc:
        raise _fail(exc, target) from None
    except TargetError as exc:
        problem = exc.in_words()
    page = history.of_flag(target, name, before=before, limit=limit)
    if now is None and not page.items and problem is None and before is None:
        raise Refused(
            f"there is no flag {name!r} on {target}, now or in Rewind's records; see them with: "
            f"flask rewind flags list {target}"
        )
    if problem:
        click.echo(f"{target}: {name}: the table cannot be read now: {problem}")
    elif now is None:
        click.echo(f"{target}: {name} is not in the table now (deleted)")
    else:
        click.echo(
            f"{target}: {name} is {store.word(now.enabled)} now" + (f": {now.description}" if now.description else "")
        )
    if not page.items:
        click.echo(f"no changes through Rewind {f'older than #{before}' if before else 'yet'}")
    for event, change in page.items:
        why = f"  {event.reason!r}" if event.reason else ""
        click.echo(
            f"#{event.id:<6} {event.ts:%Y-%m-%d %H:%M:%S} UTC  {event.actor}  {event.verb}  "
            f"{store.word(change.get('old'))} -> {store.word(change.get('new'))}{why}"
        )
    if page.next_cursor is not None:
        more = f" --limit {limit}" if limit != history.PAGE_SIZE else ""
        click.echo(
            f"older changes: flask rewind flags history {shlex.quote(target)} {shlex.quote(name)} "
            f"--before {page.next_cursor}{more}"
        )
