"""The governance API. Views translate: input serializer → service → output serializer."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import CursorPagination
from common.errors import NotFound, ValidationFailed
from governance import gate, history, selectors, services
from governance.api import serializers as s
from governance.filters import DeploymentFilter, RequestFilter
from governance.models import ApprovalRequest, Deployment, DocumentStatus
from registry import selectors as registry_selectors


def _validated(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _request_out(pk: int, request: Request) -> dict[str, Any]:
    """The request as the caller may see it (a decommission's impact names only models they may see)."""
    return s.RequestOut(selectors.request_get(request.user, pk), context={"request": request}).data


class RequestPagination(CursorPagination):
    ordering = "-submitted_at"


class ApprovalRequestViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Approval requests about models you may see. ``awaiting=me`` lists those awaiting your
    decision; ``ordering=submitted_at`` puts the oldest first."""

    serializer_class = s.RequestOut
    filterset_class = RequestFilter
    pagination_class = RequestPagination
    ordering_fields = ["submitted_at"]
    ordering = ["-submitted_at"]
    queryset = ApprovalRequest.objects.none()
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return selectors.requests_for(self.request.user)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(_request_out(int(pk), request))

    @extend_schema(request=s.DecisionIn, responses={201: s.DecisionRecordedOut})
    @action(detail=True, methods=["post"])
    def decisions(self, request: Request, pk: str) -> Response:
        subject = selectors.request_get(request.user, int(pk))
        data = _validated(s.DecisionIn, request)
        data["conditions"] = [services.ConditionIn(**c) for c in data.get("conditions", [])]
        decision = services.decision_record(actor=request.user, request=subject, **data)
        body = {"decision": s.DecisionOut(decision).data, "request": _request_out(subject.pk, request)}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.WithdrawIn, responses={200: s.RequestOut})
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str) -> Response:
        subject = selectors.request_get(request.user, int(pk))
        services.request_withdraw(actor=request.user, request=subject, **_validated(s.WithdrawIn, request))
        return Response(_request_out(subject.pk, request))


class SubmitView(APIView):
    @extend_schema(request=s.SubmitIn, responses={201: s.RequestOut}, summary="Submit a version for approval")
    def post(self, request: Request, model_name: str, number: str) -> Response:
        version = registry_selectors.version_get(request.user, model_name=model_name, number=int(number))
        approval = services.request_submit(actor=request.user, version=version, **_validated(s.SubmitIn, request))
        return Response(_request_out(approval.pk, request), status=status.HTTP_201_CREATED)


def _documented(view: type[APIView], **schema: Any) -> Any:
    """``view.post`` as a function of its own, documented with ``schema``: extend_schema marks the
    function it is given, so views made from one class must not share it."""

    def post(self: Any, request: Request, **kwargs: Any) -> Response:
        return view.post(self, request, **kwargs)  # type: ignore[attr-defined]

    return extend_schema(**schema)(post)


class VersionStateView(APIView):
    """Change a version's state at once, with a reason (``change`` is the service: who may, and
    what it records, are its rules)."""

    change: Any = None

    def post(self, request: Request, model_name: str, number: str) -> Response:
        version = registry_selectors.version_get(request.user, model_name=model_name, number=int(number))
        changed = self.change(actor=request.user, version=version, **_validated(s.ReasonIn, request))
        return Response(s.VersionStateOut(changed).data)


def version_state_view(name: str, change: Any, summary: str) -> Any:
    post = _documented(VersionStateView, request=s.ReasonIn, responses={200: s.VersionStateOut}, summary=summary)
    return type(name, (VersionStateView,), {"change": staticmethod(change), "post": post})


SuspendView = version_state_view(
    "SuspendView",
    services.version_suspend,
    "Suspend a version at once (risk officers): the gate refuses it from now on",
)
DeprecateView = version_state_view(
    "DeprecateView",
    services.version_deprecate,
    "Deprecate a version deployed nowhere (its owner or a risk officer): the gate refuses it from now on",
)


class LifecycleRequestView(APIView):
    """Open a revalidation, reinstatement or decommission request for a version, or (with no
    version in the path) a decommission of the whole model; decided under the tier's policy."""

    kind = ""

    def post(self, request: Request, model_name: str, number: str | None = None) -> Response:
        model = registry_selectors.model_get(request.user, model_name)
        version = None
        if number is not None:
            version = registry_selectors.version_get(request.user, model_name=model_name, number=int(number))
        data = _validated(s.DecommissionIn if self.kind == "decommission" else s.LifecycleRequestIn, request)
        replacement = data.pop("replacement", None)
        if replacement:
            try:
                data["replacement"] = registry_selectors.version_get(
                    request.user, model_name=replacement["model"], number=replacement["version"]
                )
            except NotFound as missing:
                raise ValidationFailed.on("replacement", missing.message) from None
        opened = services.request_open(actor=request.user, kind=self.kind, model=model, version=version, **data)
        return Response(_request_out(opened.pk, request), status=status.HTTP_201_CREATED)


def lifecycle_view(kind: str, summary: str) -> Any:
    body = s.DecommissionIn if kind == "decommission" else s.LifecycleRequestIn
    post = _documented(LifecycleRequestView, request=body, responses={201: s.RequestOut}, summary=summary)
    return type(f"{kind.title()}RequestView", (LifecycleRequestView,), {"kind": kind, "post": post})


class AssessmentView(APIView):
    @extend_schema(responses={200: s.AssessmentOut}, summary="The model's current risk assessment")
    def get(self, request: Request, model_name: str) -> Response:
        model = registry_selectors.model_get(request.user, model_name)
        return Response(s.AssessmentOut(selectors.assessment_current(model)).data)

    @extend_schema(request=s.AssessmentIn, responses={201: s.AssessmentOut}, summary="Record a risk assessment")
    def post(self, request: Request, model_name: str) -> Response:
        model = registry_selectors.model_get(request.user, model_name)
        assessment = services.assessment_record(actor=request.user, model=model, **_validated(s.AssessmentIn, request))
        return Response(s.AssessmentOut(assessment).data, status=status.HTTP_201_CREATED)


class TierOverrideView(APIView):
    @extend_schema(request=s.TierOverrideIn, responses={201: s.RequestOut}, summary="Ask for a tier override")
    def post(self, request: Request, model_name: str) -> Response:
        model = registry_selectors.model_get(request.user, model_name)
        approval = services.tier_override_request(
            actor=request.user, model=model, **_validated(s.TierOverrideIn, request)
        )
        return Response(_request_out(approval.pk, request), status=status.HTTP_201_CREATED)


class PolicyViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Approval policies: the published one of each tier, or ``status=all`` for every version."""

    serializer_class = s.PolicyOut
    pagination_class = None
    queryset = selectors.policies_for(None)
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet:
        wanted = self.request.query_params.get("status", DocumentStatus.PUBLISHED)
        if wanted not in {*DocumentStatus.values, "all"}:
            raise ValidationFailed.on("status", f"one of: {', '.join(DocumentStatus.values)}, all")
        return selectors.policies_for(self.request.user, status=None if wanted == "all" else wanted)

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=[*DocumentStatus.values, "all"])])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.PolicyOut(selectors.policy_get(int(pk))).data)


class ScorecardView(APIView):
    @extend_schema(responses={200: s.ScorecardOut}, summary="The published tiering scorecard")
    def get(self, request: Request) -> Response:
        return Response(s.ScorecardOut(selectors.scorecard_current()).data)


class ValidatorAssignmentView(APIView):
    """Risk officers assign validators to a model or to every model of a team (and unassign
    them with ``remove/``); a validator signs only what they are assigned to."""

    assign = True

    @extend_schema(request=s.ValidatorAssignmentIn, responses={204: None}, summary="Assign a validator")
    def post(self, request: Request) -> Response:
        data = _validated(s.ValidatorAssignmentIn, request)
        model = registry_selectors.model_get(request.user, data["model"]) if data.get("model") else None
        services.validator_assign(
            actor=request.user, validator=data["validator"], model=model, team=data.get("team"), assign=self.assign
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ValidatorUnassignView(ValidatorAssignmentView):
    assign = False


class ConditionCloseView(APIView):
    @extend_schema(
        request=s.ConditionCloseIn, responses={200: s.ConditionOut}, summary="Mark a condition met or waived"
    )
    def post(self, request: Request, pk: str) -> Response:
        condition = selectors.condition_get(request.user, int(pk))
        closed = services.condition_close(
            actor=request.user, condition=condition, **_validated(s.ConditionCloseIn, request)
        )
        return Response(s.ConditionOut(closed).data)


class ExceptionView(APIView):
    @extend_schema(responses={200: s.ExceptionOut(many=True)}, summary="The version's exceptions")
    def get(self, request: Request, model_name: str, number: str) -> Response:
        version = registry_selectors.version_get(request.user, model_name=model_name, number=int(number))
        return Response(s.ExceptionOut(selectors.exceptions_of(version), many=True).data)

    @extend_schema(request=s.ExceptionIn, responses={201: s.ExceptionOut}, summary="Grant an exception")
    def post(self, request: Request, model_name: str, number: str) -> Response:
        version = registry_selectors.version_get(request.user, model_name=model_name, number=int(number))
        granted = services.exception_grant(actor=request.user, version=version, **_validated(s.ExceptionIn, request))
        return Response(s.ExceptionOut(granted).data, status=status.HTTP_201_CREATED)


class FindingView(APIView):
    @extend_schema(responses={200: s.FindingOut(many=True)}, summary="The model's findings, open ones first")
    def get(self, request: Request, model_name: str) -> Response:
        model = registry_selectors.model_get(request.user, model_name)
        return Response(s.FindingOut(selectors.findings_of(model), many=True).data)

    @extend_schema(request=s.FindingIn, responses={201: s.FindingOut}, summary="Raise a finding")
    def post(self, request: Request, model_name: str) -> Response:
        model = registry_selectors.model_get(request.user, model_name)
        data = _validated(s.FindingIn, request)
        if "version" in data:
            try:
                data["version"] = registry_selectors.version_get(
                    request.user, model_name=model.name, number=data["version"]
                )
            except NotFound:  # the model is seen: the number is what is wrong
                raise ValidationFailed.on("version", f"{model.name} has no version {data['version']}") from None
        finding = services.finding_raise(actor=request.user, model=model, **data)
        return Response(s.FindingOut(finding).data, status=status.HTTP_201_CREATED)


GATE_PARAMS = [
    OpenApiParameter("environment", str, required=True),
    OpenApiParameter("model", str, description="model name (with version)"),
    OpenApiParameter("version", int, description="version number (with model)"),
    OpenApiParameter("digest", str, description="the artifact's SHA-256, instead of model and version"),
]


class FindingDetailView(APIView):
    @extend_schema(responses={200: s.FindingOut}, summary="A finding, with its history")
    def get(self, request: Request, pk: str) -> Response:
        return Response(s.FindingOut(selectors.finding_get(request.user, int(pk))).data)


class FindingMoveView(APIView):
    """Acknowledge, remediate or close a finding, with a comment."""

    state = ""

    def post(self, request: Request, pk: str) -> Response:
        finding = selectors.finding_get(request.user, int(pk))
        services.finding_move(
            actor=request.user, finding=finding, state=self.state, **_validated(s.FindingMoveIn, request)
        )
        return Response(s.FindingOut(selectors.finding_get(request.user, int(pk))).data)


def finding_move_view(state: str, summary: str) -> Any:
    decorated = extend_schema(request=s.FindingMoveIn, responses={200: s.FindingOut}, summary=summary)
    return type(
        f"Finding{state.title()}View", (FindingMoveView,), {"state": state, "post": decorated(FindingMoveView.post)}
    )


class GateView(APIView):
    """The question any CI/CD system asks before it deploys: may this version enter this
    environment now? Always 200 with ``allowed`` and every reason it may not."""

    @extend_schema(parameters=GATE_PARAMS, responses={200: s.GateOut}, summary="Ask the deployment gate")
    def get(self, request: Request) -> Response:
        params = request.query_params
        environment = gate.environment_named(_required(params, "environment"))
        version = selectors.version_for_gate(
            request.user,
            model=_param(params, "model"),
            number=_param(params, "version"),
            digest=_param(params, "digest"),
        )
        answer = gate.evaluate(version, environment)
        return Response(
            {
                "allowed": answer.allowed,
                "reasons": answer.reasons,
                "model": version.model.name,
                "version": version.number,
                "environment": environment.name,
            }
        )


def _required(params: Any, name: str) -> str:
    value = _param(params, name)
    if not value:
        raise ValidationFailed.on(name, "is required")
    return value


def _param(params: Any, name: str) -> str:
    value = str(params.get(name, ""))
    if "\x00" in value or len(value) > 200:
        raise ValidationFailed.on(name, "at most 200 characters, no NUL")
    return value


class VersionDeploymentView(APIView):
    @extend_schema(request=s.DeploymentIn, responses={201: s.DeploymentOut}, summary="Record a deployment")
    def post(self, request: Request, model_name: str, number: str) -> Response:
        version = registry_selectors.version_get(request.user, model_name=model_name, number=int(number))
        data = _validated(s.DeploymentIn, request)
        deployment = services.deployment_record(
            actor=request.user,
            version=version,
            environment=gate.environment_named(data["environment"]),
            endpoint=data["endpoint"],
        )
        return Response(s.DeploymentOut(selectors.deployment_get(request.user, deployment.pk)).data, status=201)


class DeploymentPagination(CursorPagination):
    ordering = "-deployed_at"


class DeploymentViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Deployments of models you may see: ``live=true`` for those not retired; ``environment``
    and ``model`` by name."""

    serializer_class = s.DeploymentOut
    pagination_class = DeploymentPagination
    filterset_class = DeploymentFilter
    queryset = Deployment.objects.none()
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return selectors.deployments_for(self.request.user)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.DeploymentOut(selectors.deployment_get(request.user, int(pk))).data)

    @extend_schema(request=s.RetireIn, responses={200: s.DeploymentOut})
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str) -> Response:
        deployment = selectors.deployment_get(request.user, int(pk))
        services.deployment_retire(actor=request.user, deployment=deployment, **_validated(s.RetireIn, request))
        return Response(s.DeploymentOut(selectors.deployment_get(request.user, deployment.pk)).data)


AT_PARAM = OpenApiParameter("at", str, required=True, description="ISO 8601 time, or a date (its end)")


class AliasAtView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("model", str, required=True),
            OpenApiParameter("alias", str, required=True),
            AT_PARAM,
        ],
        responses={200: s.AliasAtOut},
        summary="What an alias pointed to at a time, from the audit trail",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        model = registry_selectors.model_get(request.user, _required(params, "model"))
        alias, at = _required(params, "alias"), history.moment("at", _required(params, "at"))
        number, event = history.alias_at(model, alias, at)
        return Response(
            {
                "model": model.name,
                "alias": alias,
                "at": at,
                "version": number,
                "changed_at": event.occurred_at if event else None,
                "changed_by": event.actor_name if event else None,
                "event_seq": event.seq if event else None,
            }
        )


class DeploymentsAtView(APIView):
    @extend_schema(
        parameters=[AT_PARAM], responses={200: s.DeploymentOut(many=True)}, summary="What ran where at a time"
    )
    def get(self, request: Request) -> Response:
        at = history.moment("at", _required(request.query_params, "at"))
        return Response(s.DeploymentOut(history.deployments_at(request.user, at), many=True).data)


class InventoryAtView(APIView):
    @extend_schema(
        parameters=[AT_PARAM],
        responses={200: s.InventoryRowOut(many=True)},
        summary="Models, tiers and states as of a time",
    )
    def get(self, request: Request) -> Response:
        at = history.moment("at", _required(request.query_params, "at"))
        rows = history.inventory_at(request.user, at)
        return Response(
            [
                {"model": r.model, "tier": r.tier, "versions": {str(n): state for n, state in r.versions.items()}}
                for r in rows
            ]
        )
