"""What a target is right now, gathered for its overview page."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.dashboard.cards import TargetCard, build_card
from app.jobs.models import Job
from app.jobs.redact import Redactor
from app.targetpage.summaries import Summary
from app.targets import sockets
from app.targets.errors import TargetError
from app.targets.process import ProcessStatus


@dataclass(frozen=True)
class Overview:
    card: TargetCard
    process: ProcessStatus | None  # None: the target has no process control configured
    process_problem: str | None
    running: Job | None
    last_finished: Job | None
    lines: list[Summary]
    answer: str = ""  # what an unhealthy target answered (status and start of body), secrets masked
    stray: str = ""  # not running, yet its health URL answers healthy: who serves it


def failing_answer(target, reading) -> str:
    """The failing answer as the page may show it: the target's secrets and Rewind's own masked."""
    probe = reading.probe if reading is not None else None
    if probe is None or probe.ok or probe.status is None:
        return ""  # no answer at all: the reason ("connection refused") says it already
    redact = Redactor(current_app.config.get("REWIND_REDACT", []))
    for secret in target.secrets:
        redact.add(secret)
    return redact(probe.answer)


def build_overview(target, health_of) -> Overview:
    process = problem = None
    try:  # the process's environment comes from the env file, which may be missing or broken
        control = target.process()
        if control is not None:
            process = control.status()
    except TargetError as exc:
        problem = exc.in_words()
    card = build_card(target, health_of)
    return Overview(
        card=card,
        process=process,
        process_problem=problem,
        running=card.running,
        last_finished=card.last_job,
        lines=list(card.lines),  # the card gathered them: each area reads its part once per page
        answer=failing_answer(target, card.health),
        stray=stray_server(target, process, card.health),
    )


def stray_server(target, process: ProcessStatus | None, reading) -> str:
    """Who serves a target its process control says is not running: "not running" beside "healthy" alone left the
    reader to guess (a copy that put itself in the background, which a Start would only fight for the port)."""
    probe = reading.probe if reading is not None else None
    if process is None or process.running is not False or probe is None or not probe.ok:
        return ""
    port, pids = sockets.url_listeners(target.config.health.url)
    if pids:
        who = f"pid {', '.join(str(p) for p in pids)} listens"
    elif users := sockets.url_listener_users(target.config.health.url):  # a service's own user: its pid unseen
        who = f"a process of user {', '.join(users)} (whose pid Rewind's user cannot see) listens"
    else:  # nothing listens now: the healthy reading is older than the stop
        return ""
    return (
        f"yet its health URL answers healthy: {who} on port {port}, not a "
        "process Rewind knows (a copy that put itself in the background, or a status command that checks something "
        "else) — a Start would run a second copy beside it"
    )
