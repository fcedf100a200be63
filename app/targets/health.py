"""Whether a target answers: its health URL, and an optional smoke-test command.

A rollback is only done when the application serves again, so every runbook
that restarts something ends by waiting for this check. urllib only (no new
dependency), no Flask. Redirects are followed only on the same host, and the
environment's HTTP proxy is ignored: the check must reach the target itself.

Waiting after a change fails fast rather than at the timeout when the answer
is already known: the process just started has exited, it keeps answering
5xx, or it listens on another port than the health URL's. An answer from a
process other than the one just started is not health.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from app.targets import sockets
from app.targets.ansi import strip_ansi
from app.targets.command import CommandCancelled, CommandTimedOut, Sink, run_command, shown
from app.targets.errors import TargetError

MAX_BODY = 1024 * 1024
MIN_REQUEST_TIMEOUT_S = 0.1
CANCEL_POLL_S = 0.05
FIRST_PAUSE_S = 0.1
# While nothing listens yet (connection refused) in the first seconds, probe every QUICK_PAUSE_S: a
# refused connect costs nothing, and an app that comes back in 80 ms is seen then, not at 100 ms or
# 300 ms. Answers that count towards giving up (5xx, another port) keep the doubling pauses.
QUICK_PAUSE_S = 0.02
QUICK_WINDOW_S = 2.0
BODY_EXCERPT = 400  # bytes of an answer kept to show why it failed
FAILURE_THRESHOLD = 3


@dataclass(frozen=True)
class Probe:
    """One request's outcome; reason says in words what was seen (and what was expected)."""

    ok: bool
    status: int | None
    elapsed_ms: float
    reason: str
    body: str = ""  # the first BODY_EXCERPT bytes of the answer, for the person reading why it failed
    timed_out: bool = False  # connected (or trying to), but no answer came within the probe's timeout

    def __str__(self) -> str:
        said = f"{'healthy' if self.ok else 'not healthy'}: {self.reason} ({self.elapsed_ms:.0f} ms)"
        # Slow and absent call for different waits: say which, so a log of probes reads as one or the other.
        return said + (": it is there but answers slowly, or not at all" if self.timed_out else "")

    @property
    def refused(self) -> bool:
        return self.status is None and self.reason == "connection refused"

    @property
    def answer(self) -> str:
        """What the target answered: its status and the start of its body, or why there was no answer."""
        if self.status is None:
            return self.reason
        return f"status {self.status}: {self.body}" if self.body else f"status {self.status}, empty body"


class Witness(Protocol):
    """The process just started, as verification follows it (process.ProcessWatch is one)."""

    pid: int | None

    def exited(self) -> str | None: ...

    def listening_ports(self) -> frozenset[int]: ...


@dataclass(frozen=True)
class Verdict:
    """How a wait for health ended: healthy, or why not, after how many probes, and whether before the timeout."""

    ok: bool
    reason: str
    probe: Probe | None
    probes: int
    early: bool = False  # given up before the timeout, because the answer was already known
    starting: bool = False  # the process ran all along without accepting a connection: slow to start, maybe

    @property
    def answer(self) -> str:
        """The last answer (status and start of body), to quote when verification failed."""
        return self.probe.answer if self.probe is not None else ""


class SmokeTestError(TargetError):
    """The smoke-test command could not run to an exit status (missing, or too slow)."""

    def __init__(self, argv: Sequence[str], problem: str, fix: str) -> None:
        self.argv = tuple(str(a) for a in argv)
        super().__init__(f"smoke test `{shlex.join(self.argv)}` {problem}", fix=fix)
        self.problem = problem


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same host, never down from https to http.

    A refused redirect surfaces as its 3xx status, so the probe reports it.
    """

    def __init__(self, follow: bool) -> None:
        self.follow = follow

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        old, new = urlsplit(req.full_url), urlsplit(urljoin(req.full_url, newurl))
        same_host = (new.hostname or "").lower() == (old.hostname or "").lower()
        allowed_scheme = new.scheme == old.scheme or (old.scheme, new.scheme) == ("http", "https")
        if not (self.follow and same_host and allowed_scheme):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"health URL must be http:// or https:// with a host, e.g. http://127.0.0.1:8000/health; got {url!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("the health URL must hold no user or password: a health endpoint should answer without them")
    try:
        parts.port  # noqa: B018 - parses the port, raising on a bad one
    except ValueError:
        raise ValueError(f"health URL {url!r} has an invalid port") from None
    return url


def _same(actual: Any, expected: Any) -> bool:
    """Equality that keeps JSON's true apart from 1."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    return actual == expected


def _json_mismatch(actual: Any, expected: Mapping[str, Any], path: str = "") -> str | None:
    """Why actual does not contain expected (every key present with an equal value, nested dicts too), or None."""
    if not isinstance(actual, dict):
        kind = "an array" if isinstance(actual, list) else repr(actual)[:40]
        return f"JSON {('field ' + path) if path else 'body'} is {kind}, expected an object"
    for key, want in expected.items():
        name = f"{path}.{key}" if path else str(key)
        if key not in actual:
            return f"JSON field {name} is missing, expected {want!r}"
        got = actual[key]
        if isinstance(want, Mapping):
            if why := _json_mismatch(got, want, name):
                return why
        elif not _same(got, want):
            return f"JSON field {name} is {got!r}, expected {want!r}"
    return None


def _commit_mismatch(document: Any, field: str, checkout: str) -> str | None:
    """Why the answer does not say it runs the checkout's commit (full, or abbreviated to 7 or more), or None."""
    said: Any = document
    for part in field.split("."):
        if not isinstance(said, Mapping) or part not in said:
            return f"JSON field {field} is missing (health.commit_field: the commit the app runs)"
        said = said[part]
    commit = said.strip().lower() if isinstance(said, str) else ""
    if len(commit) < 7 or not all(c in "0123456789abcdef" for c in commit):
        return f"JSON field {field} is {said!r}, not a commit id (7 or more hex digits; health.commit_field)"
    if checkout.startswith(commit):
        return None
    return (
        f"JSON field {field} says it runs {commit[:12]}, where the checkout is at {checkout[:12]}: the app still runs "
        "other code (a restart that did not restart it?)"
    )


def _timed_out(exc: BaseException) -> bool:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, TimeoutError)


def _describe_error(exc: BaseException, timeout: float, host: str) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return f"no answer within {round(timeout, 2):g} s"  # a budget cut by the deadline: 0.57, not 0.569827
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host {host}"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate not accepted: {reason.verify_message} — if the application's certificate is "
            "self-signed or from a private CA, set health.ca_file to it in the targets file"
        )
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason.reason or reason}"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(reason, ConnectionResetError):
        return "connection reset"
    if isinstance(reason, http.client.HTTPException):
        return f"not an HTTP answer ({type(reason).__name__})"
    return str(reason) or type(reason).__name__


class HealthCheck:
    """Asks a target's health URL whether it serves: a status code, and optionally JSON fields."""

    def __init__(
        self,
        url: str,
        expect_status: int = 200,
        expect_json: dict[str, Any] | None = None,
        timeout_s: float = 30,
        interval_s: float = 0.5,
        request_timeout_s: float = 2,
        failure_threshold: int = FAILURE_THRESHOLD,
        ca_file: str | os.PathLike | None = None,
        expect_commit: tuple[str, str] | None = None,
    ) -> None:
        """`expect_commit`: (JSON field, commit id) — healthy only when the answer's field names that commit."""
        self.url = _check_url(url)
        self.expect_commit = expect_commit
        self.expect_status = int(expect_status)
        if expect_json is not None and not isinstance(expect_json, Mapping):
            raise ValueError(
                f"expect_json must be an object of fields to match, e.g. {{'status': 'ok'}}; got {expect_json!r}"
            )
        self.expect_json = dict(expect_json) if expect_json is not None else None
        for name, value in (("timeout_s", timeout_s), ("interval_s", interval_s)):
            if value < 0:
                raise ValueError(f"{name} must be zero or more seconds, not {value!r}")
        if request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be a positive number of seconds, not {request_timeout_s!r}")
        self.timeout_s = float(timeout_s)
        self.interval_s = float(interval_s)
        self.request_timeout_s = float(request_timeout_s)
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be a count of probes, 1 or more, not {failure_threshold!r}")
        self.failure_threshold = failure_threshold
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({}),
            _SameHostRedirects(follow=not 300 <= self.expect_status < 400),
        ]
        # A CA file that cannot be read is a probe failure that says so, never an exception at every use.
        self._ca_problem: str | None = None
        if ca_file is not None:
            try:
                handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
            except (OSError, ssl.SSLError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self._ca_problem = f"health.ca_file {ca_file} cannot be used: {why} — check it in the targets file"
        self._opener = urllib.request.build_opener(*handlers)

    def probe(self, request_timeout_s: float | None = None) -> Probe:
        """One request; never raises for what the target does (refusal, timeout, bad body)."""
        timeout = request_timeout_s if request_timeout_s is not None else self.request_timeout_s
        headers = {"User-Agent": "Rewind-health-check", "Accept": "application/json, */*"}
        request = urllib.request.Request(self.url, headers=headers, method="GET")  # noqa: S310 - http(s) only, checked
        started = time.monotonic()

        body = b""

        def done(ok: bool, status: int | None, reason: str, timed_out: bool = False) -> Probe:
            excerpt = strip_ansi(body[:BODY_EXCERPT].decode(errors="replace")).strip()
            return Probe(ok, status, round((time.monotonic() - started) * 1000, 1), reason, excerpt, timed_out)

        if self._ca_problem is not None:
            return done(False, None, self._ca_problem)
        landed = self.url  # where the answer came from, after same-host redirects
        try:
            with self._opener.open(request, timeout=timeout) as response:
                status, body = response.status, response.read(MAX_BODY + 1)
                location = None
                landed = response.geturl()
        except urllib.error.HTTPError as exc:
            status, location = exc.code, exc.headers.get("Location") if exc.headers else None
            try:
                body = exc.read(MAX_BODY + 1)
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                exc.close()
        except (OSError, http.client.HTTPException) as exc:
            host = urlsplit(self.url).hostname or ""
            return done(False, None, _describe_error(exc, timeout, host), timed_out=_timed_out(exc))

        if landed != self.url:
            # Say where the answer came from: a health URL that now redirects to a login or error
            # page answers 200 there, and "status 200" alone would hide that it is not the health endpoint.
            where = urlsplit(landed)
            status_text = (
                f"status {status} from {where.path or '/'}{'?' + where.query if where.query else ''} (redirected)"
            )
        else:
            status_text = f"status {status}"
        if status != self.expect_status:
            reason = f"{status_text}, expected {self.expect_status}"
            if location and 300 <= status < 400:
                reason += f" (redirect to {location} not followed: only same-host redirects are)"
            return done(False, status, reason)
        if self.expect_json is None and self.expect_commit is None:
            return done(True, status, status_text)
        if len(body) > MAX_BODY:
            return done(
                False, status, f"status {status}, but the body is over {MAX_BODY // 1024} KiB; not read as JSON"
            )
        try:
            document = json.loads(body)
        except ValueError:
            return done(False, status, f"{status_text}, but the body is not JSON")
        if self.expect_json is not None and (why := _json_mismatch(document, self.expect_json)):
            return done(False, status, why)
        said = f"{status_text}, JSON matches" if self.expect_json is not None else status_text
        if self.expect_commit is not None:
            field, checkout = self.expect_commit
            if why := _commit_mismatch(document, field, checkout):
                return done(False, status, f"{status_text}, but {why}")
            said += f", runs {checkout[:12]}"
        return done(True, status, said)

    def wait_healthy(
        self,
        should_cancel: Callable[[], bool] = lambda: False,
        on_probe: Callable[[Probe], None] | None = None,
        process: Witness | None = None,
    ) -> Verdict:
        """Probe until healthy, until the outcome is known, or until timeout_s has passed.

        Pauses start at 0.1 s and double up to interval_s: an app that comes
        back quickly is seen quickly, one that takes long is not hammered.
        While connections are refused in the first QUICK_WINDOW_S, the pause
        is QUICK_PAUSE_S. No
        request runs past the deadline. Raises CommandCancelled as soon as
        should_cancel() is true, like run_command, so a job stops the same way
        for both.

        A probe with no answer within request_timeout_s is no failure while the
        deadline has not passed: an application's first requests after a start
        or a reload can be slow (imports, connection pools, caches warming), so
        it is asked again. When the deadline passes with probes still getting
        no answer in time, the reason says it answered too slowly and which
        key to raise.

        Gives up early on failure_threshold answers of 5xx in a row. With the
        process just started (process), also as soon as it exits, and on
        failure_threshold probes in a row that it cannot have answered while
        it listens on other ports; and a healthy answer counts only when it
        can be its own (the health URL's port is one it listens on, or, for a
        URL of another host, it listens at all).
        """
        started = time.monotonic()
        deadline = started + self.timeout_s
        pause = min(FIRST_PAUSE_S, self.interval_s)
        parts = urlsplit(self.url)
        port = sockets.url_port(self.url)
        local = process is not None and sockets.is_local_host(parts.hostname or "")
        probes = errors = misdirected = slow = waited_out = refused = 0
        while True:
            if should_cancel():
                raise CommandCancelled()
            left = deadline - time.monotonic()
            budget = max(MIN_REQUEST_TIMEOUT_S, min(self.request_timeout_s, left))
            probe = self.probe(budget)
            probes += 1
            # Probes in a row with no answer in time; at least one must have had its whole timeout (waited_out):
            # one cut short by the deadline proves no slowness.
            slow = slow + 1 if probe.timed_out else 0
            refused = refused + 1 if probe.refused else 0
            waited_out = waited_out + (budget >= self.request_timeout_s) if probe.timed_out else 0
            gone = process.exited() if process is not None else None
            ports = process.listening_ports() if process is not None and gone is None else frozenset()
            elsewhere = bool(ports) and (probe.refused or (local and port not in ports))
            if process is not None and probe.ok and (gone or elsewhere or not ports):
                why = _not_its_answer(process, port, ports, gone)
                probe = replace(probe, ok=False, reason=f"{probe.reason}, but {why}")
            if on_probe is not None:
                on_probe(probe)
            if gone:
                reason = f"{gone} while it was being verified; last probe: {probe.reason}"
                return Verdict(False, reason, probe, probes, True)
            if probe.ok:
                return Verdict(True, probe.reason, probe, probes)
            errors = errors + 1 if probe.status is not None and probe.status >= 500 else 0
            misdirected = misdirected + 1 if elsewhere else 0
            if errors >= self.failure_threshold:
                reason = f"answered {probe.status} to {errors} probes in a row ({probe.reason})"
                return Verdict(False, reason, probe, probes, True)
            if misdirected >= self.failure_threshold:
                listens = ", ".join(str(p) for p in sorted(ports))
                if local and port not in ports:
                    where = f"not on the health URL's port {port}"
                else:
                    where = f"yet {self.url} refuses connections (is it bound to another address?)"
                reason = (
                    f"pid {process.pid} listens on port {listens}, {where} ({misdirected} probes in a row;"
                    f" last: {probe.reason}): check the health URL's port, or the address the app binds"
                )
                return Verdict(False, reason, probe, probes, True)
            if time.monotonic() >= deadline:
                if waited_out:
                    return Verdict(False, self._too_slow(slow, probes), probe, probes)
                if process is not None and process.pid is not None and refused == probes and not ports:
                    # Alive all along, never listening: slow to start (or stuck starting), not broken code.
                    reason = (
                        f"pid {process.pid} still runs but accepted no connection on port {port} within "
                        f"{self.timeout_s:g} s (health.timeout) — if the application is slow to start (loading code, "
                        "migrating, warming caches), raise health.timeout in the targets file; otherwise its log "
                        "says what it waits for"
                    )
                    return Verdict(False, reason, probe, probes, starting=True)
                reason = f"no healthy answer within {self.timeout_s:g} s; last: {probe.reason}"
                return Verdict(False, reason, probe, probes)
            if probe.refused and not elsewhere and time.monotonic() - started < QUICK_WINDOW_S:
                wait = min(QUICK_PAUSE_S, pause)
            else:
                wait, pause = pause, min(pause * 2, self.interval_s)
            pause_until = min(deadline, time.monotonic() + wait)
            while (left := pause_until - time.monotonic()) > 0:
                if should_cancel():
                    raise CommandCancelled()
                time.sleep(min(left, CANCEL_POLL_S))

    def _too_slow(self, slow: int, probes: int) -> str:
        """An application that accepts connections but never answered in time: slow (raise the probe's timeout)
        or stuck (look at it); the person reading can tell which from its log."""
        if slow == probes:
            row = "its only probe got no answer" if probes == 1 else f"none of its {probes} probes got an answer"
        else:
            row = "its last probe got no answer" if slow == 1 else f"its last {slow} probes got no answer"
        return (
            f"it answered too slowly: {row} within {self.request_timeout_s:g} s (health.probe_timeout) before "
            f"health.timeout ({self.timeout_s:g} s) passed — if the application is slow rather than stuck, raise "
            "health.probe_timeout in the targets file"
        )


def _not_its_answer(process: Witness, port: int, ports: frozenset[int], gone: str | None) -> str:
    """Why a good answer is not the started process's own."""
    if gone:
        return (
            "another process answered: the one started is gone — if the application puts itself in the "
            "background (daemonizes), make it stay in the foreground (e.g. no --daemon): Rewind supervises it, "
            "and cannot stop or restart a copy it does not know"
        )
    if ports:
        listens = ", ".join(str(p) for p in sorted(ports))
        return f"another process answered: pid {process.pid} listens on {listens}, not {port}"
    return f"pid {process.pid} listens on no port yet, so another process answered"


def run_smoke(
    argv: Sequence[str],
    timeout: float,
    sink: Sink | None = None,
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Run the target's smoke-test command (argv, no shell), streaming its lines; returns its exit status.

    The caller decides what a non-zero status means. SmokeTestError when it
    cannot run or overruns timeout; CommandCancelled when the sink cancels.
    """
    if isinstance(argv, str | bytes) or not argv:
        raise ValueError(f"the smoke-test command must be a non-empty list of arguments, not {argv!r}")
    if sink is not None:
        sink.line("cmd", "$ " + shown(argv))
    try:
        return run_command(argv, sink, timeout=timeout, cwd=cwd, env=env).returncode
    except CommandTimedOut:
        raise SmokeTestError(
            argv,
            f"did not finish within {timeout:g} s and was stopped",
            "make the smoke test faster, or raise its timeout in the targets file",
        ) from None
    except OSError as exc:
        raise SmokeTestError(
            argv,
            f"cannot run: {exc.strerror or exc}: {exc.filename if exc.filename is not None else argv[0]}",
            "check the command path and its working directory in the targets file",
        ) from None
