import logging
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from common.scheduler import InProcessBeat, run_locally


class Command(BaseCommand):
    help = (
        "Serve Warden for development (runserver, without autoreload). Without REDIS_URL, the "
        "periodic work of CELERY_BEAT_SCHEDULE runs in this process too; with it, run a Celery "
        "worker and beat beside it."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, addrport: str, **options: Any) -> None:
        if not settings.REDIS_URL:
            logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # not a line per run
            beat = InProcessBeat(settings.CELERY_BEAT_SCHEDULE, run_locally)
            beat.start()
            names = ", ".join(settings.CELERY_BEAT_SCHEDULE)
            self.stdout.write(f"Embedded mode (no REDIS_URL): running {names} in-process.")
        call_command("runserver", addrport, use_reloader=False)
