"""A small HTTP client with a cookie jar, for tests against a real server (no extra dependency)."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import websocket

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Session:
    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)
        self.token = ""

    def request(self, method: str, path: str, data: dict | None = None, headers: dict | None = None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as response:
                status, head, text = response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as err:
            status, head, text = err.code, dict(err.headers), err.read().decode()
        if match := CSRF_META.search(text):
            self.token = match.group(1)
        return status, head, text

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, data: dict | None = None):
        if not self.token:
            self.get("/login")
        return self.request("POST", path, {**(data or {}), "csrf_token": self.token})

    def login(self, name: str, password: str) -> None:
        self.get("/login")
        status, _, _ = self.post("/login", {"name": name, "password": password})
        assert status == 302, f"login as {name} failed with {status}"
        self.get("/")

    @property
    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def websocket(self, path: str, origin: str | None = None, timeout: float = 10) -> websocket.WebSocket:
        url = self.base.replace("http://", "ws://") + path
        return websocket.create_connection(
            url,
            timeout=timeout,
            cookie=self.cookie,
            origin=origin if origin is not None else self.base,
            suppress_origin=origin == "",
        )
