"""Delivery through a real Celery worker and beat on a real Redis, started here (on a port of
their own, so stopping it disturbs nothing else): while Redis is down API writes still succeed;
when it is back the sweep delivers what was written, each delivery once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from common.roles import Role
from config.celery import app
from notifications import services as notify
from notifications.models import Delivery, DeliveryState, Webhook
from tests.factories import UserFactory, assessed_model, make_version
from tests.receiver import receiving

pytestmark = pytest.mark.django_db(transaction=True)
CELERY = str(Path(sys.executable).with_name("celery"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, port: int, workdir: Path):
        self.port, self.workdir = port, workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout == b"PONG\n":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


@contextmanager
def celery_on(redis: Redis, workdir: Path) -> Iterator[Callable[[], None]]:
    """A worker and beat (sweeping every second) in processes of their own, on this test's
    database and Redis; and this process publishing to the same Redis. Gives ``revive``, which
    starts the worker again if it has stopped, as its supervisor does in production: Celery's
    consumer may stop itself when the broker goes away while it acknowledges a task
    ("Unrecoverable error: AttributeError … 'hostname'"), and the outbox is there to survive that."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis.url,
        "NOTIFY_SWEEP_SECONDS": "1",
        "NOTIFY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    common = {"env": env, "cwd": Path(__file__).resolve().parents[2], "stdout": subprocess.DEVNULL}
    command = [CELERY, "-A", "config", "worker", "-P", "solo", "--without-gossip", "--without-mingle", "-l", "WARNING"]
    worker = subprocess.Popen(command, **common)
    beat = subprocess.Popen(
        [CELERY, "-A", "config", "beat", "-s", str(workdir / "beat-schedule"), "--max-interval", "1", "-l", "WARNING"],
        **common,
    )
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=redis.url, task_always_eager=False)
    _reset_pools()

    def revive() -> None:
        nonlocal worker
        if worker.poll() is not None:
            worker = subprocess.Popen(command, **common)

    try:
        yield revive
    finally:
        app.conf.update(saved)
        _reset_pools()
        for process in (beat, worker):
            process.terminate()
        for process in (beat, worker):
            process.wait(timeout=30)


def _reset_pools() -> None:
    app._pool = None
    app.amqp._producer_pool = None


def wait_until(condition: Any, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_redis_down_loses_nothing_and_sends_nothing_twice(tmp_path: Path, api: Any, caplog: Any) -> None:
    owner = UserFactory(username="owner", groups=[Role.MODEL_OWNER, "credit-risk"])
    risk = UserFactory(username="risk", groups=[Role.RISK_OFFICER], is_staff=True)
    admin = UserFactory(username="admin", is_superuser=True, is_staff=True)
    model = assessed_model(owner, 4)
    first, second = make_version(owner, model), make_version(owner, model)
    redis = Redis(free_port(), tmp_path)
    redis.start()
    with receiving() as receiver, celery_on(redis, tmp_path) as revive:
        webhook = notify.webhook_save(actor=admin, webhook=Webhook(name="ci", url=receiver.url))
        receiver.secret = webhook.secret

        # Redis up: the write is delivered by the worker, kicked after the commit.
        assert api(owner).post(f"/api/v1/models/{model.name}/versions/{first.number}/submit/", {}).status_code == 201
        assert receiver.wait_for(1), "the worker did not deliver while Redis was up"

        # Redis down: approving still succeeds; its notifications wait in the outbox.
        redis.stop()
        request_id = receiver.posts[0]["body"]["request"]
        response = api(risk).post(f"/api/v1/approval-requests/{request_id}/decisions/", {"outcome": "approve"})
        assert response.status_code == 201, response.data
        # The kick after the commit gave up on the broker (bounded tries) and left them to the sweep.
        assert "notification(s) deferred to the sweep" in caplog.text
        response = api(owner).post(f"/api/v1/models/{model.name}/versions/{second.number}/submit/", {})
        assert response.status_code == 201, response.data
        waiting = Delivery.objects.filter(channel="webhook", state=DeliveryState.PENDING)
        assert waiting.count() == 3  # decision recorded, approved, submitted
        time.sleep(2)
        assert len(receiver.posts) == 1

        # Redis back: beat's sweep reaches the worker, which delivers the rest.
        redis.start()

        def caught_up() -> bool:
            revive()
            return not waiting.exists()

        assert wait_until(caught_up), "the outbox did not catch up after Redis came back"
        time.sleep(3)  # more sweeps run; none may send again

    redis.stop()
    webhooks = Delivery.objects.filter(channel="webhook")
    assert webhooks.count() == 4
    assert set(webhooks.values_list("state", flat=True)) == {DeliveryState.DELIVERED}
    assert receiver.per_delivery() == {str(pk): 1 for pk in webhooks.values_list("pk", flat=True)}
    assert sorted(receiver.events()) == [
        "decision.recorded",
        "request.approved",
        "version.submitted",
        "version.submitted",
    ]
    assert all(post["signed"] for post in receiver.posts)
