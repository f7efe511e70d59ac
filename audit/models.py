from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.functions import Now


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("Audit events are append-only: they cannot be updated.")

    def delete(self) -> NoReturn:
        raise TypeError("Audit events are append-only: they cannot be deleted.")


class AuditEvent(models.Model):
    """One recorded change: who, what, when, why, and where from. Written only by
    ``audit.services.audit_record``, in the transaction of the change it records."""

    occurred_at = models.DateTimeField(db_default=Now(), db_index=True, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
    )
    actor_name = models.CharField(max_length=150, editable=False)
    action = models.CharField(max_length=64, db_index=True, editable=False)
    object_type = models.CharField(max_length=64, editable=False)
    object_id = models.CharField(max_length=64, editable=False)
    model_name = models.CharField(max_length=100, blank=True, db_index=True, editable=False)
    before = models.JSONField(null=True, encoder=DjangoJSONEncoder, editable=False)
    after = models.JSONField(null=True, encoder=DjangoJSONEncoder, editable=False)
    reason = models.TextField(blank=True, editable=False)
    request_id = models.CharField(max_length=64, blank=True, editable=False)
    source_ip = models.GenericIPAddressField(null=True, editable=False)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.object_type}:{self.object_id} by {self.actor_name}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("Audit events are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("Audit events are append-only: they cannot be deleted.")
