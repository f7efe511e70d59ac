from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import OperationalError, connection, transaction


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


def a_deadlock(first: Any, second: Any) -> OperationalError:
    """The error PostgreSQL raises in one of two transactions that lock the same two rows (model
    instances) in opposite orders: a real one, to hand to code that must answer it."""
    both = threading.Barrier(2)
    model = type(first)

    def lock_in_turn(i: int) -> None:
        with transaction.atomic():
            model.objects.select_for_update().get(pk=(first.pk, second.pk)[i])
            both.wait(timeout=30)
            model.objects.select_for_update().get(pk=(second.pk, first.pk)[i])

    (deadlock,) = run_at_once(2, lock_in_turn)
    assert isinstance(deadlock, OperationalError) and deadlock.__cause__.pgcode == "40P01"  # type: ignore[union-attr]
    return deadlock
