from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def run_at_once(count: int, work: Callable[[int], None], *, timeout: float = 120) -> list[BaseException]:
    """Run ``work(0..count-1)`` in real threads, each with its own database connection,
    released together by a barrier. Returns what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return errors
