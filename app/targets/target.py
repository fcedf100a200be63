"""A Target: one configured environment with its adapters, built from the targets file.

Adapters are made on demand and know nothing of Flask; the instance folder
is passed in so a managed process keeps its pid file and log under Rewind's
own instance folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.targets.config import TargetConfig
from app.targets.envfile import EnvFileError, read_values
from app.targets.environment import inherited_env
from app.targets.flags import FlagTable
from app.targets.git import GitRepo
from app.targets.health import HealthCheck
from app.targets.process import CommandControl, ManagedProcess, ProcessControl, ProcessError


@dataclass(frozen=True)
class Target:
    config: TargetConfig
    instance_dir: Path

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state_dir(self) -> Path:
        return self.instance_dir / "targets" / self.name

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values read through env: in the targets file: masked in every job log."""
        return self.config.secrets

    def command_env(self) -> dict[str, str]:
        """The whole environment of every command this target runs: the shared allow-list plus its own env.

        Its own env is the env file's settings when `process.env_file` is on (read now, so a restored file
        is what the next start sees), then `process.env`. Never Rewind's own environment, so
        REWIND_SECRET_KEY and the like cannot reach a child process.
        """
        proc = self.config.process
        from_file: dict[str, str] = {}
        if proc is not None and proc.env_file and self.config.env_file is not None:
            from_file = {k: v for k, v in read_values(self.config.env_file).items() if v is not None}
        own = proc.env if proc else {}
        return inherited_env() | from_file | dict(own)

    def git(self) -> GitRepo:
        """Git reads the code, never the app's settings: a missing or broken env file must not hide the history
        (the dashboard, the target page and a code rollback all read it while the env file is the incident)."""
        repo = self.config.repo
        own = self.config.process.env if self.config.process else {}
        return GitRepo(repo.path, repo.branch, repo.remote, env=inherited_env() | dict(own))

    def process(self, *, stopping: bool = False) -> ProcessControl | None:
        """The process control; stopping=True for one that will only stop the application.

        A managed process is stopped by signals, which need none of the env file's settings, so a missing or
        broken env file (often the incident itself) never keeps it from stopping. A stop command runs with
        them: with that file unreadable it is refused, naming the file, before anything is stopped.
        """
        proc = self.config.process
        if proc is None:
            return None
        if proc.managed:
            env = (inherited_env() | dict(proc.env)) if stopping else self.command_env()
            return ManagedProcess(
                command=list(proc.command),
                cwd=proc.cwd or self.config.repo.path,
                pid_file=proc.pid_file or self.state_dir / "app.pid",
                log_file=proc.log_file or self.state_dir / "app.log",
                env=env,
                reload_signal=proc.reload,
                stop_timeout=proc.stop_timeout,
            )
        try:
            env = self.command_env()
        except EnvFileError as exc:
            if not stopping:
                raise
            raise ProcessError(
                f"{self.name} was not stopped: its stop command runs with the settings of its env file "
                f"(process.env_file = true), which Rewind cannot read: {exc.message}",
                action="stop",
                argv=proc.stop,
                fix=f"{exc.fix}, then stop again"
                if exc.fix
                else f"correct {self.config.env_file} or restore a version of it from the Config tab, then stop again",
            ) from None
        # In the checkout, as release and smoke commands run, not in whatever folder Rewind was started from; a
        # checkout that is gone (the incident itself, maybe) must not keep a service manager's stop from running.
        cwd = proc.cwd or (self.config.repo.path if self.config.repo.path.is_dir() else None)
        return CommandControl(proc.start, proc.stop, proc.restart, cwd=cwd, env=env, status=proc.status)

    def health(self, timeout_s: float | None = None, *, of_checkout: bool = False) -> HealthCheck | None:
        """`of_checkout`: with health.commit_field, healthy only when the app says it runs the checkout's commit."""
        health = self.config.health
        if health is None:
            return None
        expect_commit = None
        if of_checkout and health.commit_field:
            expect_commit = (health.commit_field, self.git().worktree_head())
        return HealthCheck(
            health.url,
            expect_status=health.status,
            expect_json=health.json,
            timeout_s=timeout_s if timeout_s is not None else health.timeout,
            failure_threshold=health.failure_threshold,
            ca_file=health.ca_file,
            request_timeout_s=health.probe_timeout,
            expect_commit=expect_commit,
        )

    def flags(self) -> FlagTable | None:
        """The application's flags table, when the targets file names one."""
        database = self.config.database
        if database is None or not database.flags_table:
            return None
        return FlagTable(database.url, database.flags_table, database.flags_columns)
