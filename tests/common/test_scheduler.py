"""The in-process beat (embedded mode, no Redis): each entry runs at once, then every
``schedule`` seconds; a task that fails is logged and the others still run."""

from __future__ import annotations

import logging
import threading

import pytest

from common import scheduler
from common.scheduler import InProcessBeat

SCHEDULE = {
    "broken": {"task": "tasks.broken", "schedule": 10.0},
    "often": {"task": "tasks.often", "schedule": 10.0},
    "rarely": {"task": "tasks.rarely", "schedule": 60.0},
}


@pytest.fixture
def closed_connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each task's database connections are let go after it (as a worker does between
    tasks); here only counted, so these tests need no database."""
    closed: list[str] = []
    monkeypatch.setattr(scheduler, "close_old_connections", lambda: closed.append("closed"))
    return closed


class Tasks:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, task: str) -> None:
        self.ran.append(task)
        if task == "tasks.broken":
            raise RuntimeError("the broker is down")


def test_every_entry_runs_at_first_then_each_when_its_interval_has_passed(closed_connections: list[str]):
    tasks = Tasks()
    beat = InProcessBeat({name: SCHEDULE[name] for name in ("often", "rarely")}, tasks)

    assert beat.run_due(1000.0) == ["often", "rarely"]
    assert beat.run_due(1000.0) == []
    assert beat.run_due(1009.9) == []
    assert beat.run_due(1010.0) == ["often"]
    assert beat.run_due(1015.0) == []
    assert beat.run_due(1060.0) == ["often", "rarely"]
    assert tasks.ran == ["tasks.often", "tasks.rarely", "tasks.often", "tasks.often", "tasks.rarely"]
    assert len(closed_connections) == len(tasks.ran)


def test_a_failing_task_is_logged_and_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture, closed_connections: list[str]
):
    tasks = Tasks()
    beat = InProcessBeat(SCHEDULE, tasks)

    with caplog.at_level(logging.ERROR, logger="common.scheduler"):
        assert beat.run_due(0.0) == ["often", "rarely"]

    assert tasks.ran == ["tasks.broken", "tasks.often", "tasks.rarely"]
    assert len(closed_connections) == 3  # after the failing one too
    [record] = caplog.records
    assert record.getMessage() == "periodic task broken failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "the broker is down"

    # It is tried again at its next turn, not at every tick.
    assert beat.run_due(5.0) == []
    assert beat.run_due(10.0) == ["often"]
    assert tasks.ran[3:] == ["tasks.broken", "tasks.often"]


def test_the_thread_runs_the_schedule_until_stopped():
    started = threading.Event()

    def run(task: str) -> None:
        started.set()

    beat = InProcessBeat({"once": {"task": "tasks.once", "schedule": 3600.0}}, run, tick=0.01)
    beat.start()
    try:
        assert started.wait(timeout=5)
    finally:
        beat.stop()
        beat.join(timeout=5)
    assert not beat.is_alive()


def test_celery_beat_sends_each_periodic_task_to_expire_after_its_interval():
    """Workers that were down for hours do not come back to a backlog of the same sweep, run
    once for each interval missed: a run not started within twice its interval (five minutes at
    least) is dropped, and the next comes on schedule."""
    from celery.beat import ScheduleEntry
    from django.conf import settings

    from config.celery import app

    for name, config in settings.CELERY_BEAT_SCHEDULE.items():
        entry = ScheduleEntry(name=name, app=app, **config)
        interval = entry.schedule.run_every.total_seconds()
        assert entry.options["expires"] == max(2 * interval, 300) > 0, name
