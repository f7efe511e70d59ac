from __future__ import annotations

from celery import shared_task

from monitoring import services


@shared_task(ignore_result=True)
def evaluate() -> dict[str, int]:
    """Beat runs this every MONITORING_EVALUATE_SECONDS (``monitoring.services.evaluate_all``)."""
    return services.evaluate_all()
