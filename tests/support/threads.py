"""Several threads let go at the same instant, for races that must come out one way."""

from __future__ import annotations

import threading
from collections.abc import Callable


def all_at_once(work: Callable[[int], None], count: int, *, timeout: float = 60) -> list[BaseException]:
    """Run work(0) … work(count - 1) in threads started together; what they raised, for the test to assert on."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            start.wait(timeout=30)
            work(n)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
        assert not thread.is_alive(), "a racing thread did not finish"
    return errors
