from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class RiskTier(models.IntegerChoices):
    T1 = 1, "T1 critical"
    T2 = 2, "T2 high"
    T3 = 3, "T3 moderate"
    T4 = 4, "T4 low"


class ModelStatus(models.TextChoices):
    ACTIVE = "active"
    DECOMMISSIONED = "decommissioned"


class VersionState(models.TextChoices):
    """The version lifecycle of PRODUCT.md. Transitions are governance's workflow table."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    DEPLOYED = "deployed"
    SUSPENDED = "suspended"
    DEPRECATED = "deprecated"
    DECOMMISSIONED = "decommissioned"


class DatasetRole(models.TextChoices):
    TRAINING = "training"
    VALIDATION = "validation"
    TEST = "test"
    REFERENCE = "reference"


class ParentRelation(models.TextChoices):
    RETRAINED_FROM = "retrained_from"
    FINE_TUNED_FROM = "fine_tuned_from"
    DISTILLED_FROM = "distilled_from"


class RegisteredModel(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    business_purpose = models.TextField(blank=True)
    intended_use = models.TextField(blank=True)
    limitations = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_models")
    team = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="models")
    tags = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=ModelStatus.choices, default=ModelStatus.ACTIVE)
    restricted = models.BooleanField(default=False)
    risk_tier = models.PositiveSmallIntegerField(choices=RiskTier.choices, null=True, blank=True)
    # The number of its newest version (0 before the first): versions are never deleted, so the
    # next one is this plus one, read under the model's lock (``services.version_create``).
    last_number = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        # Granted per model with django-guardian (governance assigns validators).
        permissions = [("validate_registeredmodel", "Can validate this model")]

    def __str__(self) -> str:
        return self.name


class RegisteredModelUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE)


class RegisteredModelGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE)


class ModelVersion(models.Model):
    """One immutable build of a model. Only ``description`` and ``tags`` change after creation."""

    # Found by model through the (model, number) unique index; no index of its own to keep up.
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions", db_index=False)
    number = models.PositiveIntegerField()
    artifact_uri = models.CharField(max_length=1000)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    framework = models.CharField(max_length=100, blank=True)
    source_run_id = models.CharField(max_length=200, blank=True)
    source_code_commit = models.CharField(max_length=200, blank=True)
    source_pipeline_url = models.CharField(max_length=1000, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    signature = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=20, choices=VersionState.choices, default=VersionState.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    parents = models.ManyToManyField(
        "self",
        through="VersionParent",
        through_fields=("child", "parent"),
        symmetrical=False,
        related_name="children",
    )

    class Meta:
        ordering = ["model_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="version_number_unique_per_model"),
            models.UniqueConstraint(
                fields=["model", "artifact_sha256"],
                condition=~models.Q(artifact_sha256=""),
                name="version_digest_unique_per_model",
            ),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="version_number_positive"),
        ]
        # A digest is looked up whole, across models; versions registered without one stay out.
        indexes = [
            models.Index(fields=["artifact_sha256"], condition=~models.Q(artifact_sha256=""), name="version_digest"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"


class Dataset(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    team = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="datasets")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    uri = models.CharField(max_length=1000)
    digest = models.CharField(max_length=64)
    row_count = models.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(2**62)]
    )
    schema_summary = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["dataset_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number_unique"),
            models.UniqueConstraint(fields=["dataset", "digest"], name="dataset_version_digest_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"


class DatasetUsage(models.Model):
    """Lineage: a model version was trained / validated / tested on a dataset version."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="dataset_usages")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="usages")
    role = models.CharField(max_length=20, choices=DatasetRole.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "dataset_version", "role"], name="dataset_usage_unique")
        ]

    def __str__(self) -> str:
        return f"{self.version_id} ← dataset version {self.dataset_version_id} ({self.role})"


class VersionParent(models.Model):
    """Lineage: a model version derives from another (retrained, fine-tuned, distilled)."""

    child = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="parent_edges")
    parent = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="child_edges")
    relation = models.CharField(max_length=20, choices=ParentRelation.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["child", "parent"], name="version_parent_unique"),
            models.CheckConstraint(condition=~models.Q(child=models.F("parent")), name="version_parent_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.child_id} ← {self.parent_id} ({self.relation})"


class Alias(models.Model):
    """A named pointer from a model to one of its versions (``champion``, ``production``)."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="aliases")
    name = models.CharField(max_length=100)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id", "name"]
        verbose_name_plural = "aliases"
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="alias_unique_per_model")]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"


class ApiToken(models.Model):
    """A named API credential. Only a SHA-256 of the secret is stored; the secret is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_via = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="made",
        help_text="the token this one was created with; revoking that one revokes this one",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=models.Q(revoked_at=None),
                name="token_name_unique_while_active",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
