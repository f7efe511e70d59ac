"""Input serializers check shapes and types; the services check the rules. Output serializers
read only what the selectors have already fetched, so lists cost a fixed number of queries."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api import ModelAnswer, StrictSerializer
from common.roles import ROLE_NAMES, team_names
from registry import selectors
from registry.models import (
    Alias,
    ApiToken,
    Dataset,
    DatasetRole,
    DatasetVersion,
    ModelVersion,
    ParentRelation,
    RegisteredModel,
)
from registry.services import VERSION_EDITABLE_FIELDS

User = get_user_model()


def _tags_field() -> serializers.DictField:
    return serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=5000, trim_whitespace=False),
        required=False,
    )


def _json_object_field() -> serializers.DictField:
    return serializers.DictField(required=False)


class UsernameField(serializers.SlugRelatedField):
    def __init__(self, **kwargs: Any):
        super().__init__(slug_field="username", queryset=User.objects.filter(is_active=True), **kwargs)


class TeamField(serializers.SlugRelatedField):
    """A team, by name. One of the caller's own teams is known from what their token read
    (``common.roles.team_names``), without a query; any other is looked up."""

    def __init__(self, **kwargs: Any):
        super().__init__(slug_field="name", queryset=Group.objects.exclude(name__in=ROLE_NAMES), **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        request = self.context.get("request")
        if request is not None:
            for pk, name in team_names(request.user).items():
                if name == data:
                    return Group(pk=pk, name=name)
        return super().to_internal_value(data)


# --- models ------------------------------------------------------------------------------


class ModelOut(ModelAnswer):
    owner = serializers.CharField(source="owner.username")
    team = serializers.CharField(source="team.name")
    risk_tier = serializers.IntegerField(allow_null=True, help_text="1 (critical) … 4 (low); null until assessed")
    tags = serializers.DictField(child=serializers.CharField())

    class Meta:
        model = RegisteredModel
        fields = [
            "id",
            "name",
            "display_name",
            "description",
            "business_purpose",
            "intended_use",
            "limitations",
            "owner",
            "team",
            "tags",
            "status",
            "restricted",
            "risk_tier",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ModelCreateIn(StrictSerializer):
    name = serializers.SlugField(max_length=100, help_text="Unique; letters, digits, '-' and '_'")
    team = TeamField()
    owner = UsernameField(required=False, help_text="Defaults to you")
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    business_purpose = serializers.CharField(required=False, allow_blank=True)
    intended_use = serializers.CharField(required=False, allow_blank=True)
    limitations = serializers.CharField(required=False, allow_blank=True)
    tags = _tags_field()
    restricted = serializers.BooleanField(required=False, default=False)


class ModelUpdateIn(StrictSerializer):
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    business_purpose = serializers.CharField(required=False, allow_blank=True)
    intended_use = serializers.CharField(required=False, allow_blank=True)
    limitations = serializers.CharField(required=False, allow_blank=True)
    tags = _tags_field()
    owner = UsernameField(required=False)
    team = TeamField(required=False)
    restricted = serializers.BooleanField(required=False)


class AccessIn(StrictSerializer):
    user = UsernameField(required=False)
    group = TeamField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("group" in attrs):
            raise serializers.ValidationError({"user": "Give exactly one of user or group."})
        return attrs


# --- versions ----------------------------------------------------------------------------


class ParentOut(serializers.Serializer):
    version_id = serializers.IntegerField(source="parent_id")
    model = serializers.CharField(source="parent.model.name")
    number = serializers.IntegerField(source="parent.number")
    relation = serializers.CharField()


class DatasetUsageOut(serializers.Serializer):
    dataset_version_id = serializers.IntegerField()
    dataset = serializers.CharField(source="dataset_version.dataset.name")
    number = serializers.IntegerField(source="dataset_version.number")
    role = serializers.CharField()


class VersionOut(ModelAnswer):
    model = serializers.CharField(source="model.name")
    created_by = serializers.CharField(source="created_by.username")
    tags = serializers.DictField(child=serializers.CharField())
    parents = ParentOut(source="visible_parent_edges", many=True)
    datasets = DatasetUsageOut(source="dataset_usage_list", many=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "model",
            "number",
            "state",
            "artifact_uri",
            "artifact_sha256",
            "framework",
            "source_run_id",
            "source_code_commit",
            "source_pipeline_url",
            "parameters",
            "metrics",
            "signature",
            "description",
            "tags",
            "parents",
            "datasets",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class VisibleVersionField(serializers.PrimaryKeyRelatedField):
    """A version's id, looked up among the versions the caller may see (``context["request"]``):
    one hidden from them gets the answer one that does not exist gets, before any other check
    could tell the two apart. A whole number: 7.9 is refused, not read as 7."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("error_messages", {"does_not_exist": "model version {pk_value} does not exist"})
        super().__init__(pk_field=serializers.IntegerField(min_value=1), **kwargs)

    def get_queryset(self) -> Any:
        return selectors.versions_for(self.context["request"].user)


class ParentIn(StrictSerializer):
    version_id = VisibleVersionField()
    relation = serializers.ChoiceField(choices=ParentRelation.choices)


class DatasetUsageIn(StrictSerializer):
    dataset_version_id = serializers.PrimaryKeyRelatedField(
        queryset=DatasetVersion.objects.select_related("dataset"), pk_field=serializers.IntegerField(min_value=1)
    )
    role = serializers.ChoiceField(choices=DatasetRole.choices)


class VersionCreateIn(StrictSerializer):
    artifact_uri = serializers.CharField(max_length=1000)
    artifact_sha256 = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="SHA-256 of the artifact, 64 hex characters; required to submit",
    )
    framework = serializers.CharField(max_length=100, required=False, allow_blank=True)
    source_run_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    source_code_commit = serializers.CharField(max_length=200, required=False, allow_blank=True)
    source_pipeline_url = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    parameters = _json_object_field()
    # Not DictField(child=FloatField()): that turns true into 1.0 and "0.9" into 0.9, hiding
    # the service's rule that metric values are numbers.
    metrics = serializers.DictField(required=False, help_text="name: number")
    signature = _json_object_field()
    description = serializers.CharField(required=False, allow_blank=True)
    tags = _tags_field()
    parents = ParentIn(many=True, required=False)
    datasets = DatasetUsageIn(many=True, required=False)


class VersionUpdateIn(StrictSerializer):
    description = serializers.CharField(required=False, allow_blank=True)
    tags = _tags_field()

    def unknown_field_message(self, name: str) -> str:
        return (
            f"frozen at creation: only {' and '.join(sorted(VERSION_EDITABLE_FIELDS))} change; register a new version"
        )


class LineageNodeOut(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.name")
    number = serializers.IntegerField()
    state = serializers.CharField()
    depth = serializers.IntegerField(help_text="negative: upstream (ancestors); positive: downstream")


class LineageEdgeOut(serializers.Serializer):
    child_id = serializers.IntegerField()
    parent_id = serializers.IntegerField()
    relation = serializers.CharField()


class LineageDatasetOut(serializers.Serializer):
    version_id = serializers.IntegerField()
    dataset_version_id = serializers.IntegerField()
    dataset = serializers.CharField(source="dataset_version.dataset.name")
    number = serializers.IntegerField(source="dataset_version.number")
    digest = serializers.CharField(source="dataset_version.digest")
    role = serializers.CharField()


class LineageOut(serializers.Serializer):
    root = serializers.IntegerField(source="root.pk")  # type: ignore[assignment]  # a field, not Serializer.root
    nodes = serializers.SerializerMethodField()
    edges = LineageEdgeOut(many=True)
    datasets = LineageDatasetOut(many=True)
    hidden = serializers.IntegerField(help_text="versions in the graph you are not allowed to see")
    left_out = serializers.IntegerField(
        help_text="versions farther from the root than the 1000 nearest, which the graph stops at"
    )

    @extend_schema_field(LineageNodeOut(many=True))
    def get_nodes(self, graph: Any) -> list[dict[str, Any]]:
        return [
            {
                "id": v.pk,
                "model": v.model.name,
                "number": v.number,
                "state": v.state,
                "depth": graph.depth_of[v.pk],
            }
            for v in graph.versions
        ]


class ImpactOut(serializers.Serializer):
    dataset_version_id = serializers.IntegerField()
    versions = VersionOut(many=True, help_text="the first 1000, by model name")
    total = serializers.IntegerField(help_text="impacted versions you may see, listed or not")
    truncated = serializers.BooleanField(help_text="true when there are more than are listed")
    hidden = serializers.IntegerField(help_text="impacted versions you are not allowed to see")


# --- datasets ----------------------------------------------------------------------------


class DatasetOut(ModelAnswer):
    team = serializers.CharField(source="team.name")
    created_by = serializers.CharField(source="created_by.username")

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "team", "created_by", "created_at"]
        read_only_fields = fields


class DatasetCreateIn(StrictSerializer):
    name = serializers.SlugField(max_length=100)
    team = TeamField()
    description = serializers.CharField(required=False, allow_blank=True)


class DatasetVersionOut(ModelAnswer):
    dataset = serializers.CharField(source="dataset.name")
    created_by = serializers.CharField(source="created_by.username")

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "dataset",
            "number",
            "uri",
            "digest",
            "row_count",
            "schema_summary",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class DatasetVersionCreateIn(StrictSerializer):
    uri = serializers.CharField(max_length=1000)
    digest = serializers.CharField(help_text="SHA-256 of the data, 64 hex characters")
    row_count = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**62)
    schema_summary = _json_object_field()


# --- aliases, tags, tokens ---------------------------------------------------------------


class AliasOut(ModelAnswer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="version.number")
    version_id = serializers.IntegerField()
    updated_by = serializers.CharField(source="updated_by.username")

    class Meta:
        model = Alias
        fields = ["name", "model", "version", "version_id", "updated_by", "updated_at"]
        read_only_fields = fields


class AliasSetIn(StrictSerializer):
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="the version number")


class TagIn(StrictSerializer):
    value = serializers.CharField(allow_blank=True, max_length=5000, trim_whitespace=False)


class TokenOut(ModelAnswer):
    user = serializers.CharField(source="user.username", help_text="whose token it is")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "user", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]
        read_only_fields = fields


class TokenCreatedOut(TokenOut):
    token = serializers.CharField(help_text="The secret. Shown once; store it now.")

    class Meta(TokenOut.Meta):
        fields = [*TokenOut.Meta.fields, "token"]
        read_only_fields = fields


class TokenCreateIn(StrictSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class MeOut(serializers.Serializer):
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    teams = serializers.ListField(child=serializers.CharField())
