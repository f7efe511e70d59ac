"""Risk assessments, the published rules they and the approvals run under, approval requests
with their stages and decisions, and the conditions and exceptions that outlive them.

The version lifecycle states these drive are ``registry.models.VersionState``; which moves
are allowed is ``governance.workflow``. Nothing here is deleted: a request ends in a state, a
policy is superseded, a condition is met or waived.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from registry.models import ModelVersion, RegisteredModel, RiskTier


class DocumentStatus(models.TextChoices):
    DRAFT = "draft"
    PUBLISHED = "published"
    SUPERSEDED = "superseded"


class PublishedDocument(models.Model):
    """Rules risk officers edit as drafts and publish. A published version never changes: an
    edit is a new draft (the next version number), and publishing it supersedes the last."""

    version = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=DocumentStatus.choices, default=DocumentStatus.DRAFT)
    notes = models.TextField(blank=True, help_text="What changed and why.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Scorecard(PublishedDocument):
    """The tiering rules: which answers score what, how scores map to a tier, and the floors.
    ``governance.tiering`` reads them; nothing about the scoring is a code constant."""

    rules = models.JSONField()

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["version"], name="scorecard_version_unique"),
            models.UniqueConstraint(fields=["status"], condition=Q(status="published"), name="scorecard_one_published"),
        ]

    def __str__(self) -> str:
        return f"Scorecard v{self.version} ({self.status})"


class ApprovalPolicy(PublishedDocument):
    """What approval takes at one tier. ``stages`` is an ordered list of
    ``{"name", "step", "role", "quorum", "sla_business_days", "independent"}``: stages that
    share a step run in parallel, and a step starts when the one before it is complete."""

    tier = models.PositiveSmallIntegerField(choices=RiskTier.choices)
    stages = models.JSONField()
    min_distinct_people = models.PositiveSmallIntegerField(help_text="Including the submitter.")
    revalidation_months = models.PositiveSmallIntegerField()
    max_exception_days = models.PositiveSmallIntegerField()
    monitoring = models.JSONField(default=dict, blank=True)
    approval_required_in = models.JSONField(
        default=list, blank=True, help_text="Names of the environments a version needs this approval to enter."
    )

    class Meta:
        ordering = ["tier", "-version"]
        verbose_name_plural = "approval policies"
        constraints = [
            models.UniqueConstraint(fields=["tier", "version"], name="policy_version_unique_per_tier"),
            models.UniqueConstraint(fields=["tier"], condition=Q(status="published"), name="policy_one_published"),
        ]

    def __str__(self) -> str:
        return f"T{self.tier} policy v{self.version} ({self.status})"


class RiskAssessment(models.Model):
    """One answered questionnaire and the inherent tier it gives, with how it got there. The
    latest assessment of a model is its current one; earlier ones stay as history."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="risk_assessments")
    scorecard = models.ForeignKey(Scorecard, on_delete=models.PROTECT, related_name="+")
    answers = models.JSONField()
    flags = models.JSONField(default=list, blank=True)
    materiality = models.PositiveSmallIntegerField()
    complexity = models.PositiveSmallIntegerField()
    inherent_tier = models.PositiveSmallIntegerField(choices=RiskTier.choices)
    prohibited = models.BooleanField(default=False)
    rationale = models.JSONField(help_text="Each answer's score, the bands, the matrix tier and the floors applied.")
    assessed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model.name}: T{self.inherent_tier} ({self.created_at:%Y-%m-%d})"


class RequestKind(models.TextChoices):
    """A release approves a version; a revalidation renews that approval before it expires; a
    reinstatement lifts a suspension; a decommission retires a version (or, with no version,
    the whole model) for good. All four run the stages of the tier's policy. A tier change is
    decided under the scorecard's override stages."""

    RELEASE = "release"
    REVALIDATION = "revalidation"
    REINSTATEMENT = "reinstatement"
    DECOMMISSION = "decommission"
    TIER_CHANGE = "tier_change"


# The kinds whose approval lets a version into gated environments, until its valid_until.
APPROVAL_KINDS = (RequestKind.RELEASE, RequestKind.REVALIDATION)


class RequestState(models.TextChoices):
    """Transitions are ``governance.workflow.REQUEST_TRANSITIONS``."""

    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"  # an approval past its valid_until


class ApprovalRequest(models.Model):
    """A question put to the people the policy names: may this version be released, may this
    model's tier change. It runs under the policy (or scorecard) version it pinned when it was
    submitted, to the end, whatever is published meanwhile."""

    kind = models.CharField(max_length=20, choices=RequestKind.choices)
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="approval_requests")
    version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="approval_requests"
    )
    tier = models.PositiveSmallIntegerField(choices=RiskTier.choices)
    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    scorecard = models.ForeignKey(Scorecard, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    requested_tier = models.PositiveSmallIntegerField(choices=RiskTier.choices, null=True, blank=True)
    rationale = models.TextField(blank=True)
    state = models.CharField(max_length=20, choices=RequestState.choices, default=RequestState.OPEN)
    current_step = models.PositiveSmallIntegerField(null=True, blank=True)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    opened_as_check = models.BooleanField(
        default=False,
        help_text="A check on the model's people, opened by Warden or a risk officer (policies.opens_check).",
    )
    submitted_at = models.DateTimeField(auto_now_add=True, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.TextField(blank=True)
    valid_until = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="An approved release or revalidation: when it expires."
    )
    replacement = models.ForeignKey(
        ModelVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="A decommission: the version that takes over, if any.",
    )
    impact = models.JSONField(
        default=dict, blank=True, help_text="A decommission: the deployments, aliases and downstream models it touches."
    )

    class Meta:
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "kind"], condition=Q(state="open"), name="one_open_request_per_version_and_kind"
            ),
            models.UniqueConstraint(
                fields=["model"], condition=Q(state="open", kind="tier_change"), name="one_open_tier_change_per_model"
            ),
            models.UniqueConstraint(
                fields=["model"],
                condition=Q(state="open", kind="decommission", version=None),
                name="one_open_model_decommission",
            ),
            models.CheckConstraint(
                condition=Q(
                    kind__in=["release", "revalidation", "reinstatement"], version__isnull=False, policy__isnull=False
                )
                | Q(kind="decommission", policy__isnull=False)
                | Q(kind="tier_change", requested_tier__isnull=False, scorecard__isnull=False),
                name="request_kind_has_its_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.model.name}: {self.describe()} ({self.state})"

    def describe(self) -> str:
        """What is asked, in a few words: "release of v3", "decommission of the whole model"."""
        if self.kind == RequestKind.TIER_CHANGE:
            return f"tier change T{self.tier} → T{self.requested_tier}"
        subject = f"v{self.version.number}" if self.version_id and self.version else "the whole model"
        return f"{self.get_kind_display().lower()} of {subject}"


class AwaitingDecision(ApprovalRequest):
    """The admin's queue: the same requests, listed as those awaiting my decision."""

    class Meta:
        proxy = True
        verbose_name = "request awaiting my decision"
        verbose_name_plural = "awaiting my decision"


class StageState(models.TextChoices):
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETE = "complete"
    CLOSED = "closed"  # the request ended before this stage completed


class RequestStage(models.Model):
    """One stage of a request, copied from its pinned policy when it was submitted."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="stages")
    step = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=150)
    quorum = models.PositiveSmallIntegerField()
    sla_business_days = models.PositiveSmallIntegerField()
    independent = models.BooleanField(default=False, help_text="Signers must not be on the owning team.")
    state = models.CharField(max_length=10, choices=StageState.choices, default=StageState.WAITING)
    activated_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["request_id", "step", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "name"], name="stage_name_unique_per_request")]

    def __str__(self) -> str:
        return f"{self.name} ({self.role}, {self.quorum} of)"


class Outcome(models.TextChoices):
    APPROVE = "approve"
    APPROVE_WITH_CONDITIONS = "approve_with_conditions"
    REQUEST_CHANGES = "request_changes"
    REJECT = "reject"


class Decision(models.Model):
    """One person's signature on one stage. A person signs a request at most once, whatever
    roles they hold: the unique constraint says so where no code path can forget it."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="decisions")
    stage = models.ForeignKey(RequestStage, on_delete=models.PROTECT, related_name="decisions")
    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=30, choices=Outcome.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "person"], name="one_decision_per_person")]

    def __str__(self) -> str:
        return f"{self.person} {self.outcome} ({self.stage.name})"


class ConditionState(models.TextChoices):
    OPEN = "open"
    MET = "met"
    WAIVED = "waived"


class Condition(models.Model):
    """Something an approval with conditions requires, owned by someone, due by a date."""

    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="conditions")
    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="conditions")
    description = models.TextField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    due_date = models.DateField()
    state = models.CharField(max_length=10, choices=ConditionState.choices, default=ConditionState.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    overdue_at = models.DateTimeField(null=True, blank=True, help_text="when the clock found it open past its due date")

    class Meta:
        ordering = ["due_date", "id"]

    def __str__(self) -> str:
        return f"{self.description[:60]} (due {self.due_date})"


class PolicyException(models.Model):
    """A sanctioned departure from the policy (use before validation, say): what it covers, the
    control that compensates, who approved it, and an expiry no longer than the tier allows."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="policy_exceptions")
    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.PROTECT, related_name="+")
    scope = models.TextField()
    compensating_control = models.TextField()
    reason = models.TextField()
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    expires_at = models.DateTimeField(db_index=True)
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When its expiry was recorded and told.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "exception"

    def __str__(self) -> str:
        return f"Exception for {self.version} until {self.expires_at:%Y-%m-%d}"


class Severity(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class FindingState(models.TextChoices):
    """open → acknowledged → remediated → closed; any but closed may be closed."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    REMEDIATED = "remediated"
    CLOSED = "closed"


class FindingSource(models.TextChoices):
    VALIDATION = "validation"
    MONITORING = "monitoring"


class Finding(models.Model):
    """An issue found in a model by validation or by monitoring, with an owner to fix it by a
    date. Deciders read a model's findings beside every request for it. A monitoring finding
    names its metric, and while it is not closed a new breach of that metric updates it rather
    than opening another; ``entries`` is its history."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="findings")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="findings")
    source = models.CharField(max_length=12, choices=FindingSource.choices, default=FindingSource.VALIDATION)
    metric = models.CharField(max_length=250, blank=True, help_text="A monitoring finding: the breached measure.")
    window_end = models.DateTimeField(
        null=True, blank=True, help_text="A monitoring finding: the end of the last window it judged."
    )
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    due_date = models.DateField()
    state = models.CharField(max_length=12, choices=FindingState.choices, default=FindingState.OPEN)
    raised_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "metric"],
                condition=Q(source="monitoring") & ~Q(state="closed"),
                name="one_live_monitoring_finding_per_metric",
            )
        ]

    def __str__(self) -> str:
        return f"{self.model.name}: {self.title} ({self.severity}, {self.state})"


class FindingEntry(models.Model):
    """One step of a finding's history: raised, escalated, acknowledged, remediated, closed."""

    finding = models.ForeignKey(Finding, on_delete=models.PROTECT, related_name="entries")
    action = models.CharField(max_length=20)
    state = models.CharField(max_length=12, choices=FindingState.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    note = models.TextField(blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["finding", "at", "id"]
        verbose_name_plural = "finding entries"

    def __str__(self) -> str:
        return f"{self.action} ({self.state}, {self.severity})"


class Environment(models.Model):
    """Where versions run (staging, production, …). Which ones need an approval is the policy's
    ``approval_required_in``, per tier."""

    name = models.SlugField(max_length=50, unique=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    """A version running in an environment, from when to when. Retired, never deleted."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="deployments")
    endpoint = models.CharField(max_length=1000, blank=True, help_text="URL or reference of the running service.")
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    deployed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    retired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-deployed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "environment"],
                condition=Q(retired_at=None),
                name="one_live_deployment_per_version_and_environment",
            )
        ]

    def __str__(self) -> str:
        return f"{self.version} in {self.environment.name}"
