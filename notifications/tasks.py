from __future__ import annotations

from celery import shared_task

from notifications import delivery


@shared_task(ignore_result=True)
def deliver(ids: list[str]) -> None:
    """Kicked after the commit that wrote the deliveries."""
    for delivery_id in ids:
        delivery.deliver(delivery_id)


@shared_task(ignore_result=True)
def sweep() -> int:
    """Beat runs this often: whatever the kick missed (a broker that was down) or a retry that
    has come due is delivered here."""
    return delivery.deliver_due()
