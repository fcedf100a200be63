"""Keeping secrets out of job logs: passwords in URLs, and any literal a job registers."""

from __future__ import annotations

import re
import threading

URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]+)@")
KEY_VALUE = re.compile(
    r"(?i)\b(?P<key>password|passwd|passphrase|secret|token|pgpassword)(?P<sep>\s*[=:]\s*)(?P<value>\S+)"
    r"(?:(?=(?P<rest>\s+[a-z]+\b)))?"
)
# After a colon, a lower-case word followed by more words is a sentence ("password: a health check…"), not a value.
PROSE_WORD = re.compile(r"[a-z]+[.,;]?")
MASK = "•••"
SHELL_QUOTED_QUOTE = "'\"'\"'"  # how shlex.quote writes a ' inside a quoted word


class Redactor:
    """Thread-safe: subprocess readers call it from their own threads."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        for secret in secrets or ():
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and (found := URL_PASSWORD.search(secret)):
            self.add(found["password"])  # a URL's password may be printed on its own
        if secret and len(secret) >= 4:
            # A command line to run by hand is shell-quoted (shlex), which writes each ' of a secret as '"'"'.
            forms = {secret, secret.replace("'", SHELL_QUOTED_QUOTE)}
            with self._lock:
                self._secrets.extend(form for form in forms if form not in self._secrets)
                self._secrets.sort(key=len, reverse=True)  # longest first, so overlaps mask fully

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = list(self._secrets)
        for secret in secrets:
            text = text.replace(secret, MASK)
        text = URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
        return KEY_VALUE.sub(_mask_value, text)


def _mask_value(m: re.Match) -> str:
    if ":" in m["sep"] and m["rest"] and PROSE_WORD.fullmatch(m["value"]):
        return m[0]
    return f"{m['key']}{m['sep']}{MASK}"
