"""A Target: one configured environment with its adapters, built from the targets file.

Adapters are made on demand and know nothing of Flask; the instance folder
is passed in so a managed process keeps its pid file and log under Rewind's
own instance folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.targets.config import TargetConfig
from app.targets.git import GitRepo
from app.targets.health import HealthCheck
from app.targets.process import CommandControl, ManagedProcess, ProcessControl

# What a managed application inherits from Rewind's environment: enough to run, none of Rewind's secrets.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


def inherited_env() -> dict[str, str]:
    return {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}


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

    def git(self) -> GitRepo:
        repo = self.config.repo
        return GitRepo(repo.path, repo.branch, repo.remote)

    def process(self) -> ProcessControl | None:
        proc = self.config.process
        if proc is None:
            return None
        if proc.managed:
            env = inherited_env() | proc.env
            return ManagedProcess(
                command=list(proc.command),
                cwd=proc.cwd or self.config.repo.path,
                pid_file=proc.pid_file or self.state_dir / "app.pid",
                log_file=proc.log_file or self.state_dir / "app.log",
                env=env,
            )
        return CommandControl(proc.start, proc.stop, proc.restart, cwd=proc.cwd, env=None, status=proc.status)

    def health(self, timeout_s: float | None = None) -> HealthCheck | None:
        health = self.config.health
        if health is None:
            return None
        return HealthCheck(
            health.url,
            expect_status=health.status,
            expect_json=health.json,
            timeout_s=timeout_s if timeout_s is not None else health.timeout,
            failure_threshold=health.failure_threshold,
        )
