from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from audit.checkpoints import checkpoint_make

log = logging.getLogger(__name__)


@shared_task
def checkpoint() -> int | None:
    """Beat runs this every minute; it makes a checkpoint only when one is due."""
    if not settings.AUDIT_SIGNING_KEY:
        log.warning("no audit checkpoint: AUDIT_SIGNING_KEY is not set")
        return None
    made = checkpoint_make()
    return made.size if made else None
