from __future__ import annotations

from celery import shared_task

from governance import services


@shared_task(ignore_result=True)
def lifecycle_sweep() -> dict[str, int]:
    """Beat runs this every LIFECYCLE_SWEEP_SECONDS: expiries, revalidation requests, SLA
    reminders and escalations (``governance.services.lifecycle_sweep``)."""
    return services.lifecycle_sweep()
