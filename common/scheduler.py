"""Celery beat's schedule, run in-process: the embedded mode (no Redis) still delivers
notifications and runs the periodic work. ``manage.py serve`` starts it beside the web server;
with Redis, ``celery -A config beat`` and a worker do this instead."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.db import close_old_connections

log = logging.getLogger(__name__)


class InProcessBeat(threading.Thread):
    """Runs each entry of a beat schedule (``{"name": {"task": …, "schedule": seconds}}``)
    every ``schedule`` seconds, the first time at once, one after the other in this thread."""

    def __init__(self, schedule: Mapping[str, Mapping[str, Any]], run: Callable[[str], Any], tick: float = 1.0):
        super().__init__(name="warden-beat", daemon=True)
        self.schedule = schedule
        self.run_task = run
        self.tick = tick
        self.stopped = threading.Event()
        self.due = dict.fromkeys(schedule, 0.0)

    def run_due(self, now: float) -> list[str]:
        ran = []
        for name, entry in self.schedule.items():
            if now < self.due[name]:
                continue
            self.due[name] = now + float(entry["schedule"])
            try:
                self.run_task(entry["task"])
                ran.append(name)
            except Exception:  # a failing task is logged and tried again at its next turn
                log.exception("periodic task %s failed", name)
            finally:
                close_old_connections()
        return ran

    def run(self) -> None:
        while not self.stopped.is_set():
            self.run_due(time.monotonic())
            self.stopped.wait(self.tick)

    def stop(self) -> None:
        self.stopped.set()


def run_locally(task_name: str) -> Any:
    """Run a Celery task in this process, whatever the broker."""
    from config.celery import app

    app.loader.import_default_modules()  # the apps' tasks modules, as a worker imports them (once)
    return app.tasks[task_name].apply(throw=True).get()
