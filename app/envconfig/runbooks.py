"""Config rollback runbooks: restore an env file version, edit one key.

Both check the new file parses and that the file on disk is still the one the
person saw, keep the current file as a version, write atomically, restart and
verify; when verification fails they put the previous file back, restart and
verify again, and fail saying both.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace

from app.auth.roles import Role
from app.envconfig import captures, keys, store, suspect, watch
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.engine import current_targets
from app.jobs.runbook import CONFIRM, Param, ParamError, Runbook, Step, StepFailed, confirm_protected, register
from app.statuses import EnvSource
from app.targets.envfile import KEY_NAME, EnvFileError, decode, parse, set_key
from app.targets.errors import TargetError
from app.wording import sentence

assert captures.ENV  # registered on import: every checkpoint records the env file version
assert watch.check  # registered on import: the health monitor notices outside changes
assert suspect.changed_outside  # registered on import: a failed verification names a hand edit of the env file


def _target(target: str | None):
    return current_targets().open(target)


def _version(value: str, target: str | None) -> int:
    try:
        return store.get(target, value).id
    except TargetError as exc:
        raise ParamError("version", exc.message) from None


def _expect(value: str, target: str | None) -> str:
    """The digest of the file the person was shown; refused when the file has changed since."""
    try:
        now = keys.file_digest(_target(target).instance_dir, store.current_state(_target(target)).content)
    except TargetError as exc:
        raise ParamError("expect", exc.message) from None
    if value != now:
        raise ParamError("expect", stale_message(target))
    return value


def stale_message(target: str | None) -> str:
    return (
        f"the env file of {target} changed on disk after the diff was shown: nothing was changed; "
        "reload the Config tab and review the new diff"
    )


def _key(value: str, target: str | None) -> str:
    if not KEY_NAME.match(value):
        raise ParamError("key", f"{value!r} is not a key name: letters, digits, '_' and '.', not starting with a digit")
    return value


def _sealed(value: str, target: str | None) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ParamError("sealed", "expected the new value sealed by the Config tab") from None
    return value


# --- steps ---------------------------------------------------------------------------------------


def _authorise(ctx: JobContext) -> None:
    """A protected target's env file is changed by admins only, whichever door the job came through."""
    from app.auth.models import User
    from app.extensions import db
    from app.jobs.models import Job

    if not steps.target_of(ctx).config.protected:
        return
    job = db.session.get(Job, ctx.job_id)
    user = db.session.get(User, job.actor_id) if job and job.actor_id else None
    if user is None or not user.can(Role.ADMIN):
        raise StepFailed(f"{ctx.target} is protected: only an admin may change its env file; nothing was changed")


def _current(ctx: JobContext) -> bytes:
    """The file now, kept as a version, and refused when it is not the file the person saw."""
    target = steps.target_of(ctx)
    with steps.adapter_errors(ctx):
        version, recorded = store.ensure_current(target, job_id=ctx.job_id)
        content = store.current_state(target).content
    if recorded:
        ctx.log(f"the file on disk differed from the newest version: kept as version #{version.id}")
    if keys.file_digest(target.instance_dir, content) != ctx.params["expect"]:
        raise StepFailed(stale_message(ctx.target))
    ctx.state["previous"] = content
    ctx.state["previous_version"] = version.id
    ctx.log(f"the current file is version #{version.id}")
    return content


def _mask_changed(ctx: JobContext, before: bytes, after: bytes) -> list[str]:
    """Mask the values of the keys that change in every line of this job; the changed keys, named."""
    old, new = _readable_values(before), _readable_values(after)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    for key in changed:
        _mask(ctx, key, old.get(key))
        _mask(ctx, key, new.get(key))
    return changed


SECRET_KEY_WORDS = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|DSN|PRIVATE", re.I)


def _mask(ctx: JobContext, key: str, value: str | None) -> None:
    """Mask an env value in this job's lines, unless it is the target's own name under a key that names no secret.

    `APP_ENV=staging` is common: masked, every "staging" of the job read "•••" ("••• runs with version #2",
    "[targets.•••.release]", "marked known-good on •••"), while the name is in the page's title anyway. A value
    that only contains the name, or a secret's key holding it (DB_PASSWORD=staging), is masked as any other.
    """
    if value and value == ctx.target and not SECRET_KEY_WORDS.search(key):
        return
    ctx.add_secret(value)


def _readable_values(content: bytes) -> dict[str, str | None]:
    """What can be read of a file; none of a file that is not UTF-8 (the very file a restore is there to replace)."""
    try:
        return parse(decode(content)).values()
    except EnvFileError:
        return {}


def check_version(ctx: JobContext) -> None:
    _authorise(ctx)
    target = steps.target_of(ctx)
    with steps.adapter_errors(ctx):
        version = store.get(ctx.target, ctx.params["version"])
        content = store.content_of(target, version)
        try:
            parse(decode(content)).check(f"version #{version.id}")
        except EnvFileError as exc:
            raise StepFailed(f"{exc.message}; nothing was changed") from None
    current = _current(ctx)
    changed = _mask_changed(ctx, current, content)
    ctx.state["new"] = content
    ctx.state["what"] = f"version #{version.id}"
    ctx.log(f"version #{version.id} parses; keys that change: {', '.join(changed) or 'none'}")
    ctx.progress(1.0, f"version #{version.id} checked")


def check_edit(ctx: JobContext) -> None:
    _authorise(ctx)
    target = steps.target_of(ctx)
    key = ctx.params["key"]
    with steps.adapter_errors(ctx):
        value = keys.unseal(target.instance_dir, base64.b64decode(ctx.params["sealed"])).decode("utf-8")
    _mask(ctx, key, value)
    current = _current(ctx)
    with steps.adapter_errors(ctx):
        try:
            new = set_key(decode(current), key, value).encode("utf-8")
        except EnvFileError as exc:
            raise StepFailed(f"the env file cannot be edited: {exc.in_words()}; nothing was changed") from None
    _mask_changed(ctx, current, new)
    ctx.state["new"] = new
    ctx.state["what"] = f"the new value of {key}"
    ctx.log(f"{key} will be set (value masked)")
    ctx.progress(1.0, "checked")


def _write(ctx: JobContext, content: bytes, reason: str) -> int:
    target = steps.target_of(ctx)
    with steps.adapter_errors(ctx):
        store.env_file_of(target).write(content)
        version = store.record(
            target,
            store.current_state(target),
            EnvSource.REWIND,
            reason=reason,
            actor=_actor_name(ctx),
            job_id=ctx.job_id,
        )
    return version.id


def _actor_name(ctx: JobContext) -> str | None:
    from app.extensions import db
    from app.jobs.models import Job

    job = db.session.get(Job, ctx.job_id)
    return job.actor_name if job else None


def write_file(ctx: JobContext) -> None:
    reason = (
        f"restored version #{ctx.params['version']}"
        if "version" in ctx.params
        else f"edited {ctx.params['key']} (job #{ctx.job_id})"
    )
    version = _write(ctx, ctx.state["new"], reason)
    ctx.state["written_version"] = version
    ctx.did(f"wrote {ctx.state['what']} to the env file of {ctx.target} (now version #{version})")
    ctx.progress(1.0, f"version #{version} written")


def restart_or_undo(ctx: JobContext) -> None:
    """Restart; when the restart itself fails (a service manager refusing the new settings), undo as a failed
    verification does: the new file never stays behind a restart that did not happen."""
    try:
        steps.restart(ctx)
    except StepFailed as exc:
        _undo(ctx, f"the restart failed ({exc})", "failed to restart", str(exc))


def verify_or_undo(ctx: JobContext) -> None:
    """Verify; when that fails, put the previous file back, restart, verify again, and fail saying both."""
    passed, detail = steps.check_health(ctx)
    if passed:
        steps.verify_passed(ctx, detail)
        ctx.set_result(
            f"{ctx.target} runs with {ctx.state['what']} (env file version #{ctx.state['written_version']}); verified."
        )
        return
    _undo(ctx, f"verification failed ({detail})", "failed verification", detail)


def _undo(ctx: JobContext, why: str, failed: str, detail: str | None = None) -> None:
    """Put the previous file back, restart, verify that, and fail saying both (always raises StepFailed)."""
    previous = ctx.state["previous_version"]
    what = sentence(ctx.state["what"])
    detail = detail or why
    ctx.log(f"{why}; putting version #{previous} back", "err")
    try:
        version = _write(ctx, ctx.state["previous"], f"automatic undo: version #{previous} put back")
        ctx.did(f"put env file version #{previous} back on {ctx.target} (now version #{version})")
        steps.restart(ctx)
    except StepFailed as exc:
        ctx.verified(False, detail)
        raise StepFailed(f"{what} {failed}: {detail}. Putting the previous env file back failed too: {exc}") from None
    again, detail_again = steps.check_health(ctx)
    # What was verified is the undo, not the change: said, so "passed" on a failed job never reads as the edit passing.
    ctx.verified(again, f"the automatic undo (version #{previous} put back): {detail_again}")
    if again:
        raise StepFailed(
            f"{what} {failed} ({detail}). The previous env file "
            f"(version #{previous}) was put back automatically and {ctx.target} is healthy again."
        )
    raise StepFailed(
        f"{what} {failed} ({detail}), and so did the previous env file "
        f"(version #{previous}) put back after it: {detail_again}"
    )


def release(ctx: JobContext) -> None:
    """The target's release commands, after the new file and before the restart; on failure the old file goes back."""
    target = steps.target_of(ctx)
    if target.config.release is None:
        ctx.skip(f"no release commands are configured ([targets.{ctx.target}.release])")
    try:
        steps.run_release_commands(ctx, target)
    except steps.ReleaseFailed as exc:
        previous = ctx.state["previous_version"]
        version = _write(ctx, ctx.state["previous"], f"automatic undo: version #{previous} put back")
        raise StepFailed(
            f"{exc}. The previous env file (version #{previous}) was put back (now version #{version}); "
            "nothing was restarted."
        ) from None


CHECKPOINT = Step("checkpoint", "Record a checkpoint", steps.checkpoint)
WRITE = Step("write", "Write the env file", write_file)
RELEASE = Step("release", "Run the release commands", release)
RESTART = Step("restart", "Restart the application", restart_or_undo)
VERIFY = Step("verify", "Verify health (undo if it fails)", verify_or_undo)
EXPECT = Param("expect", "Digest of the env file shown", check=_expect, help="refuses a stale diff")
# Required and checked as EXPECT is, but in _check_restore, where the version is known: from the shell, the digest
# is what `config diff` prints, and neither "is required" nor "reload the Config tab" said so (QA). A precheck, as a
# parameter's own check is: the shell asks for a protected target's name only once the digest is right.
RESTORE_EXPECT = replace(EXPECT, required=False, default="", check=None)


def _check_restore(params: dict, target: str | None) -> None:
    diff = f"`flask rewind config diff {target} {params['version']} now`"
    if not params["expect"]:
        raise ParamError(
            "expect",
            "is required",
            EXPECT.label,
            misnamed=True,
            from_shell=f"{diff} shows what the restore changes and ends with the command to run",
        )
    try:
        _expect(params["expect"], target)
    except ParamError as exc:
        again = f"{diff} shows the new diff and ends with the command to run"
        raise ParamError(exc.param, exc.problem, from_shell=again) from None


RESTORE = register(
    Runbook(
        name="config_restore",
        title="Restore an env file version",
        description="Put an earlier version of the env file back, restart and verify; undone if verification fails.",
        role=Role.OPERATOR,
        mutates=True,
        params=(Param("version", "Version", check=_version), RESTORE_EXPECT, CONFIRM),
        precheck=_check_restore,
        check=confirm_protected,
        steps=(CHECKPOINT, Step("check", "Check the version", check_version), WRITE, RELEASE, RESTART, VERIFY),
        tags=frozenset({"config"}),
    )
)
EDIT = register(
    Runbook(
        name="config_edit",
        title="Edit one env setting",
        description="Set one key of the env file, restart and verify; undone if verification fails.",
        role=Role.ADMIN,
        mutates=True,
        params=(Param("key", "Key", check=_key), Param("sealed", "Sealed value", check=_sealed), EXPECT, CONFIRM),
        check=confirm_protected,
        steps=(CHECKPOINT, Step("check", "Check the edit", check_edit), WRITE, RELEASE, RESTART, VERIFY),
        tags=frozenset({"config"}),
    )
)
