from __future__ import annotations

import math
from typing import Any

from rest_framework import serializers

from common.api import ModelAnswer, StrictSerializer
from monitoring import services
from monitoring.models import Measure, Observation, ThresholdOverride

NAME = r"^[A-Za-z0-9_.\-/ ]+$"  # no ":", which the labels of PSI findings use
RESERVED = {"staleness"}  # the label of a finding about silence


class FiniteFloat(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class Subject(StrictSerializer):
    """A deployment's id, or a model's name and a version number."""

    model = serializers.SlugField(max_length=100, required=False)
    version = serializers.IntegerField(min_value=1, max_value=999_999_999, required=False)
    deployment = serializers.IntegerField(min_value=1, max_value=2**62, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "deployment" in attrs and ("model" in attrs or "version" in attrs):
            raise serializers.ValidationError({"deployment": "give a deployment, or a model and a version, not both"})
        if "deployment" not in attrs and not ("model" in attrs and "version" in attrs):
            raise serializers.ValidationError({"model": "give a model and a version, or a deployment"})
        return attrs


class MetricName(serializers.RegexField):
    def __init__(self, **kwargs: Any):
        super().__init__(NAME, max_length=100, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value in RESERVED:
            raise serializers.ValidationError(f"{value!r} is reserved")
        return value


class ObservationIn(Subject):
    key = serializers.CharField(max_length=200, help_text="your idempotency key: a retry with it is counted once")
    metric = MetricName()
    segment = serializers.RegexField(NAME, max_length=100, required=False, default="")
    value = FiniteFloat()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()


class ObservationBatchIn(StrictSerializer):
    observations = serializers.ListField(child=ObservationIn(), min_length=1, max_length=services.MAX_OBSERVATIONS)


class Counts(serializers.ListField):
    child = FiniteFloat(min_value=0)


class ReferenceIn(Subject):
    key = serializers.CharField(max_length=200)
    feature = serializers.RegexField(NAME, max_length=100)
    bins = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=1000)
    counts = Counts(min_length=1, max_length=1000)


class DistributionIn(ReferenceIn):
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()


class DistributionBatchIn(StrictSerializer):
    distributions = serializers.ListField(child=DistributionIn(), min_length=1, max_length=services.MAX_DISTRIBUTIONS)


class BreachOut(serializers.Serializer):
    model = serializers.CharField()
    version = serializers.IntegerField()
    metric = serializers.CharField()
    level = serializers.CharField()
    value = serializers.FloatField()
    finding = serializers.IntegerField(allow_null=True)


class ReceivedOut(serializers.Serializer):
    received = serializers.IntegerField()
    stored = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    breaches = BreachOut(many=True)


class ThresholdIn(StrictSerializer):
    measure = serializers.ChoiceField(choices=Measure.choices)
    warn = FiniteFloat(min_value=0)
    critical = FiniteFloat(min_value=0)
    reason = serializers.CharField(max_length=10_000)


class ThresholdOut(ModelAnswer):
    model = serializers.CharField(source="model.name")
    set_by = serializers.CharField(source="set_by.username")

    class Meta:
        model = ThresholdOverride
        fields = ["id", "model", "measure", "warn", "critical", "reason", "set_by", "created_at"]


class PointOut(ModelAnswer):
    class Meta:
        model = Observation
        fields = ["window_start", "window_end", "value", "segment", "deployment"]
