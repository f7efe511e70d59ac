"""What production tells about a model: metric observations over time windows, and binned
distributions compared with a reference captured before approval. Each row carries the
client's idempotency key, so a retried batch is counted once. Nothing here is edited."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from governance.models import Deployment
from registry.models import ModelVersion, RegisteredModel


class Observation(models.Model):
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="observations")
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    metric = models.CharField(max_length=100)
    segment = models.CharField(max_length=100, blank=True)
    value = models.FloatField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    key = models.CharField(max_length=200, help_text="The client's idempotency key, unique per version.")
    batch = models.UUIDField(help_text="The call that stored it.")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "metric", "segment", "window_end"]
        indexes = [models.Index(fields=["version", "metric", "segment", "window_end"], name="observation_series")]
        constraints = [models.UniqueConstraint(fields=["version", "key"], name="observation_key_per_version")]

    def __str__(self) -> str:
        return f"{self.metric}={self.value} ({self.window_end:%Y-%m-%d})"


class Distribution(models.Model):
    """Counts per bin of a feature or the score. The reference (``window_end`` empty) is
    captured while the version is prepared for approval and frozen once it is approved; an
    observed distribution stores its PSI against the reference, computed on arrival."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="distributions")
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    feature = models.CharField(max_length=100)
    bins = models.JSONField(help_text="Bin labels or edges, as the client names them; the same for every window.")
    counts = models.JSONField()
    reference = models.BooleanField(default=False)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    psi = models.FloatField(null=True, blank=True)
    key = models.CharField(max_length=200, help_text="The client's idempotency key, unique per version.")
    batch = models.UUIDField(help_text="The call that stored it.")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "feature", "window_end"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "feature"], condition=Q(reference=True), name="one_reference_per_feature"
            ),
            models.UniqueConstraint(fields=["version", "key"], name="distribution_key_per_version"),
            models.CheckConstraint(
                condition=Q(reference=True, window_end=None) | Q(reference=False, window_end__isnull=False),
                name="observed_distribution_has_a_window",
            ),
        ]
        indexes = [models.Index(fields=["version", "feature", "window_end"], name="distribution_series")]

    def __str__(self) -> str:
        return f"{self.feature} ({'reference' if self.reference else self.window_end})"


class Measure(models.TextChoices):
    RELATIVE_CHANGE = "relative_change"
    PSI = "psi"


class ThresholdOverride(models.Model):
    """A risk officer's thresholds for one model, in place of its tier policy's. The latest per
    measure applies; earlier ones stay as history."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="threshold_overrides")
    measure = models.CharField(max_length=20, choices=Measure.choices)
    warn = models.FloatField()
    critical = models.FloatField()
    reason = models.TextField()
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "measure", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model.name} {self.measure}: warn {self.warn}, critical {self.critical}"


class MonitoredVersion(ModelVersion):
    """The admin's list of versions with monitoring data, each opening on its charts."""

    class Meta:
        proxy = True
        verbose_name = "monitored version"
