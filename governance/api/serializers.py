"""Input serializers check shapes and types; the services check the rules. Output serializers
read only what the selectors fetched."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api import ModelAnswer, StrictSerializer
from governance import selectors, services, tiering
from governance.models import (
    ApprovalPolicy,
    ApprovalRequest,
    Condition,
    ConditionState,
    Decision,
    Deployment,
    Finding,
    FindingEntry,
    Outcome,
    PolicyException,
    RequestStage,
    RiskAssessment,
    Scorecard,
    Severity,
)
from registry.api.serializers import TeamField, UsernameField


class PolicyRefOut(ModelAnswer):
    class Meta:
        model = ApprovalPolicy
        fields = ["id", "tier", "version"]


class PolicyOut(ModelAnswer):
    published_by = serializers.CharField(source="published_by.username", allow_null=True, default=None)

    class Meta:
        model = ApprovalPolicy
        fields = [
            "id",
            "tier",
            "version",
            "status",
            "stages",
            "min_distinct_people",
            "revalidation_months",
            "max_exception_days",
            "monitoring",
            "notes",
            "published_by",
            "published_at",
        ]


class ScorecardOut(ModelAnswer):
    class Meta:
        model = Scorecard
        fields = ["id", "version", "status", "rules", "notes", "published_at"]


class AssessmentIn(StrictSerializer):
    answers = serializers.DictField(child=serializers.CharField(), help_text="question → chosen answer")
    flags = serializers.ListField(child=serializers.CharField(), required=False, default=list)


class AssessmentOut(ModelAnswer):
    model = serializers.CharField(source="model.name")
    scorecard_version = serializers.IntegerField(source="scorecard.version")
    assessed_by = serializers.CharField(source="assessed_by.username")
    explanation = serializers.SerializerMethodField()

    class Meta:
        model = RiskAssessment
        fields = [
            "id",
            "model",
            "scorecard_version",
            "answers",
            "flags",
            "materiality",
            "complexity",
            "inherent_tier",
            "prohibited",
            "rationale",
            "explanation",
            "assessed_by",
            "created_at",
        ]

    def get_explanation(self, obj: RiskAssessment) -> str:
        return tiering.explain(obj.rationale)


class TierOverrideIn(StrictSerializer):
    tier = serializers.IntegerField(min_value=1, max_value=4)
    rationale = serializers.CharField(max_length=10_000)


class SubmitIn(StrictSerializer):
    rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)


class WithdrawIn(StrictSerializer):
    reason = serializers.CharField(max_length=10_000)


class ConditionIn(StrictSerializer):
    description = serializers.CharField(max_length=10_000)
    owner = UsernameField()
    due_date = serializers.DateField()


class DecisionIn(StrictSerializer):
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
    stage = serializers.CharField(
        required=False,
        max_length=100,
        help_text="the stage you sign: needed if you hold the roles of more than one stage of the request",
    )
    conditions = serializers.ListField(
        child=ConditionIn(), required=False, default=list, max_length=services.MAX_CONDITIONS
    )


class StageOut(ModelAnswer):
    class Meta:
        model = RequestStage
        fields = [
            "step",
            "name",
            "role",
            "quorum",
            "sla_business_days",
            "independent",
            "state",
            "activated_at",
            "due_at",
            "completed_at",
            "reminded_at",
            "escalated_at",
        ]


class ConditionOut(ModelAnswer):
    owner = serializers.CharField(source="owner.username")

    class Meta:
        model = Condition
        fields = ["id", "description", "owner", "due_date", "state", "decision"]


class DecisionOut(ModelAnswer):
    person = serializers.CharField(source="person.username")
    stage = serializers.CharField(source="stage.name")
    role = serializers.CharField(source="stage.role")

    class Meta:
        model = Decision
        fields = ["id", "stage", "role", "person", "outcome", "comment", "created_at"]


class VersionRef(serializers.Serializer):
    model = serializers.SlugField(max_length=100)
    version = serializers.IntegerField(min_value=1, max_value=999_999_999)


class VersionSeenOut(serializers.Serializer):
    model = serializers.CharField(allow_null=True, help_text="null: a model you may not see")
    version = serializers.IntegerField()


class LifecycleRequestIn(StrictSerializer):
    rationale = serializers.CharField(max_length=10_000, help_text="why: it is recorded and shown to the deciders")


class DecommissionIn(LifecycleRequestIn):
    replacement = VersionRef(required=False, allow_null=True, default=None, help_text="the version that takes over")


class ReasonIn(StrictSerializer):
    """The reason for a change made at once (a suspension, a deprecation): recorded in the trail."""

    reason = serializers.CharField(max_length=10_000)


class VersionStateOut(serializers.Serializer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="number")
    state = serializers.CharField()


class RequestOut(ModelAnswer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="version.number", allow_null=True, default=None)
    policy = PolicyRefOut(allow_null=True)
    scorecard_version = serializers.IntegerField(source="scorecard.version", allow_null=True, default=None)
    submitted_by = serializers.CharField(source="submitted_by.username")
    stages = StageOut(many=True)
    decisions = DecisionOut(many=True)
    conditions = ConditionOut(many=True)
    replacement = serializers.SerializerMethodField(
        help_text="a decommission: the version that takes over (of a model you may not see, with model null)"
    )
    impact = serializers.SerializerMethodField(
        help_text="a decommission: deployments, aliases and downstream models (one you may not see by its id, "
        "with model null)"
    )

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "kind",
            "model",
            "version",
            "tier",
            "requested_tier",
            "policy",
            "scorecard_version",
            "state",
            "current_step",
            "rationale",
            "submitted_by",
            "submitted_at",
            "closed_at",
            "closed_reason",
            "valid_until",
            "replacement",
            "impact",
            "stages",
            "decisions",
            "conditions",
        ]

    def _viewer(self) -> Any:
        viewer = self.context.get("request")  # without one, shown as anyone may see it
        return viewer.user if viewer else None

    @extend_schema_field(VersionSeenOut(allow_null=True))
    def get_replacement(self, request: ApprovalRequest) -> dict[str, Any] | None:
        return selectors.version_seen_by(self._viewer(), request.replacement)

    def get_impact(self, request: ApprovalRequest) -> dict[str, Any]:
        return selectors.impact_seen_by(self._viewer(), request.impact)


class DecisionRecordedOut(serializers.Serializer):
    decision = DecisionOut()
    request = RequestOut()


class ValidatorAssignmentIn(StrictSerializer):
    validator = UsernameField()
    model = serializers.SlugField(required=False, help_text="a model's name, or")
    team = TeamField(required=False, help_text="a team: every model of the team")


class ConditionCloseIn(StrictSerializer):
    state = serializers.ChoiceField(choices=[ConditionState.MET, ConditionState.WAIVED])
    note = serializers.CharField(max_length=10_000)


class ExceptionIn(StrictSerializer):
    scope = serializers.CharField(max_length=10_000)
    compensating_control = serializers.CharField(max_length=10_000)
    reason = serializers.CharField(max_length=10_000)
    expires_at = serializers.DateTimeField()


class ExceptionOut(ModelAnswer):
    model = serializers.CharField(source="version.model.name")
    version = serializers.IntegerField(source="version.number")
    approver = serializers.CharField(source="approver.username")
    policy = PolicyRefOut()

    class Meta:
        model = PolicyException
        fields = [
            "id",
            "model",
            "version",
            "scope",
            "compensating_control",
            "reason",
            "approver",
            "policy",
            "expires_at",
            "created_at",
        ]


class FindingIn(StrictSerializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
    severity = serializers.ChoiceField(choices=Severity.choices)
    owner = UsernameField()
    due_date = serializers.DateField()
    version = serializers.IntegerField(required=False, min_value=1, max_value=10**9, help_text="version number")


class FindingEntryOut(ModelAnswer):
    by = serializers.CharField(source="by.username")

    class Meta:
        model = FindingEntry
        fields = ["action", "state", "severity", "note", "by", "at"]


class FindingMoveIn(StrictSerializer):
    comment = serializers.CharField(max_length=10_000)


class FindingOut(ModelAnswer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="version.number", allow_null=True, default=None)
    owner = serializers.CharField(source="owner.username")
    raised_by = serializers.CharField(source="raised_by.username")
    entries = FindingEntryOut(many=True, help_text="its history, oldest first")

    class Meta:
        model = Finding
        fields = [
            "id",
            "model",
            "version",
            "source",
            "metric",
            "title",
            "description",
            "severity",
            "owner",
            "due_date",
            "state",
            "raised_by",
            "created_at",
            "entries",
        ]


class GateOut(serializers.Serializer):
    allowed = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())
    model = serializers.CharField()
    version = serializers.IntegerField()
    environment = serializers.CharField()


class DeploymentIn(StrictSerializer):
    environment = serializers.SlugField(max_length=50)
    endpoint = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)


class RetireIn(StrictSerializer):
    reason = serializers.CharField(max_length=10_000)


class DeploymentOut(ModelAnswer):
    model = serializers.CharField(source="version.model.name")
    version = serializers.IntegerField(source="version.number")
    environment = serializers.CharField(source="environment.name")
    deployed_by = serializers.CharField(source="deployed_by.username")
    retired_by = serializers.CharField(source="retired_by.username", allow_null=True, default=None)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "model",
            "version",
            "environment",
            "endpoint",
            "deployed_by",
            "deployed_at",
            "retired_by",
            "retired_at",
            "retired_reason",
        ]


class AliasAtOut(serializers.Serializer):
    model = serializers.CharField()
    alias = serializers.CharField()
    at = serializers.DateTimeField()
    version = serializers.IntegerField(allow_null=True, help_text="null: the alias pointed nowhere")
    changed_at = serializers.DateTimeField(allow_null=True)
    changed_by = serializers.CharField(allow_null=True)
    event_seq = serializers.IntegerField(allow_null=True, help_text="the audit event that set it so")


class InventoryRowOut(serializers.Serializer):
    model = serializers.CharField()
    tier = serializers.IntegerField(allow_null=True)
    versions = serializers.DictField(child=serializers.CharField(), help_text="version number → state")
