"""Code rollback runbooks: revert, reset, deploy, fetch, restart, stop, start, verify.

Every runbook that changes a target records a checkpoint first and ends by
verifying the target; a commit that passes is marked known-good. Every code
change runs the target's release commands before the restart.
"""

from __future__ import annotations

import time

from app.auth.roles import Role
from app.deployments import bluegreen, captures, seenhead  # noqa: F401 - captures registers the code part of checkpoints
from app.deployments import steps as code
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.engine import current_targets
from app.jobs.runbook import CONFIRM, Param, ParamError, Runbook, Step, StepFailed, confirm_protected, register
from app.schema import gate_steps as schema
from app.targets import sockets
from app.targets.errors import TargetError
from app.targets.git import GitError


def _repo(target: str | None):
    try:
        return current_targets().open(target).git()
    except GitError as exc:
        raise ParamError("target", exc.in_words()) from None


def _commit(param: str):
    def check(value: str, target: str | None) -> str:
        try:
            return _repo(target).resolve(value)
        except GitError as exc:
            raise ParamError(param, exc.in_words()) from None

    return check


def _commits(value: str, target: str | None) -> list[str]:
    ids = [part for part in value.replace(",", " ").split() if part]
    if not ids:
        raise ParamError("commits", "name at least one commit")
    repo = _repo(target)
    resolved = []
    for ref in ids:
        try:
            resolved.append(repo.resolve(ref))
        except GitError as exc:
            raise ParamError("commits", exc.in_words()) from None
    # Newest first by place on the branch (never by date: a rebase leaves dates out of order),
    # so each revert applies on top of the ones after it.
    try:
        repo.check_revertable(resolved)
        return repo.newest_first(list(dict.fromkeys(resolved)))
    except GitError as exc:
        raise ParamError("commits", exc.in_words()) from None


def _deploy_ref(value: str, target: str | None) -> str:
    """The commit to deploy; one the branch already has is refused, so nothing restarts for nothing."""
    repo = _repo(target)
    try:
        sha = repo.resolve_ref_for_deploy(value)
        contained = repo.contains(sha)
    except GitError as exc:
        raise ParamError("ref", exc.in_words()) from None
    if contained:
        named = "" if sha.startswith(value.strip().lower()) else f" (commit {sha[:12]})"
        raise ParamError(
            "ref",
            f"{repo.branch} already contains {value.strip()}{named}: there is nothing to deploy. "
            "To go back to it, use Reset; to run it again, use Restart",
        )
    return sha


def _checks(*checks):
    def check(params: dict, target: str | None) -> None:
        for one in checks:
            one(params, target)

    return check


def _confirm_protected(params: dict, target: str | None) -> None:
    confirm_protected(params, target, " the reset")


# --- step functions -----------------------------------------------------------------

ROLL_BACK_BY_HAND = "Automatic rollback is off for this deploy: roll back by hand (revert or reset)"


def revert_commits(ctx: JobContext) -> None:
    shas = ctx.params["commits"]
    ctx.log(f"reverting {len(shas)} commit(s), newest first: {', '.join(s[:12] for s in shas)}")
    with steps.adapter_errors(ctx):
        head = code.git_of(ctx).revert(shas, sink=ctx)
    ctx.did(f"reverted {len(shas)} commit(s) on {ctx.target}")
    ctx.set_result(f"Reverted {len(shas)} commit(s); {ctx.target} now runs {head[:12]}.")
    ctx.progress(1.0, head[:12])


def tag_old_head(ctx: JobContext) -> None:
    with steps.adapter_errors(ctx):
        repo = code.git_of(ctx)
        repo.ready_to_change("reset")  # a reset that will be refused leaves no safety tag behind
        tag = repo.tag_safety()
    ctx.state["safety_tag"] = tag
    ctx.log(f"the old head is kept as tag {tag}")
    ctx.progress(1.0, tag)


def reset_branch(ctx: JobContext) -> None:
    sha = ctx.params["commit"]
    with steps.adapter_errors(ctx):
        head = code.git_of(ctx).reset_hard(sha, sink=ctx)
    ctx.did(f"reset {ctx.target} to {head[:12]}")
    ctx.set_result(f"Reset {ctx.target} to {head[:12]}; the old head is tag {ctx.state.get('safety_tag')}.")
    ctx.progress(1.0, head[:12])


def merge_ref(ctx: JobContext) -> None:
    sha = ctx.params["ref"]
    typed = ctx.params.get("ref_typed")
    what = f"{typed} ({sha[:12]})" if typed else sha[:12]
    with steps.adapter_errors(ctx):
        head = code.git_of(ctx).merge(sha, sink=ctx)
    ctx.state["deployed"] = head
    ctx.did(f"deployed {what} to {ctx.target}")
    ctx.set_result(f"Deployed {what}; {ctx.target} now runs {head[:12]}.")
    ctx.progress(1.0, head[:12])


def verify_or_roll_back(ctx: JobContext) -> None:
    """After a deploy: verify, and when that fails on an auto_rollback target, put the old commit back."""
    passed, detail = steps.check_health(ctx)
    if passed:
        steps.verify_passed(ctx, detail)
        return
    target = steps.target_of(ctx)
    start = code.start_commit(ctx)
    choice = ctx.params.get("auto_rollback") or "default"
    roll_back = target.config.auto_rollback if choice == "default" else choice == "on"
    if not roll_back:
        ctx.verified(False, detail)
        raise steps.unhealthy(ctx, detail, ROLL_BACK_BY_HAND)
    refusal = schema.code_back_refusal(target, start)
    if refusal:
        ctx.verified(False, detail)
        raise StepFailed(
            f"Deploy failed verification ({detail}). It was not rolled back automatically: {refusal}. "
            f"{ctx.target} is left on the deployed code, which has the schema's revisions."
        )
    ctx.log(f"verification failed ({detail}); rolling back to {start[:12]} as auto_rollback says")
    repo = code.git_of(ctx)
    try:
        with steps.adapter_errors(ctx):
            # The deploy began from a clean checkout and its release's writes are recorded: anything else
            # uncommitted now was changed by someone during the deploy, and put_back would discard it.
            edited = repo.dirty().foreign
            if edited:
                raise GitError(
                    f"{repo.path} has uncommitted changes made during the deploy to {', '.join(edited[:10])}; "
                    f"they were kept — commit or discard them, then reset {repo.branch} to {start[:12]} by hand"
                )
            tag = repo.tag_safety(prefix="rewind/failed-deploy")
            # What is uncommitted now is what its release commands wrote (built assets, compiled
            # translations): undone with it, never a refusal.
            discarded = repo.put_back(start, sink=ctx)
            ctx.log(f"the failed deploy is kept as tag {tag}")
            if discarded:
                ctx.log(f"undid what the release commands changed: {', '.join(discarded)}")
        # The old commit may need its own dependencies back: its release commands run before the restart.
        try:
            code.run_release_commands(ctx, target)
        except code.ReleaseFailed as exc:
            raise StepFailed(f"{exc}; {ctx.target} was not restarted") from None
        with steps.adapter_errors(ctx):
            control = target.process()
            if control is not None:
                control.restart(ctx)
    except StepFailed as exc:
        ctx.verified(False, detail)
        raise StepFailed(f"{detail}; the automatic rollback failed too: {exc}") from None
    again, detail_again = steps.check_health(ctx)
    # What was verified is the rollback, not the deploy: say so, so "passed" never reads as the deploy passing.
    ctx.verified(again, f"the automatic rollback to {start[:12]}: {detail_again}")
    if again:
        raise StepFailed(
            f"Deploy failed verification ({detail}). Rolled back automatically to {start[:12]}, "
            f"which is healthy again; the failed deploy is kept as tag {tag}."
        )
    raise StepFailed(f"Deploy failed verification ({detail}) and so did the rollback to {start[:12]}: {detail_again}")


STOP_SETTLE_S = 5.0  # how long a stop command that returns before the application has exited is given


def stop_app(ctx: JobContext) -> None:
    control = steps.control_of(ctx, stopping=True)
    with steps.adapter_errors(ctx):
        control.stop(ctx)
    if still := _still_serving(ctx, managed=control.watch() is not None):
        raise StepFailed(ctx.redact(still))
    if control.forced:
        ctx.set_result(f"{ctx.target} is stopped, by force: {control.forced}.")
    else:
        ctx.set_result(f"{ctx.target} is stopped.")


def _still_serving(ctx: JobContext, *, managed: bool) -> str | None:
    """Why the target is not stopped, when its health URL still answers healthy after the stop: a copy that put
    itself in the background (Rewind stopped only the process it started), or a stop command that exited 0
    without stopping this application. "Stopped" must not be said of an application that still serves."""
    with steps.adapter_errors(ctx):
        health = steps.target_of(ctx).health()
    if health is None:
        return None
    deadline = time.monotonic() + min(health.timeout_s, STOP_SETTLE_S)
    while (probe := health.probe()).ok:
        if time.monotonic() >= deadline or ctx.cancelled():
            break
        time.sleep(0.2)
    else:
        return None
    ctx.log(f"after the stop, {health.url} still answers: {probe}", "err")
    port, pids = sockets.url_listeners(health.url)
    # A service running as its own user listens where Rewind's user cannot read which pid: not "nothing".
    users = [] if pids else sockets.url_listener_users(health.url)
    if not pids and not users:
        # Nothing of this machine listens on the port: what answers is elsewhere (another instance behind a load
        # balancer), not this instance, which the stop did stop. Said, not failed: nothing here still serves.
        ctx.warn(
            f"{health.url} still answers healthy after the stop ({probe.reason}), but nothing on this machine "
            f"listens on port {port}: another instance answers that URL (a load balancer, maybe) — point health.url "
            "at this instance's own address, since verification reads it to judge this instance"
        )
        return None
    if pids:
        who = f"pid {', '.join(str(p) for p in pids)} listens on port {port}"
    else:
        who = f"a process of user {', '.join(users)} listens on port {port} (Rewind's user cannot see its pid)"
    if managed:
        fix = (
            "it is not the process Rewind started: if the application puts itself in the background (daemonizes), "
            "stop that copy by hand and make the command stay in the foreground (e.g. no --daemon)"
        )
    else:
        fix = "check that the stop command stops this application (its unit or program name), then stop again"
    return f"{ctx.target} still serves after the stop: {health.url} answers healthy ({probe.reason}); {who} — {fix}"


def start_app(ctx: JobContext) -> None:
    control = steps.control_of(ctx)
    with steps.adapter_errors(ctx):
        control.start(ctx)


def refuse_if_running(params: dict, target: str | None) -> None:
    """A Start asked of an application that runs (a page drawn while it was down, a second click) is refused
    before any job, saying what runs, rather than queued to fail and read as one more failure mid-incident."""
    try:
        control = current_targets().open(target).process()
        status = control.status() if control is not None else None
    except TargetError:
        return  # the job's own step says what is wrong, with its fix
    runs = status.runs(target) if status is not None else None
    if runs:
        raise ParamError("target", f"{runs}: nothing was started; Restart starts it afresh")


START_IT = "Next: start it (Start on the target's overview, which verifies it too)"


def verify_as_is(ctx: JobContext) -> None:
    """Verify without changing anything. For an application that was not running when asked (stopped on purpose, or
    it died), the way on is to start it: the general advice after a failed check, a rollback, is the wrong cure."""
    steps.verify(ctx, START_IT if steps.known_stopped(ctx) else steps.ROLL_BACK)


def push(ctx: JobContext) -> None:
    code.push(ctx)


def force_push(ctx: JobContext) -> None:
    code.push(ctx, force=True)


CHECKPOINT = Step("checkpoint", "Record a checkpoint", steps.checkpoint)
FETCH = Step("fetch", "Fetch from the remote", code.fetch)
RELEASE = Step("release", "Run the release commands", code.release)
RESTART = Step("restart", "Restart the application", steps.restart)
VERIFY = Step("verify", "Verify health", steps.verify)
PUSH = Step("push", "Push", push, follow_up=True)
HEAD = Step("head", "Check the head is the one shown", seenhead.check_head)

register(
    Runbook(
        name="revert",
        title="Revert commits",
        description="git revert the chosen commits (newest first), restart and verify; push if a remote is set.",
        role=Role.OPERATOR,
        mutates=True,
        params=(
            seenhead.SEEN_HEAD,  # first: on a stale page, the moved head is what to say, not what follows from it
            Param("commits", "Commits", check=_commits, help="one or more commit ids, 7-40 hex characters"),
            schema.GATE_OVERRIDE,
        ),
        check=schema.gate_check("revert"),
        steps=(
            HEAD,
            Step("gate", "Schema gate", schema.gate_step("revert")),
            CHECKPOINT,
            Step("revert", "Revert", revert_commits),
            RELEASE,
            schema.MIGRATE,
            RESTART,
            VERIFY,
            PUSH,
        ),
    )
)
register(
    Runbook(
        name="reset",
        title="Reset to a commit",
        description="Tag the current head, git reset --hard to the commit, restart and verify.",
        role=Role.ADMIN,
        mutates=True,
        params=(
            seenhead.SEEN_HEAD,
            Param("commit", "Commit", check=_commit("commit")),
            CONFIRM,
            schema.GATE_OVERRIDE,
        ),
        check=_checks(_confirm_protected, schema.gate_check("reset")),
        steps=(
            HEAD,
            Step("gate", "Schema gate", schema.gate_step("reset")),
            CHECKPOINT,
            Step("tag", "Tag the current head", tag_old_head),
            Step("reset", "Reset", reset_branch),
            RELEASE,
            schema.MIGRATE,
            RESTART,
            VERIFY,
            Step("push", "Force-push (if enabled)", force_push, follow_up=True),
        ),
    )
)
register(
    Runbook(
        name="deploy",
        title="Deploy a branch or commit",
        description="Merge into the deployed branch, restart and verify; on failure roll back if auto_rollback is on.",
        role=Role.OPERATOR,
        mutates=True,
        params=(
            Param("ref", "Branch or commit", check=_deploy_ref, keep_typed="ref_typed"),
            Param(
                "auto_rollback",
                "If verification fails",
                choices=("default", "on", "off"),
                default="default",
                required=False,
                help="default follows the target's auto_rollback; on puts the old commit back; off leaves it to you",
            ),
            schema.GATE_OVERRIDE,
        ),
        check=schema.gate_check("deploy"),
        steps=(
            FETCH,
            Step("gate", "Schema gate", schema.gate_step("deploy")),
            CHECKPOINT,
            Step("merge", "Merge", merge_ref),
            RELEASE,
            schema.MIGRATE,
            RESTART,
            Step("verify", "Verify health", verify_or_roll_back),
            PUSH,
        ),
    )
)
register(
    Runbook(
        name="fetch",
        title="Fetch from the remote",
        description="git fetch the remote's branches, so a deploy can name origin/… or a commit pushed there; "
        "the deployed branch does not move.",
        role=Role.OPERATOR,
        mutates=False,
        steps=(FETCH,),
    )
)
register(
    Runbook(
        name="restart",
        title="Restart",
        description="Restart the application and verify it.",
        role=Role.OPERATOR,
        mutates=True,
        steps=(RESTART, VERIFY),
    )
)
register(
    Runbook(
        name="stop",
        title="Stop",
        description="Stop the application.",
        role=Role.OPERATOR,
        mutates=True,
        # An outage until someone starts it: on a protected target as deliberate as a reset.
        params=(CONFIRM,),
        check=lambda params, target: confirm_protected(params, target, " the stop"),
        steps=(Step("stop", "Stop the application", stop_app),),
    )
)
register(
    Runbook(
        name="start",
        title="Start",
        description="Start the application and verify it.",
        role=Role.OPERATOR,
        mutates=True,
        precheck=refuse_if_running,
        steps=(Step("start", "Start the application", start_app), VERIFY),
    )
)
register(
    Runbook(
        name="bluegreen",
        title="Switch blue/green traffic",
        description="Check the idle slot, switch traffic to it, verify; the previous slot is left untouched.",
        role=Role.OPERATOR,
        mutates=True,
        # Moves every request at once: on a protected target as deliberate as a stop.
        params=(Param("slot", "Slot to switch to", check=bluegreen.check_slot), CONFIRM),
        check=lambda params, target: confirm_protected(params, target, " the traffic switch"),
        steps=(
            CHECKPOINT,
            Step("idle", "Check the idle slot", bluegreen.check_idle_slot),
            Step("switch", "Switch traffic", bluegreen.switch_traffic),
            Step("verify", "Verify health", bluegreen.verify_switch),
        ),
    )
)
register(
    Runbook(
        name="verify",
        title="Verify",
        description="Check health (and the smoke test) without changing anything.",
        role=Role.OPERATOR,
        mutates=False,
        steps=(Step("verify", "Verify health", verify_as_is),),
    )
)
