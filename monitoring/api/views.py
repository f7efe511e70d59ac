"""The monitoring API: batches of observations and distributions, references, the series a
chart draws, and per-model threshold overrides."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common import validation
from common.errors import ValidationFailed
from governance.models import Deployment
from monitoring import services
from monitoring.api import serializers as s
from monitoring.models import Observation
from registry import selectors as registry_selectors
from registry.models import ModelVersion


def _validated(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _items(user: Any, name: str, rows: list[dict[str, Any]]) -> list[services.Item]:
    """Resolve each row's version (by model and number, or by deployment) among those the user
    may see, in two queries whatever the batch size."""
    # Only what ingest reads: no lineage prefetches, no artifact JSON.
    visible = (
        registry_selectors.versions_for(user)
        .prefetch_related(None)
        .select_related(None)
        .select_related("model__team")
        .only(
            "id",
            "number",
            "state",
            "metrics",
            "model_id",
            "model__name",
            "model__team_id",
            "model__owner_id",
            "model__risk_tier",
            "model__status",
            "model__team__name",
        )
    )
    numbers: dict[str, set[int]] = {}
    for row in rows:
        if "model" in row:
            numbers.setdefault(row["model"], set()).add(row["version"])
    by_pair: dict[tuple[str, int], ModelVersion] = {}
    if numbers:
        query = Q()
        for model, wanted in numbers.items():
            query |= Q(model__name=model, number__in=sorted(wanted))
        by_pair = {(v.model.name, v.number): v for v in visible.filter(query)}
    deployment_ids = {row["deployment"] for row in rows if "deployment" in row}
    deployments = {
        d.pk: d
        for d in Deployment.objects.filter(pk__in=deployment_ids, version__in=visible).select_related(
            "version__model__team"
        )
    }
    items = []
    for index, row in enumerate(rows):
        row = dict(row)
        at = f"{name}[{index}]." if name else ""  # a body that is the row names its fields plainly
        deployment = deployments.get(row.pop("deployment", None) or 0)
        if "model" in row:
            version = by_pair.get((row.pop("model"), row.pop("version")))
            if version is None:
                raise ValidationFailed.on(f"{at}version", "no such version that you may see")
        elif deployment is None:
            raise ValidationFailed.on(f"{at}deployment", "no such deployment that you may see")
        else:
            version = deployment.version
        # What reports nothing more (a decommissioned version, a retired deployment) the service
        # refuses, as it stands once locked.
        items.append(services.Item(version=version, deployment=deployment, data=row))
    return items


class ObservationsView(APIView):
    takes_batches = True  # its body may be up to API_MAX_BODY_BYTES (common.api)

    @extend_schema(
        request=s.ObservationBatchIn,
        responses={200: s.ReceivedOut},
        summary="Report metric observations (up to 5,000; a key already stored is counted once)",
    )
    def post(self, request: Request) -> Response:
        rows = _validated(s.ObservationBatchIn, request)["observations"]
        received = services.observations_receive(actor=request.user, items=_items(request.user, "observations", rows))
        return Response(s.ReceivedOut(received).data)


class DistributionsView(APIView):
    takes_batches = True

    @extend_schema(
        request=s.DistributionBatchIn,
        responses={200: s.ReceivedOut},
        summary="Report binned distributions (PSI against each version's reference)",
    )
    def post(self, request: Request) -> Response:
        rows = _validated(s.DistributionBatchIn, request)["distributions"]
        received = services.distributions_receive(actor=request.user, items=_items(request.user, "distributions", rows))
        return Response(s.ReceivedOut(received).data)


class ReferenceView(APIView):
    @extend_schema(
        request=s.ReferenceIn,
        responses={201: None},
        summary="Capture a version's reference distribution (while the version is a draft)",
    )
    def post(self, request: Request) -> Response:
        row = _validated(s.ReferenceIn, request)
        (item,) = _items(request.user, "", [row])
        reference = services.reference_capture(actor=request.user, item=item)
        return Response({"id": reference.pk, "feature": reference.feature}, status=status.HTTP_201_CREATED)


class SeriesView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("metric", str, required=True),
            OpenApiParameter("segment", str),
            OpenApiParameter("deployment", int, description="one deployment's series (each point names its own)"),
        ],
        responses={200: s.PointOut(many=True)},
        summary="A metric's observations for a version, oldest first (at most the last 1,000)",
    )
    def get(self, request: Request, model_name: str, number: str) -> Response:
        version = registry_selectors.version_get(request.user, model_name=model_name, number=int(number))
        metric = request.query_params.get("metric", "")
        segment = request.query_params.get("segment", "")
        if not re.fullmatch(s.NAME[1:-1], metric) or len(metric) > 100:
            raise ValidationFailed.on("metric", "a metric name (1-100 letters, digits, spaces or _ . - /)")
        if segment and (not re.fullmatch(s.NAME[1:-1], segment) or len(segment) > 100):
            raise ValidationFailed.on("segment", "a segment name (1-100 letters, digits, spaces or _ . - /)")
        points = Observation.objects.filter(version=version, metric=metric, segment=segment).order_by("-window_end")
        deployment = request.query_params.get("deployment")
        if deployment is not None:
            if not validation.is_number(deployment):
                raise ValidationFailed.on("deployment", "a deployment's id")
            points = points.filter(deployment_id=int(deployment))
        return Response(s.PointOut(reversed(list(points[:1000])), many=True).data)


class ThresholdView(APIView):
    @extend_schema(request=s.ThresholdIn, responses={201: s.ThresholdOut}, summary="Override a model's thresholds")
    def post(self, request: Request, model_name: str) -> Response:
        model = registry_selectors.model_get(request.user, model_name)
        override = services.thresholds_override(actor=request.user, model=model, **_validated(s.ThresholdIn, request))
        return Response(s.ThresholdOut(override).data, status=status.HTTP_201_CREATED)
