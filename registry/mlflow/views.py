"""The endpoints. MLflow's wire conventions: GET parameters in the query string, JSON bodies
for POST, PATCH and DELETE; timestamps in epoch milliseconds; ``version`` as a string; errors
as ``{"error_code", "message"}``.

Plain Django views rather than DRF: the MLflow protocol is small and fixed, and every
millisecond of framework on a registry call is paid by every training job that registers a
model. Rules stay where they live: visibility and writes go through ``registry.selectors``,
``registry.policies`` and ``registry.services``, whose errors map onto MLflow's codes here.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import OperationalError, connection
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions

from common import statements, validation
from common.errors import (
    TRY_AGAIN,
    Conflict,
    DomainError,
    Duplicate,
    NotFound,
    PermissionDenied,
    Unavailable,
    ValidationFailed,
    to_send_again,
)
from common.roles import team_names
from common.rows import columns
from registry import policies, selectors, services
from registry.api.authentication import BasicTokenAuthentication, BearerTokenAuthentication
from registry.mlflow import search
from registry.models import Alias, ModelVersion, RegisteredModel, VersionState

log = logging.getLogger(__name__)

# Tags under this prefix are Warden's: read-only facts in responses, and on create the few
# settings MLflow's protocol has no field for (the owning team, the artifact's digest).
RESERVED = validation.RESERVED_TAG_PREFIX
TEAM_TAG = "warden.team"
DIGEST_TAG = "warden.artifact_sha256"

STAGES = ("None", "Staging", "Production", "Archived")
# How a Warden state reads as an MLflow stage (stages are read-only: see transition_stage).
STAGE_OF = {
    VersionState.DEPLOYED: "Production",
    VersionState.DEPRECATED: "Archived",
    VersionState.DECOMMISSIONED: "Archived",
}

MODEL_KEYS = frozenset({"name"})
MODEL_COLUMNS = {"name": "name", "tags": "tags"}
MODEL_ORDER = {
    "name": "name",
    "timestamp": "updated_at",  # as MLflow's store reads it for models
    "creation_timestamp": "created_at",
    "last_updated_timestamp": "updated_at",
}
VERSION_KEYS = frozenset({"name", "run_id", "source_path", "version_number"})
VERSION_COLUMNS = {
    "name": "model__name",
    "run_id": "source_run_id",
    "source_path": "artifact_uri",
    "version_number": "number",
    "tags": "tags",
}
VERSION_ORDER = {
    "name": "model__name",
    "version_number": "number",
    "creation_timestamp": "created_at",
    "timestamp": "created_at",
    "last_updated_timestamp": "updated_at",
}


User = get_user_model()


class MlflowError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# --- wire --------------------------------------------------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _tags(tags: dict[str, str], facts: dict[str, Any]) -> list[dict[str, str]]:
    out = [{"key": key, "value": value} for key, value in tags.items()]
    out += [{"key": RESERVED + key, "value": str(value)} for key, value in facts.items() if value not in (None, "")]
    return out


# What Warden states about a model or a version as ``warden.`` tags; a create takes them back
# (``_user_tags``).
MODEL_FACT_KEYS = ("team", "risk_tier", "status")
VERSION_FACT_KEYS = ("state", "artifact_sha256")


def _model_facts(model: RegisteredModel) -> dict[str, Any]:
    risk_tier = model.risk_tier and f"T{model.risk_tier}"
    return dict(zip(MODEL_FACT_KEYS, (model.team.name, risk_tier, model.status), strict=True))


def _version_facts(version: ModelVersion) -> dict[str, Any]:
    return dict(zip(VERSION_FACT_KEYS, (version.state, version.artifact_sha256), strict=True))


def version_json(version: ModelVersion, aliases: list[str]) -> dict[str, Any]:
    return {
        "name": version.model.name,
        "version": str(version.number),
        "creation_timestamp": _ms(version.created_at),
        "last_updated_timestamp": _ms(version.updated_at),
        "user_id": version.created_by.get_username(),
        "current_stage": STAGE_OF.get(version.state, "None"),  # type: ignore[call-overload]
        "description": version.description,
        "source": version.artifact_uri,
        "run_id": version.source_run_id,
        "run_link": version.source_pipeline_url,
        "status": "READY",
        "status_message": f"Warden state: {version.state}",
        "tags": _tags(version.tags, _version_facts(version)),
        "aliases": aliases,
    }


def model_json(model: RegisteredModel, latest: list[ModelVersion], aliases: list[ModelAlias]) -> dict[str, Any]:
    facts = _model_facts(model)
    by_version: dict[int, list[str]] = {}
    for alias in aliases:
        by_version.setdefault(alias.version_id, []).append(alias.name)
    return {
        "name": model.name,
        "creation_timestamp": _ms(model.created_at),
        "last_updated_timestamp": _ms(model.updated_at),
        "user_id": model.owner.get_username(),
        "description": model.description,
        "tags": _tags(model.tags, facts),
        "aliases": [{"alias": alias.name, "version": str(alias.number)} for alias in aliases],
        "latest_versions": [version_json(v, by_version.get(v.pk, [])) for v in latest],
    }


# --- reads -------------------------------------------------------------------------------

# What the responses show: loading only these skips the JSON columns (parameters, metrics,
# signature) and most of the users' rows, which were most of a point read's time.
_OWN_FIELDS = (
    *("number", "created_at", "updated_at", "state", "description", "tags", "artifact_uri", "artifact_sha256"),
    *("source_run_id", "source_pipeline_url", "created_by__username"),
)
VERSION_FIELDS = (*_OWN_FIELDS, "model__name", "model__restricted", "model__team_id")


# What ``model_json`` shows of a model: a page of a hundred loads only these.
_MODEL_FIELDS = (
    *("name", "created_at", "updated_at", "description", "tags", "risk_tier", "status"),
    *("owner__username", "team__name"),
)


def _version_rows() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("model", "created_by").only(*VERSION_FIELDS)


def _versions(actor: Any) -> QuerySet[ModelVersion]:
    return _version_rows().filter(policies.model_visibility(actor, "model__"))


def _model(actor: Any, name: Any) -> RegisteredModel:
    name = _text("name", name)
    model = selectors.model_named(actor, name)
    if model is None:
        raise _no_model(name)
    return model


def _no_model(name: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", f"Registered Model with name={name} not found", 404)


def _version(actor: Any, name: Any, number: Any) -> ModelVersion:
    name, number = _text("name", name), _number(number)
    version = selectors.version_named(name, number)
    if version is None or not policies.can_view_model(actor, version.model):
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"Model Version (name={name}, version={number}) not found", 404)
    return version


class ModelAlias(NamedTuple):
    name: str
    version_id: int
    number: int


def _aliases_of_models(model_ids: list[int]) -> dict[int, list[ModelAlias]]:
    """Each model's aliases, by name; plain SQL, as every model answered asks."""
    out: dict[int, list[ModelAlias]] = {}
    if not model_ids:
        return out
    where, params = statements.any_of(connection, model_ids)
    with connection.cursor() as cursor:
        statements.execute(
            cursor,
            f"SELECT a.model_id, a.name, a.version_id, v.number FROM {Alias._meta.db_table} a"
            f" JOIN {ModelVersion._meta.db_table} v ON v.id = a.version_id WHERE a.model_id {where} ORDER BY a.name",
            params,
        )
        for model_id, *alias in cursor.fetchall():
            out.setdefault(model_id, []).append(ModelAlias(*alias))
    return out


def _aliases_of_versions(version_ids: list[int]) -> dict[int, list[str]]:
    """The names of the aliases of each version; plain SQL, as every version answered asks."""
    out: dict[int, list[str]] = {}
    if not version_ids:
        return out
    where, params = statements.any_of(connection, version_ids)
    sql = f"SELECT version_id, name FROM {Alias._meta.db_table} WHERE version_id {where} ORDER BY name"
    with connection.cursor() as cursor:
        statements.execute(cursor, sql, params)
        for version_id, name in cursor.fetchall():
            out.setdefault(version_id, []).append(name)
    return out


# What an MLflow answer shows of a version (``version_json``), the columns ``_latest`` reads.
_LATEST_FIELDS = (
    *("id", "model_id", "number", "created_at", "updated_at", "state", "description", "tags", "artifact_uri"),
    *("artifact_sha256", "source_run_id", "source_pipeline_url", "created_by_id"),
)
_LATEST_COLUMNS = columns(ModelVersion, "v", fields=_LATEST_FIELDS)
_STAGE_SQL = (
    "CASE v.state "
    + " ".join(f"WHEN '{state}' THEN '{stage}'" for state, stage in STAGE_OF.items())
    + " ELSE 'None' END"
)


def _latest(models: list[RegisteredModel], stages: list[str] | None = None) -> dict[int, list[ModelVersion]]:
    """The newest version in each stage of each model, in one plain statement (the ORM took
    longer to build this one than the database to run it). The models are in hand, so they are
    not joined: joined, PostgreSQL hashes every model in the registry to match a page's."""
    by_id = {model.pk: model for model in models}
    if not by_id:
        return {}
    where, params = statements.any_of(connection, list(by_id))
    wanted = ""
    if stages:
        wanted = f" AND v.stage IN ({', '.join(['%s'] * len(stages))})"
        params += list(stages)
    sql = (
        f"SELECT {_LATEST_COLUMNS}, u.username FROM ("
        f"SELECT {_LATEST_COLUMNS}, {_STAGE_SQL} AS stage,"
        f" ROW_NUMBER() OVER (PARTITION BY v.model_id, {_STAGE_SQL} ORDER BY v.number DESC) AS rank"
        f" FROM {ModelVersion._meta.db_table} v WHERE v.model_id {where}"
        f") v JOIN {User._meta.db_table} u ON u.id = v.created_by_id WHERE v.rank = 1{wanted}"
        " ORDER BY v.model_id, v.number"
    )
    out: dict[int, list[ModelVersion]] = {}
    for version in _shown_versions(sql, params, by_id):
        out.setdefault(version.model_id, []).append(version)
    return out


def _shown_versions(sql: str, params: list[Any], models: dict[int, RegisteredModel]) -> list[ModelVersion]:
    """Versions of ``models`` from ``sql``, which selects ``_LATEST_COLUMNS`` and then the
    author's username: what ``version_json`` reads."""
    return selectors.versions_read(sql, params, models, fields=_LATEST_FIELDS)


# The search MLflow's client makes for a model's versions (``filter="name='…'"``, in the default
# order: last updated first, then the highest number), as one prepared statement, with the model
# read by name: the ORM took longer to build the general query than the database to run it.
_VERSIONS_OF = (
    f"SELECT {_LATEST_COLUMNS}, u.username FROM {ModelVersion._meta.db_table} v"
    f" JOIN {User._meta.db_table} u ON u.id = v.created_by_id WHERE v.model_id = %s"
    " ORDER BY v.updated_at DESC, v.number DESC, v.id LIMIT %s OFFSET %s"
)
_HIGHEST_SQL = (
    f"SELECT {_LATEST_COLUMNS}, u.username FROM {ModelVersion._meta.db_table} v"
    f" JOIN {User._meta.db_table} u ON u.id = v.created_by_id WHERE v.model_id = %s ORDER BY v.number DESC LIMIT 1"
)
_BY_ALIAS_SQL = (
    f"SELECT {_LATEST_COLUMNS}, u.username FROM {Alias._meta.db_table} a"
    f" JOIN {ModelVersion._meta.db_table} v ON v.id = a.version_id"
    f" JOIN {User._meta.db_table} u ON u.id = v.created_by_id WHERE a.model_id = %s AND a.name = %s"
)


def _model_out(model: RegisteredModel) -> dict[str, Any]:
    return model_json(model, _latest([model]).get(model.pk, []), _aliases_of_models([model.pk]).get(model.pk, []))


def _version_out(version: ModelVersion) -> dict[str, Any]:
    return version_json(version, _aliases_of_versions([version.pk]).get(version.pk, []))


# --- parameters --------------------------------------------------------------------------


def _text(field: str, value: Any, *, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Missing value for required parameter '{field}'.")
        return ""
    if not isinstance(value, str):
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Parameter '{field}' must be a string.")
    if "\x00" in value:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Parameter '{field}' must not hold a NUL character.")
    return value


def _number(value: Any) -> int:
    text = _text("version", str(value) if isinstance(value, int) and not isinstance(value, bool) else value)
    if not validation.is_number(text, 9) or int(text) < 1:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Parameter 'version' must be a positive integer, got {text!r}.")
    return int(text)


def _tag_list(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise MlflowError("INVALID_PARAMETER_VALUE", "Parameter 'tags' must be a list of {key, value} objects.")
    return {_text("tags.key", t.get("key")): _text("tags.value", t.get("value"), required=False) for t in value}


# The facts as their tags' keys (``warden.team`` and ``warden.artifact_sha256`` are also what
# each create reads as input).
MODEL_FACTS = frozenset(RESERVED + key for key in MODEL_FACT_KEYS)
VERSION_FACTS = frozenset(RESERVED + key for key in VERSION_FACT_KEYS)


def _user_tags(tags: dict[str, str], facts: frozenset[str]) -> dict[str, str]:
    """The tags a create stores. Warden's facts about such an object are taken back as they are
    given (MLflow's ``copy_model_version`` sends a version's tags, facts included, to the new
    one) and otherwise ignored: they are Warden's to state. Any other ``warden.`` key is refused."""
    for key in tags:
        if key.startswith(RESERVED) and key not in facts:
            raise ValidationFailed.on(
                f"tags.{key}",
                f"keys starting with {RESERVED!r} are Warden's; here it reads only {', '.join(sorted(facts))}",
            )
    return {key: value for key, value in tags.items() if not key.startswith(RESERVED)}


def _team(actor: Any, tags: dict[str, str]) -> Any:
    """The owning team: the ``warden.team`` tag, or the caller's team if they have exactly one
    (their teams as read with their token, ``common.roles.team_names``)."""
    teams = [Group(pk=pk, name=name) for pk, name in sorted(team_names(actor).items(), key=lambda team: team[1])]
    named = tags.get(TEAM_TAG)
    if named:
        for team in teams:
            if team.name == named:
                return team
        raise ValidationFailed.on(f"tags.{TEAM_TAG}", f"you are not a member of a team named {named!r}")
    if len(teams) == 1:
        return teams[0]
    if not teams:
        raise PermissionDenied("Only members of a team register models; you belong to no team.")
    names = ", ".join(team.name for team in teams)
    raise ValidationFailed.on(f"tags.{TEAM_TAG}", f"you belong to several teams ({names}): name the owning team")


# --- registered models -------------------------------------------------------------------


def create_registered_model(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    name = _text("name", p.get("name"))
    tags = _tag_list(p.get("tags"))
    try:
        model = services.model_register(
            actor=actor,
            name=name,
            team=_team(actor, tags),
            description=_text("description", p.get("description"), required=False),
            tags=_user_tags(tags, MODEL_FACTS),
        )
    except (PermissionDenied, ValidationFailed):
        # A taken name is the answer, as from MLflow's server, whatever else is wrong:
        # ``mlflow.register_model`` goes on to create the version on it, and may be used by one
        # who may not register models, or who is in several teams and names none. Only of a
        # model the caller may see: of any other, it would tell who may register nothing that
        # the name is taken.
        if selectors.model_named(actor, name) is not None:
            raise _taken(name) from None
        raise
    except Duplicate:  # a model the caller may not see: the same words as for one they may
        raise _taken(name) from None
    return {"registered_model": model_json(model, [], [])}


def _taken(name: str) -> MlflowError:
    return MlflowError("RESOURCE_ALREADY_EXISTS", f"Registered Model (name={name}) already exists.")


def get_registered_model(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    return {"registered_model": _model_out(_model(actor, p.get("name")))}


def rename_registered_model(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    model = _model(actor, p.get("name"))
    new_name = _text("new_name", p.get("new_name"))
    try:
        model = services.model_rename(actor=actor, model=model, new_name=new_name)
    except Duplicate:
        raise _taken(new_name) from None
    return {"registered_model": _model_out(model)}


def update_registered_model(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    model = _model(actor, p.get("name"))
    if "description" in p:
        model = services.model_update(
            actor=actor, model=model, changes={"description": _text("description", p["description"], required=False)}
        )
    return {"registered_model": _model_out(model)}


def delete_registered_model(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    model = _model(actor, p.get("name"))
    raise MlflowError(
        "PERMISSION_DENIED",
        f"Warden does not delete registered models: model {model.name}'s versions, approvals and audit trail "
        f"must stay answerable. Retire it by decommissioning: POST /api/v1/models/{model.name}/decommission/ "
        "with a rationale, which a risk officer approves.",
        403,
    )


def search_registered_models(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    queryset = search.filtered(
        policies.visible_models(actor).select_related("owner", "team").only(*_MODEL_FIELDS),
        search.parse(p.get("filter"), keys=MODEL_KEYS),
        columns=MODEL_COLUMNS,
    )
    order = search.ordering(p.get("order_by") or [], MODEL_ORDER, ["name ASC"], natural=["name ASC"])
    limit, offset = search.max_results(p.get("max_results"), 100, 1000), search.page_offset(p.get("page_token"))
    models = list(queryset.order_by(*order)[offset : offset + limit + 1])
    page, more = models[:limit], len(models) > limit
    ids = [model.pk for model in page]
    latest, aliases = _latest(page), _aliases_of_models(ids)
    out: dict[str, Any] = {
        "registered_models": [model_json(m, latest.get(m.pk, []), aliases.get(m.pk, [])) for m in page]
    }
    if more:
        out["next_page_token"] = search.page_token(offset + limit)
    return out


def get_latest_versions(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    model = _model(actor, p.get("name"))
    asked = p.get("stages") or []
    if isinstance(asked, str):
        asked = [asked]
    if not isinstance(asked, list) or not all(isinstance(stage, str) for stage in asked):
        raise MlflowError("INVALID_PARAMETER_VALUE", "Parameter 'stages' must be a list of stage names.")
    by_name = {stage.lower(): stage for stage in STAGES}  # MLflow reads stage names in any case
    unknown = [stage for stage in asked if stage.lower() not in by_name]
    if unknown:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid stage {unknown[0]!r}: use one of {', '.join(STAGES)}.")
    versions = _latest([model], [by_name[stage.lower()] for stage in asked]).get(model.pk, [])
    aliases = _aliases_of_versions([v.pk for v in versions])
    return {"model_versions": [version_json(v, aliases.get(v.pk, [])) for v in versions]}


def set_registered_model_tag(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    model = _model(actor, p.get("name"))
    key = _text("key", p.get("key"))
    services.model_update(actor=actor, model=model, set_tags={key: _text("value", p.get("value"), required=False)})
    return {}


# Deleting a tag or an alias that is not there answers as MLflow's server does: done, nothing
# changed (and so nothing audited).


def delete_registered_model_tag(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    model, key = _model(actor, p.get("name")), _text("key", p.get("key"))
    if key in model.tags:
        services.model_update(actor=actor, model=model, delete_tags=[key], missing_ok=True)
    return {}


def set_alias(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    model, number = _model(actor, p.get("name")), _number(p.get("version"))
    try:
        services.alias_set(actor=actor, model=model, name=_text("alias", p.get("alias")), number=number)
    except ValidationFailed as exc:
        if "version" not in exc.fields:
            raise
        raise MlflowError(
            "RESOURCE_DOES_NOT_EXIST", f"Model Version (name={model.name}, version={number}) not found", 404
        ) from None
    return {}


def get_alias(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    """``latest``, in any case, is the highest version, as in MLflow (no alias takes that name)."""
    model, alias = _model(actor, p.get("name")), _text("alias", p.get("alias"))
    sql, params = (_HIGHEST_SQL, [model.pk]) if alias.lower() == "latest" else (_BY_ALIAS_SQL, [model.pk, alias])
    found = _shown_versions(sql, params, {model.pk: model})
    if not found:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"Registered model alias {alias} not found.", 404)
    policies.can_resolve_alias(model, alias, found[0]).ensure()
    return {"model_version": _version_out(found[0])}


def delete_alias(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    model = _model(actor, p.get("name"))
    alias_name = _text("alias", p.get("alias"))
    alias = Alias.objects.filter(model=model, name=alias_name).first()
    if alias is not None:
        with contextlib.suppress(NotFound):  # deleted meanwhile: as if it had not been there
            services.alias_delete(actor=actor, alias=alias)
    return {}


# --- model versions ----------------------------------------------------------------------


def create_model_version(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    name = _text("name", p.get("name"))
    tags = _tag_list(p.get("tags"))
    try:
        version = services.version_create(
            actor=actor,
            model=name,  # read and locked by the service, in one statement
            artifact_uri=_text("source", p.get("source")),
            artifact_sha256=tags.get(DIGEST_TAG, ""),
            source_run_id=_text("run_id", p.get("run_id"), required=False),
            source_pipeline_url=_text("run_link", p.get("run_link"), required=False),
            description=_text("description", p.get("description"), required=False),
            tags=_user_tags(tags, VERSION_FACTS),
        )
    except NotFound:
        raise _no_model(name) from None
    version.created_by = actor
    return {"model_version": version_json(version, [])}


def get_model_version(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    return {"model_version": _version_out(_version(actor, p.get("name"), p.get("version")))}


def update_model_version(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    version = _version(actor, p.get("name"), p.get("version"))
    if "description" in p:
        services.version_update(
            actor=actor, version=version, description=_text("description", p["description"], required=False)
        )
        version = _version(actor, version.model.name, version.number)
    return {"model_version": _version_out(version)}


def delete_model_version(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    version = _version(actor, p.get("name"), p.get("version"))
    name, number = version.model.name, version.number
    raise MlflowError(
        "PERMISSION_DENIED",
        f"Warden does not delete model versions: version {number} of {name} is {version.state}, and every "
        "version stays in the registry and its audit trail. A draft can simply be left unsubmitted; a version "
        f"in use is retired by decommissioning: POST /api/v1/models/{name}/versions/{number}/decommission/.",
        403,
    )


def search_model_versions(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    clauses = search.parse(p.get("filter"), keys=VERSION_KEYS)
    default = ["last_updated_timestamp DESC", "name ASC", "version_number DESC"]
    order = search.ordering(
        p.get("order_by") or [], VERSION_ORDER, default, natural=["name ASC", "version_number DESC"]
    )
    # Up to MLflow's default of 10,000 in a page: MlflowClient.search_model_versions reads one page.
    limit = search.max_results(p.get("max_results"), 10_000, 200_000, page_limit=10_000)
    offset = search.page_offset(p.get("page_token"))
    if [(c.key, c.op) for c in clauses] == [("name", "=")] and not p.get("order_by"):
        model = selectors.model_named(actor, clauses[0].value)
        versions = (
            [] if model is None else _shown_versions(_VERSIONS_OF, [model.pk, limit + 1, offset], {model.pk: model})
        )
    else:
        queryset = search.filtered(_versions(actor), clauses, columns=VERSION_COLUMNS)
        versions = list(queryset.order_by(*order)[offset : offset + limit + 1])
    page, more = versions[:limit], len(versions) > limit
    aliases = _aliases_of_versions([v.pk for v in page])
    out: dict[str, Any] = {"model_versions": [version_json(v, aliases.get(v.pk, [])) for v in page]}
    if more:
        out["next_page_token"] = search.page_token(offset + limit)
    return out


def get_download_uri(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    return {"artifact_uri": _version(actor, p.get("name"), p.get("version")).artifact_uri}


def set_model_version_tag(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    version = _version(actor, p.get("name"), p.get("version"))
    key = _text("key", p.get("key"))
    services.version_update(
        actor=actor, version=version, set_tags={key: _text("value", p.get("value"), required=False)}
    )
    return {}


def delete_model_version_tag(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    version, key = _version(actor, p.get("name"), p.get("version")), _text("key", p.get("key"))
    if key in version.tags:
        services.version_update(actor=actor, version=version, delete_tags=[key], missing_ok=True)
    return {}


def transition_stage(actor: Any, p: dict[str, Any]) -> dict[str, Any]:
    version = _version(actor, p.get("name"), p.get("version"))
    name, number = version.model.name, version.number
    raise MlflowError(
        "INVALID_PARAMETER_VALUE",
        f"Warden does not move versions between MLflow stages (which MLflow itself has deprecated): version "
        f"{number} of {name} is {version.state}. It is approved through Warden's workflow "
        f"(POST /api/v1/models/{name}/versions/{number}/submit/), deployed through the gate, and retired by "
        f"deprecating (POST /api/v1/models/{name}/versions/{number}/deprecate/) and decommissioning; point an "
        "alias such as 'production' at it once the gate allows.",
    )


# --- dispatch ----------------------------------------------------------------------------

Handler = Callable[[Any, dict[str, Any]], dict[str, Any]]
ENDPOINTS: dict[tuple[str, str], Handler] = {
    ("registered-models/create", "POST"): create_registered_model,
    ("registered-models/get", "GET"): get_registered_model,
    ("registered-models/rename", "POST"): rename_registered_model,
    ("registered-models/update", "PATCH"): update_registered_model,
    ("registered-models/delete", "DELETE"): delete_registered_model,
    ("registered-models/search", "GET"): search_registered_models,
    ("registered-models/get-latest-versions", "POST"): get_latest_versions,
    ("registered-models/get-latest-versions", "GET"): get_latest_versions,
    ("registered-models/set-tag", "POST"): set_registered_model_tag,
    ("registered-models/delete-tag", "DELETE"): delete_registered_model_tag,
    ("registered-models/alias", "POST"): set_alias,
    ("registered-models/alias", "GET"): get_alias,
    ("registered-models/alias", "DELETE"): delete_alias,
    ("model-versions/create", "POST"): create_model_version,
    ("model-versions/get", "GET"): get_model_version,
    ("model-versions/update", "PATCH"): update_model_version,
    ("model-versions/delete", "DELETE"): delete_model_version,
    ("model-versions/search", "GET"): search_model_versions,
    ("model-versions/get-download-uri", "GET"): get_download_uri,
    ("model-versions/set-tag", "POST"): set_model_version_tag,
    ("model-versions/delete-tag", "DELETE"): delete_model_version_tag,
    ("model-versions/transition-stage", "POST"): transition_stage,
}
# A few fields are repeated in a query string (``order_by=a&order_by=b``).
LIST_PARAMS = frozenset({"order_by", "stages"})

_AUTHENTICATORS = (BearerTokenAuthentication(), BasicTokenAuthentication())
_DOMAIN_CODES: dict[type[DomainError], tuple[str, int]] = {
    ValidationFailed: ("INVALID_PARAMETER_VALUE", 400),
    PermissionDenied: ("PERMISSION_DENIED", 403),
    NotFound: ("RESOURCE_DOES_NOT_EXIST", 404),
    Unavailable: ("TEMPORARILY_UNAVAILABLE", 503),
}


def _error(code: str, message: str, status: int) -> JsonResponse:
    response = JsonResponse({"error_code": code, "message": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="warden", Basic realm="warden"'
    return response


def _actor(request: HttpRequest) -> Any:
    for authenticator in _AUTHENTICATORS:
        try:
            found = authenticator.authenticate(request)  # type: ignore[arg-type]
        except drf_exceptions.AuthenticationFailed as exc:
            raise MlflowError("UNAUTHENTICATED", str(exc.detail), 401) from None
        if found is not None:
            return found[0]
    raise MlflowError(
        "UNAUTHENTICATED",
        "Authenticate with a Warden API token (MLFLOW_TRACKING_TOKEN, sent as 'Authorization: Bearer'), "
        "or basic auth (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, where the password may be a token).",
        401,
    )


def _params(request: HttpRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        key: request.GET.getlist(key) if key in LIST_PARAMS else request.GET.get(key) for key in request.GET
    }
    if request.method != "GET" and request.content_type != "application/json":
        # What MLflow's client always sends, and what a page on another site cannot make a browser
        # send without asking first: a form posted with a user's remembered credentials is refused.
        raise MlflowError(
            "MALFORMED_REQUEST", f"A {request.method} takes a JSON body, sent with Content-Type: application/json."
        )
    if request.method != "GET" and request.body:
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError):
            raise MlflowError("MALFORMED_REQUEST", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise MlflowError("MALFORMED_REQUEST", "The request body must be a JSON object.")
        field = validation.lone_surrogate(request.body, body)
        if field is not None:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Parameter '{field}' {validation.NOT_UNICODE}.")
        params.update(body)
    return params


def _domain_error(exc: DomainError) -> tuple[str, int]:
    if isinstance(exc, Conflict):
        if exc.code == "gate_refused":
            return "PERMISSION_DENIED", 403
        return ("RESOURCE_ALREADY_EXISTS", 400) if isinstance(exc, Duplicate) else ("INVALID_STATE", 400)
    for kind, answer in _DOMAIN_CODES.items():
        if isinstance(exc, kind):
            return answer
    return "INVALID_PARAMETER_VALUE", 400


@csrf_exempt
def endpoint(request: HttpRequest, path: str) -> HttpResponse:
    """One entry for every MLflow registry call: authenticate, read the parameters, run the
    handler, and answer in MLflow's shape whatever happens."""
    handler = ENDPOINTS.get((path, request.method or ""))
    try:
        if handler is None:
            known = sorted(method for (p, method) in ENDPOINTS if p == path)
            if known:
                raise MlflowError("ENDPOINT_NOT_FOUND", f"{path} takes {', '.join(known)}, not {request.method}.", 405)
            raise MlflowError("ENDPOINT_NOT_FOUND", f"No MLflow registry endpoint {path}.", 404)
        actor = _actor(request)
        return JsonResponse(handler(actor, _params(request)))
    except MlflowError as exc:
        return _error(exc.code, exc.message, exc.status)
    except (TooManyFieldsSent, RequestDataTooBig) as exc:  # past Django's limits on a request
        return _error("MALFORMED_REQUEST", str(exc), 400)
    except OperationalError as exc:
        if not to_send_again(exc):
            raise
        log.warning("%s %s: %s", request.method, request.path, exc)
        # Nothing of it was saved. MLflow's client sends a write that is not safe to repeat (a
        # create, a rename) again only on 408 or 429, the answers that say it was not processed.
        return _error("TEMPORARILY_UNAVAILABLE", TRY_AGAIN, 429)
    except DomainError as exc:
        code, status = _domain_error(exc)
        return _error(code, exc.message, status)
