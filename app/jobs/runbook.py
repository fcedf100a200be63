"""The runbook API: what a rollback procedure declares, and how its input is checked.

A runbook is plain Python: a name, the role it needs, whether it changes its
target, typed parameters, and ordered steps. Each step is a function taking a
JobContext. Parameters are checked before a job is queued, against what
exists, so a job never starts on input that cannot work.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from app.auth.roles import Role

if TYPE_CHECKING:
    from app.jobs.context import JobContext


class ParamError(ValueError):
    """A parameter that cannot be used; carries the field so a form can point at it.

    `problem` is what the form shows beside the field. Given the parameter's `label`, the problem is said
    of it ("is required") and the message is "Revision is required"; without one, the problem is a
    sentence that names what it is about ("staging is protected: …") and is the message as it stands.
    The message is what a flash, an audit row and the CLI say: never the parameter's raw name. `from_shell`: what
    to type in a shell to go on anyway, which only the CLI adds (a page has its own way: look again, confirm there).
    `misnamed`: the parameter is missing or not one of the runbook's, so the shell lists the ones it takes.
    """

    def __init__(
        self, param: str, problem: str, label: str | None = None, *, from_shell: str = "", misnamed: bool = False
    ) -> None:
        super().__init__(f"{label} {problem}" if label else problem)
        self.param = param
        self.problem = problem
        self.label = label
        self.from_shell = from_shell
        self.misnamed = misnamed


class UnknownRunbook(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"there is no runbook {name!r}")
        self.name = name


class StepFailed(Exception):
    """An expected failure, with a message written for the person watching the job."""


class StepSkipped(Exception):
    """The step had nothing to do (no remote to push to, no smoke test); the reason is shown."""


# No parameter needs more (commits, revisions, file names, reasons); a bigger one is refused, never echoed.
MAX_PARAM_CHARS = 4096


def too_long(raw: str | None) -> bool:
    return raw is not None and len(raw) > MAX_PARAM_CHARS


@dataclass(frozen=True)
class Param:
    name: str
    label: str
    kind: type = str
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    help: str = ""
    # Checks the value against what exists (a commit in the history, a backup in the catalog).
    check: Callable[[Any, str | None], Any] | None = None
    # When check turns what was typed into something else (a branch name into its commit), the job
    # keeps what was typed too, under this key, so its page and audit row show both.
    keep_typed: str | None = None
    # Only a person of this role or above may give the parameter a value: checked against the job's actor when it
    # is queued (service.enqueue), whichever door it came through; `role_refusal` is what anyone else is told.
    role: Role | None = None
    role_refusal: str = ""

    def parse(self, raw: str | None, target: str | None) -> Any:
        if too_long(raw):
            raise ParamError(
                self.name, f"is too long: {len(raw):,} characters, at most {MAX_PARAM_CHARS:,}", self.label
            )
        raw = (raw or "").strip()
        if not raw:
            if self.required and self.default is None:
                raise ParamError(self.name, "is required", self.label, misnamed=True)
            return self.default
        value: Any = raw
        if self.kind is int:
            try:
                value = int(raw)
            except ValueError:
                raise ParamError(self.name, f"must be a whole number, got {raw!r}", self.label) from None
        elif self.kind is float:
            try:
                value = float(raw)
            except ValueError:
                raise ParamError(self.name, f"must be a number, got {raw!r}", self.label) from None
        elif self.kind is bool:
            value = raw.lower() in ("1", "true", "yes", "on")
        if self.choices and value not in self.choices:
            raise ParamError(self.name, f"must be one of {', '.join(self.choices)}, got {raw!r}", self.label)
        if self.pattern and not re.fullmatch(self.pattern, raw):
            raise ParamError(self.name, f"{raw!r} is not a valid {self.label.lower()}")
        if self.check:
            value = self.check(value, target)
        return value


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[JobContext], None]
    # A follow-up (a push after a verified rollback): its failure does not undo what the steps
    # before it achieved, so the job ends "succeeded with warnings" and says both.
    follow_up: bool = False
    # Entered even when a cancel was asked, and left to see the cancel itself: for a step that must put right
    # what an earlier step half-did (start an application stopped for a swap) before the job may end.
    handles_cancel: bool = False


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    role: Role
    mutates: bool
    steps: tuple[Step, ...]
    params: tuple[Param, ...] = ()
    description: str = ""
    needs_target: bool = True
    # Runs once with the parsed params before queueing: cross-field checks.
    check: Callable[[dict, str | None], None] | None = None
    # Cross-field checks that need no typed confirmation: run before a shell asks for the target's name too.
    precheck: Callable[[dict, str | None], None] | None = None
    tags: frozenset[str] = field(default_factory=frozenset)
    # For a runbook that changes nothing but, with some params, works the target's server hard or beside
    # its live database (a restore test fills and drops a scratch copy): holds the target as a change does.
    holds_target_if: Callable[[Mapping[str, Any]], bool] | None = None
    # Puts another database in live's place (a restore, its undo): what Rewind writes to live meanwhile (a flag)
    # would stay behind in the database it replaces, so such writes are refused while one is queued or runs.
    replaces_database: bool = False

    def holds_target(self, params: Mapping[str, Any]) -> bool:
        """Whether a job of these params takes its target's lock: one such job per target at a time."""
        return self.mutates or bool(self.holds_target_if and self.holds_target_if(params))

    def holds_target_as_typed(self, raw: Mapping[str, str]) -> bool:
        """holds_target() from the parameters as typed, before their checks (which may read the target) run: each
        value parsed by its kind, choices and pattern alone; one that does not parse is read as typed (its own
        check refuses it later)."""
        if self.mutates:
            return True
        if self.holds_target_if is None:
            return False
        values: dict[str, Any] = {}
        for p in self.params:
            try:
                values[p.name] = replace(p, check=None).parse(raw.get(p.name), None)
            except ParamError:
                values[p.name] = (raw.get(p.name) or "").strip()
        return bool(self.holds_target_if(values))

    @property
    def asks_confirmation(self) -> bool:
        """Destructive: on a protected target the person types the target's name into `confirm`."""
        return any(p.name == "confirm" for p in self.params)

    def refuse_unknown(self, raw: Mapping[str, str]) -> None:
        """ParamError for the first name this runbook does not declare: never silently dropped."""
        unknown = sorted(set(raw) - {p.name for p in self.params})
        if unknown:
            raise ParamError(unknown[0], f"{unknown[0]!r} is not a parameter of {self.name}", misnamed=True)

    def check_role(self, params: Mapping[str, Any], can: Callable[[Role], bool]) -> None:
        """ParamError for the first parameter given a value that only a higher role than the actor's may give.

        `can` says whether the actor holds a role (User.can, which a disabled account fails)."""
        for p in self.params:
            value = params.get(p.name)
            if p.role is None or value in (None, "", False) or value == p.default or can(p.role):
                continue
            raise ParamError(p.name, p.role_refusal or f"only an {p.role.label} may give {p.label.lower()}")

    def check_values(self, raw: Mapping[str, str], target: str | None) -> None:
        """Every value but the typed confirmation, each on its own: a shell asks for the target's name only once
        the rest is right (a typo found after typing it wastes a minute of an incident)."""
        self.refuse_unknown(raw)
        values = {p.name: p.parse(raw.get(p.name), target) for p in self.params if p is not CONFIRM}
        if self.precheck:
            self.precheck(values, target)

    def parse_params(self, raw: Mapping[str, str], target: str | None) -> dict:
        self.refuse_unknown(raw)
        values = {p.name: p.parse(raw.get(p.name), target) for p in self.params}
        for p in self.params:
            typed = (raw.get(p.name) or "").strip()
            if p.keep_typed and typed and typed != values[p.name]:
                values[p.keep_typed] = typed
        if self.precheck:
            self.precheck(values, target)
        if self.check:
            self.check(values, target)
        return values


# The typed name that said yes (confirm), a form's guards against a stale page (expect, seen_head) and a value sealed
# for the job alone (sealed): kept on the job for its checks, never what a person reads it was asked to do.
UNSHOWN_PARAMS = frozenset({"confirm", "expect", "seen_head", "sealed"})


def shown_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A job's parameters as its page, the timeline and `flask rewind jobs show` give them: what a person chose
    (an unticked box or a target's default was not a choice)."""
    return {
        k: v
        for k, v in params.items()
        if k not in UNSHOWN_PARAMS and v is not None and v is not False and v not in ("", "default")
    }


def typed_value(value: Any) -> str:
    """A parameter's value as `flask rewind run` takes it (a list as comma-separated ids): the job page and
    `flask rewind jobs show` print it so, and it can be typed back."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


# The parameter confirm_protected reads: every runbook that asks for the typed name takes this one.
CONFIRM = Param("confirm", "Type the target name to confirm", required=False, default="")


def confirm_protected(params: dict, target: str | None, what: str = "") -> None:
    """A destructive runbook on a protected target needs the target's name typed, in its `confirm` parameter."""
    from app.jobs.engine import current_targets

    if target and current_targets().config(target).protected and params.get("confirm") != target:
        raise ParamError("confirm", f"{target} is protected: type its name, {target}, to confirm{what}")


_registry: dict[str, Runbook] = {}


def register(runbook: Runbook) -> Runbook:
    if runbook.name in _registry and _registry[runbook.name] is not runbook:
        raise ValueError(f"two runbooks are named {runbook.name!r}")
    _registry[runbook.name] = runbook
    return runbook


def get(name: str) -> Runbook:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownRunbook(name) from None


def title_of(name: str) -> str:
    """What a person calls a job's runbook: its title, or its name when no loaded runbook has that name."""
    found = _registry.get(name)
    return found.title if found else name


def all_runbooks() -> list[Runbook]:
    return sorted(_registry.values(), key=lambda r: r.title)


def load_modules(names: list[str]) -> None:
    """Import modules that register runbooks (Rewind's own areas, and any named in REWIND_RUNBOOKS)."""
    for name in names:
        importlib.import_module(name)
