"""The outbox: each notification is a ``Message`` written in the transaction of the change it
tells of, with one ``Delivery`` per email address or webhook, and one ``Attempt`` per try.
``notifications.delivery`` sends them; nothing here is deleted."""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.utils import timezone


class Event(models.TextChoices):
    VERSION_SUBMITTED = "version.submitted"
    REQUEST_SUBMITTED = "request.submitted"  # a revalidation, reinstatement, decommission or tier change
    STEP_OPENED = "request.step_opened"  # a later step of a request awaits its deciders
    DECISION_RECORDED = "decision.recorded"
    REQUEST_APPROVED = "request.approved"
    REQUEST_REJECTED = "request.rejected"
    CHANGES_REQUESTED = "request.changes_requested"
    REQUEST_WITHDRAWN = "request.withdrawn"
    VERSION_DEPLOYED = "version.deployed"
    ALIAS_MOVED = "alias.moved"
    VERSION_SUSPENDED = "version.suspended"
    SUSPENSION_LIFTED = "version.reinstated"
    DECOMMISSIONED = "decommissioned"
    FINDING_OPENED = "finding.opened"
    APPROVAL_EXPIRING = "approval.expiring"
    APPROVAL_EXPIRED = "approval.expired"
    EXCEPTION_EXPIRED = "exception.expired"
    CONDITION_OVERDUE = "condition.overdue"
    SLA_REMINDER = "sla.reminder"
    SLA_BREACHED = "sla.breached"


def _secret() -> str:
    return secrets.token_urlsafe(32)


class Webhook(models.Model):
    """An HTTP endpoint told of events, each POST signed with its secret (HMAC-SHA256)."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=1000)
    secret = models.CharField(max_length=200, default=_secret, help_text="Shared with the receiver; signs each POST.")
    events = models.JSONField(default=list, blank=True, help_text="Event names to send; empty for all.")
    active = models.BooleanField(default=True)
    include_restricted = models.BooleanField(
        default=False,
        help_text="Also send events about restricted models (their names, reasons and people). "
        "Leave off unless everyone who reads this receiver may see every model.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    event = models.CharField(max_length=40, choices=Event.choices, db_index=True)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    payload = models.JSONField()
    model_name = models.CharField(max_length=200, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.subject


class Channel(models.TextChoices):
    EMAIL = "email"
    WEBHOOK = "webhook"


class DeliveryState(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after NOTIFY_MAX_ATTEMPTS; replay sends it again


class Delivery(models.Model):
    """One message to one address or webhook. ``id`` is the delivery id receivers see (and
    deduplicate on); a replay is a new delivery that names the one it repeats."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    address = models.EmailField(blank=True)
    webhook = models.ForeignKey(Webhook, on_delete=models.PROTECT, null=True, blank=True, related_name="deliveries")
    state = models.CharField(max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    replay_of = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="replays")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="delivery_due")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(channel="email", webhook=None) & ~models.Q(address="")
                | models.Q(channel="webhook", webhook__isnull=False, address=""),
                name="delivery_has_its_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.message.event} to {self.address or self.webhook}"


class Attempt(models.Model):
    """One try at a delivery, whatever came of it."""

    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField()

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_number_unique")]

    def __str__(self) -> str:
        return f"attempt {self.number} ({'ok' if self.ok else self.error or self.status_code})"
