"""The code area's part of every checkpoint: the deployed commit."""

from __future__ import annotations

from app.checkpoints.captures import Capture, register
from app.targets.target import Target


def _take(target: Target) -> dict:
    repo = target.git()
    return {"commit": repo.head(), "branch": repo.branch}


CODE = register(Capture("code", "Code", _take, lambda v: f"{v['commit'][:12]} on {v['branch']}"))
