"""The engineers' REST API. Views translate: input serializer → service → output serializer."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors as audit_selectors
from audit.api.serializers import AuditEventOut
from audit.api.views import AuditEventPagination
from common import validation
from common.api import FirstPage
from common.errors import NotFound, ValidationFailed
from common.roles import roles_of
from registry import policies, selectors, services
from registry.api import serializers as s
from registry.filters import DatasetFilter, DatasetVersionFilter, ModelFilter, TokenFilter, VersionFilter
from registry.models import Alias, ApiToken, DatasetVersion, ModelVersion

IMPACT_LIMIT = 1000
# Tag keys and alias names are checked by the services, which name the rule; URLs take any segment.
TAG_PATH = r"tags/(?P<key>[^/]+)"


def _validated(serializer_class: type, request: Request, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, context={"request": request}, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _lineage_params(request: Request) -> tuple[str, int]:
    direction = request.query_params.get("direction", "both")
    if direction not in {"upstream", "downstream", "both"}:
        raise ValidationFailed.on("direction", "must be upstream, downstream or both")
    raw_depth = request.query_params.get("depth", "3")
    if not validation.is_number(raw_depth, 2) or not 1 <= int(raw_depth) <= selectors.MAX_LINEAGE_DEPTH:
        raise ValidationFailed.on("depth", f"must be a whole number from 1 to {selectors.MAX_LINEAGE_DEPTH}")
    return direction, int(raw_depth)


LINEAGE_PARAMS = [
    OpenApiParameter("direction", str, enum=["upstream", "downstream", "both"], default="both"),
    OpenApiParameter("depth", int, default=3, description=f"1 to {selectors.MAX_LINEAGE_DEPTH}"),
]


class ModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Registered models. Restricted models are visible only to those allowed to see them."""

    serializer_class = s.ModelOut
    filterset_class = ModelFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    ordering = ["name"]
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def get_queryset(self) -> QuerySet:
        return selectors.models_for(self.request.user)

    def get_object(self) -> Any:
        return selectors.model_get(self.request.user, self.kwargs["name"])

    @extend_schema(request=s.ModelCreateIn, responses={201: s.ModelOut})
    def create(self, request: Request) -> Response:
        model = services.model_register(actor=request.user, **_validated(s.ModelCreateIn, request))
        return Response(s.ModelOut(model).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ModelUpdateIn, responses={200: s.ModelOut})
    def partial_update(self, request: Request, name: str) -> Response:
        model = services.model_update(
            actor=request.user,
            model=self.get_object(),
            changes=_validated(s.ModelUpdateIn, request),
        )
        return Response(s.ModelOut(model).data)

    @extend_schema(request=s.TagIn, responses={200: s.ModelOut})
    @action(detail=True, methods=["put"], url_path=TAG_PATH)
    def tag(self, request: Request, name: str, key: str) -> Response:
        value = _validated(s.TagIn, request)["value"]
        model = services.model_update(actor=request.user, model=self.get_object(), set_tags={key: value})
        return Response(s.ModelOut(model).data)

    @extend_schema(request=None, responses={200: s.ModelOut})
    @tag.mapping.delete
    def delete_tag(self, request: Request, name: str, key: str) -> Response:
        model = services.model_update(actor=request.user, model=self.get_object(), delete_tags=[key])
        return Response(s.ModelOut(model).data)

    @extend_schema(responses={200: AuditEventOut(many=True)})
    @action(detail=True, methods=["get"], filterset_class=None, filter_backends=[])
    def history(self, request: Request, name: str) -> Response:
        """The audit trail of this model, newest first."""
        model = self.get_object()
        paginator = AuditEventPagination()  # ordered by the trail's own order, not this view's
        page = paginator.paginate_queryset(audit_selectors.model_history(model.name), request)
        return paginator.get_paginated_response(AuditEventOut(page, many=True).data)

    @extend_schema(request=s.AccessIn, responses={204: None})
    @action(detail=True, methods=["post"], url_path="access")
    def grant_access(self, request: Request, name: str) -> Response:
        """Let a user or group outside the owning team see this (restricted) model."""
        services.model_grant_access(actor=request.user, model=self.get_object(), **_validated(s.AccessIn, request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.AccessIn, responses={204: None})
    @action(detail=True, methods=["post"], url_path="access/revoke")
    def revoke_access(self, request: Request, name: str) -> Response:
        services.model_revoke_access(actor=request.user, model=self.get_object(), **_validated(s.AccessIn, request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionViewSetBase(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = s.VersionOut
    filterset_class = VersionFilter
    ordering_fields = ["number", "created_at"]

    def _respond_lineage(self, request: Request, version: ModelVersion) -> Response:
        direction, depth = _lineage_params(request)
        graph = selectors.lineage(request.user, version, direction=direction, depth=depth)
        return Response(s.LineageOut(graph).data)

    def _add_parent(self, request: Request, version: ModelVersion) -> Response:
        data = _validated(s.ParentIn, request)
        services.lineage_add_parent(
            actor=request.user, child=version, parent=data["version_id"], relation=data["relation"]
        )
        return Response(s.VersionOut(self._reload(version)).data, status=status.HTTP_201_CREATED)

    def _add_dataset(self, request: Request, version: ModelVersion) -> Response:
        data = _validated(s.DatasetUsageIn, request)
        services.lineage_add_dataset(
            actor=request.user,
            version=version,
            dataset_version=data["dataset_version_id"],
            role=data["role"],
        )
        return Response(s.VersionOut(self._reload(version)).data, status=status.HTTP_201_CREATED)

    def _update(self, request: Request, version: ModelVersion) -> Response:
        version = services.version_update(actor=request.user, version=version, **_validated(s.VersionUpdateIn, request))
        return Response(s.VersionOut(self._reload(version)).data)

    def _set_tag(self, request: Request, version: ModelVersion, key: str) -> Response:
        value = _validated(s.TagIn, request)["value"]
        version = services.version_update(actor=request.user, version=version, set_tags={key: value})
        return Response(s.VersionOut(self._reload(version)).data)

    def _delete_tag(self, request: Request, version: ModelVersion, key: str) -> Response:
        version = services.version_update(actor=request.user, version=version, delete_tags=[key])
        return Response(s.VersionOut(self._reload(version)).data)

    def _reload(self, version: ModelVersion) -> ModelVersion:
        return selectors.version_get(self.request.user, pk=version.pk)

    def paginate_queryset(self, queryset: Any) -> Any:
        """A page, with the lineage of the versions on it that have any (``with_lineage``)."""
        page = super().paginate_queryset(queryset)
        return None if page is None else selectors.with_lineage(self.request.user, page)


class ModelVersionViewSet(VersionViewSetBase):
    """Versions of one model, addressed by the model's name and the version number."""

    ordering = ["-number"]
    lookup_field = "number"
    lookup_value_regex = r"[0-9]{1,9}"

    queryset = ModelVersion.objects.none()

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        model = selectors.model_get(self.request.user, self.kwargs["model_name"])
        versions = selectors.versions_of(model)
        if self.action == "list" and not self.request.query_params.keys() - {"page_size"}:
            return FirstPage(versions, self.ordering, lambda limit: selectors.newest_versions(model, limit))  # type: ignore[return-value]
        return versions

    def get_object(self) -> ModelVersion:
        return selectors.version_get(
            self.request.user,
            model_name=self.kwargs["model_name"],
            number=int(self.kwargs["number"]),
        )

    def retrieve(self, request: Request, model_name: str, number: str) -> Response:
        return Response(s.VersionOut(self.get_object()).data)

    @extend_schema(request=s.VersionCreateIn, responses={201: s.VersionOut})
    def create(self, request: Request, model_name: str) -> Response:
        data = _validated(s.VersionCreateIn, request)
        data["parents"] = [(p["version_id"], p["relation"]) for p in data.get("parents", [])]
        data["datasets"] = [(d["dataset_version_id"], d["role"]) for d in data.get("datasets", [])]
        # The service reads the model by name and locks it in one statement (NotFound if unseen).
        version = services.version_create(actor=request.user, model=model_name, **data)
        if data["parents"] or data["datasets"]:
            version = self._reload(version)
        else:  # created without lineage, the instance in hand is the whole answer
            version.visible_parent_edges, version.dataset_usage_list = [], []  # type: ignore[attr-defined]
        return Response(s.VersionOut(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.VersionUpdateIn, responses={200: s.VersionOut})
    def partial_update(self, request: Request, model_name: str, number: str) -> Response:
        return self._update(request, self.get_object())

    @extend_schema(parameters=LINEAGE_PARAMS, responses={200: s.LineageOut})
    @action(detail=True, methods=["get"])
    def lineage(self, request: Request, model_name: str, number: str) -> Response:
        return self._respond_lineage(request, self.get_object())

    @extend_schema(request=s.ParentIn, responses={201: s.VersionOut})
    @action(detail=True, methods=["post"])
    def parents(self, request: Request, model_name: str, number: str) -> Response:
        return self._add_parent(request, self.get_object())

    @extend_schema(request=s.DatasetUsageIn, responses={201: s.VersionOut})
    @action(detail=True, methods=["post"])
    def datasets(self, request: Request, model_name: str, number: str) -> Response:
        return self._add_dataset(request, self.get_object())

    @extend_schema(request=s.TagIn, responses={200: s.VersionOut})
    @action(detail=True, methods=["put"], url_path=TAG_PATH)
    def tag(self, request: Request, model_name: str, number: str, key: str) -> Response:
        return self._set_tag(request, self.get_object(), key)

    @extend_schema(request=None, responses={200: s.VersionOut})
    @tag.mapping.delete
    def delete_tag(self, request: Request, model_name: str, number: str, key: str) -> Response:
        return self._delete_tag(request, self.get_object(), key)


class VersionViewSet(VersionViewSetBase):
    """Versions of every model you can see, addressed by id."""

    lookup_value_regex = r"[0-9]{1,18}"

    ordering = ["-created_at"]

    def get_queryset(self) -> QuerySet:
        return selectors.versions_for(self.request.user)

    def get_object(self) -> ModelVersion:
        return selectors.version_get(self.request.user, pk=int(self.kwargs["pk"]))

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.VersionOut(self.get_object()).data)

    @extend_schema(request=s.VersionUpdateIn, responses={200: s.VersionOut})
    def partial_update(self, request: Request, pk: str) -> Response:
        return self._update(request, self.get_object())

    @extend_schema(parameters=LINEAGE_PARAMS, responses={200: s.LineageOut})
    @action(detail=True, methods=["get"])
    def lineage(self, request: Request, pk: str) -> Response:
        return self._respond_lineage(request, self.get_object())

    @extend_schema(request=s.ParentIn, responses={201: s.VersionOut})
    @action(detail=True, methods=["post"])
    def parents(self, request: Request, pk: str) -> Response:
        return self._add_parent(request, self.get_object())

    @extend_schema(request=s.DatasetUsageIn, responses={201: s.VersionOut})
    @action(detail=True, methods=["post"])
    def datasets(self, request: Request, pk: str) -> Response:
        return self._add_dataset(request, self.get_object())

    @extend_schema(request=s.TagIn, responses={200: s.VersionOut})
    @action(detail=True, methods=["put"], url_path=TAG_PATH)
    def tag(self, request: Request, pk: str, key: str) -> Response:
        return self._set_tag(request, self.get_object(), key)

    @extend_schema(request=None, responses={200: s.VersionOut})
    @tag.mapping.delete
    def delete_tag(self, request: Request, pk: str, key: str) -> Response:
        return self._delete_tag(request, self.get_object(), key)


class DatasetViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = s.DatasetOut
    filterset_class = DatasetFilter
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def get_queryset(self) -> QuerySet:
        return selectors.datasets_for(self.request.user)

    def retrieve(self, request: Request, name: str) -> Response:
        return Response(s.DatasetOut(selectors.dataset_get(request.user, name)).data)

    @extend_schema(request=s.DatasetCreateIn, responses={201: s.DatasetOut})
    def create(self, request: Request) -> Response:
        dataset = services.dataset_create(actor=request.user, **_validated(s.DatasetCreateIn, request))
        return Response(s.DatasetOut(dataset).data, status=status.HTTP_201_CREATED)


class DatasetVersionNestedViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = s.DatasetVersionOut
    filterset_class = DatasetVersionFilter
    ordering_fields = ["number", "created_at"]
    ordering = ["-number"]

    queryset = DatasetVersion.objects.none()

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        dataset = selectors.dataset_get(self.request.user, self.kwargs["dataset_name"])
        return selectors.dataset_versions_for(self.request.user).filter(dataset=dataset)

    @extend_schema(request=s.DatasetVersionCreateIn, responses={201: s.DatasetVersionOut})
    def create(self, request: Request, dataset_name: str) -> Response:
        dataset = selectors.dataset_get(request.user, dataset_name)
        data = _validated(s.DatasetVersionCreateIn, request)
        dataset_version = services.dataset_version_create(actor=request.user, dataset=dataset, **data)
        return Response(s.DatasetVersionOut(dataset_version).data, status=status.HTTP_201_CREATED)


class DatasetVersionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    lookup_value_regex = r"[0-9]{1,18}"
    serializer_class = s.DatasetVersionOut
    filterset_class = DatasetVersionFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]

    def get_queryset(self) -> QuerySet:
        return selectors.dataset_versions_for(self.request.user)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.DatasetVersionOut(selectors.dataset_version_get(request.user, int(pk))).data)

    @extend_schema(responses={200: s.ImpactOut})
    @action(detail=True, methods=["get"])
    def impact(self, request: Request, pk: str) -> Response:
        """Every model version that used this dataset version directly or through an ancestor:
        the first 1000 by model name, with how many there are (``total``, and ``truncated``
        when that is more than are listed)."""
        dataset_version = selectors.dataset_version_get(request.user, int(pk))
        versions, seen, hidden = selectors.impacted_versions(request.user, dataset_version)
        payload = {
            "dataset_version_id": dataset_version.pk,
            "versions": selectors.with_lineage(request.user, list(versions[:IMPACT_LIMIT])),
            "total": seen,
            "truncated": seen > IMPACT_LIMIT,
            "hidden": hidden,
        }
        return Response(s.ImpactOut(payload).data)


class AliasViewSet(viewsets.GenericViewSet):
    """Named pointers to a model's versions."""

    serializer_class = s.AliasOut
    pagination_class = None
    lookup_field = "alias"
    lookup_value_regex = r"[^/]+"

    queryset = Alias.objects.none()

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        model = selectors.model_get(self.request.user, self.kwargs["model_name"])
        return selectors.aliases_for(self.request.user, model)

    def get_object(self) -> Alias:
        model = selectors.model_get(self.request.user, self.kwargs["model_name"])
        name = self.kwargs["alias"]
        found = selectors.alias_named(model, name) if services.ALIAS_NAME_RE.match(name) else None
        if found is None:
            raise NotFound(f"Model {self.kwargs['model_name']} has no alias {name!r}.")
        return found

    def list(self, request: Request, model_name: str) -> Response:
        return Response(s.AliasOut(self.get_queryset(), many=True).data)

    def retrieve(self, request: Request, model_name: str, alias: str) -> Response:
        found = self.get_object()
        policies.can_resolve_alias(found.model, found.name, found.version).ensure()
        return Response(s.AliasOut(found).data)

    @extend_schema(request=s.AliasSetIn, responses={200: s.AliasOut})
    def update(self, request: Request, model_name: str, alias: str) -> Response:
        number = _validated(s.AliasSetIn, request)["version"]
        model = selectors.model_get(request.user, model_name)
        return Response(s.AliasOut(services.alias_set(actor=request.user, model=model, name=alias, number=number)).data)

    def destroy(self, request: Request, model_name: str, alias: str) -> Response:
        services.alias_delete(actor=request.user, alias=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """API tokens: your own; a risk officer or a superuser sees and revokes everyone's (``user``
    filters by username). The secret is shown once, when the token is created."""

    lookup_value_regex = r"[0-9]{1,18}"

    serializer_class = s.TokenOut
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    filterset_class = TokenFilter

    def get_queryset(self) -> QuerySet:
        return selectors.tokens_for(self.request.user)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.TokenOut(self._get(pk)).data)

    @extend_schema(request=s.TokenCreateIn, responses={201: s.TokenCreatedOut})
    def create(self, request: Request) -> Response:
        via = request.auth if isinstance(request.auth, ApiToken) else None
        token, secret = services.token_create(actor=request.user, via=via, **_validated(s.TokenCreateIn, request))
        token.token = secret  # type: ignore[attr-defined]
        return Response(s.TokenCreatedOut(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: s.TokenOut})
    def destroy(self, request: Request, pk: str) -> Response:
        """Revoke the token; it stays listed, with the time it was revoked."""
        token = services.token_revoke(actor=request.user, token=self._get(pk))
        return Response(s.TokenOut(token).data)

    def _get(self, pk: str) -> Any:
        token = self.get_queryset().filter(pk=int(pk)).first()
        if token is None:
            raise NotFound("No such token.")
        return token


class MeView(APIView):
    @extend_schema(responses={200: s.MeOut})
    def get(self, request: Request) -> Response:
        """Who you are signed in as, your roles and your teams."""
        return Response(
            {
                "username": request.user.get_username(),
                "roles": sorted(roles_of(request.user)),
                "teams": sorted(policies.teams_of(request.user).values_list("name", flat=True)),
            }
        )
