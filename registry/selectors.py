"""Reads that involve rules: always narrowed to what the user may see, and shaped so that
a page costs the same number of queries whatever its size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Model, QuerySet
from django.db.models.expressions import RawSQL

from common import statements
from common.errors import NotFound
from common.rows import JoinedRow, columns, rows
from registry import policies
from registry.models import (
    Alias,
    ApiToken,
    Dataset,
    DatasetUsage,
    DatasetVersion,
    ModelVersion,
    RegisteredModel,
    VersionParent,
)

MAX_LINEAGE_DEPTH = 50
MAX_LINEAGE_NODES = 1000  # a lineage graph's versions at most, the nearest the version asked about


def _usages() -> QuerySet[DatasetUsage]:
    return DatasetUsage.objects.select_related("dataset_version__dataset")


def models_for(user: Any) -> QuerySet[RegisteredModel]:
    return policies.visible_models(user).select_related("owner", "team")


_MODELS_BY_NAME = JoinedRow(RegisteredModel, ("owner", "team"), ("name",))


def model_named(
    user: Any, name: str, *, lock: bool = False, read: JoinedRow[RegisteredModel] = _MODELS_BY_NAME
) -> RegisteredModel | None:
    """The model named ``name`` with its owner and team, if the user may see it. Checked with
    ``can_view_model`` once fetched, which needs no query for an unrestricted model; read on most
    requests, so through ``common.rows``. ``lock``: also lock the model's row, in the same
    statement, for a write in the transaction around it (``services``). ``read``: a statement
    that reads the model by name and something more with it (``services.version_create``)."""
    model = read.get(name, lock=lock)
    return model if model is not None and policies.can_view_model(user, model) else None


def model_get(
    user: Any, name: str, *, lock: bool = False, read: JoinedRow[RegisteredModel] = _MODELS_BY_NAME
) -> RegisteredModel:
    """Fetch and authorise in one call: a model the user may not see does not exist for them."""
    model = model_named(user, name, lock=lock, read=read)
    if model is None:
        raise NotFound(f"No model named {name!r}.")
    return model


def versions_for(user: Any) -> QuerySet[ModelVersion]:
    """Versions of the models the user may see. Those an answer shows go through
    ``with_lineage`` once fetched, for their parents and datasets."""
    return ModelVersion.objects.filter(policies.model_visibility(user, "model__")).select_related("model", "created_by")


def versions_of(model: RegisteredModel) -> QuerySet[ModelVersion]:
    """The versions of a model the user has been let see (``model_get``): no visibility filter,
    which would read the user's groups and grants."""
    return ModelVersion.objects.filter(model=model).select_related("model", "created_by")


def newest_versions(model: RegisteredModel, limit: int) -> list[ModelVersion]:
    """``versions_of(model).order_by("-number")[:limit]`` in one prepared statement: the first
    page of a model's versions, asked for on most lists (``common.api.FirstPage``)."""
    return versions_read(_NEWEST_VERSIONS, [model.pk, limit], {model.pk: model})


def versions_read(
    sql: str, params: list[Any], models: dict[int, RegisteredModel], *, fields: Sequence[str] | None = None
) -> list[ModelVersion]:
    """Versions from ``sql``, a plain statement (``common.rows.rows``) that selects
    ``columns(ModelVersion, …, fields=fields)`` and then the author's username, with their model
    (one of ``models``, by id) and their author set. The author is read as their username, all
    that an answer shows of them."""
    found = rows(ModelVersion, sql, params, fields=fields, extra=("author",))
    for version in found:
        version.model = models[version.model_id]
        author = [version.created_by_id, version.author]  # type: ignore[attr-defined]
        version.created_by = _USER.from_db(connection.alias, ["id", "username"], author)
    return found


_USER: Any = ModelVersion._meta.get_field("created_by").related_model
_NEWEST_VERSIONS = (
    f"SELECT {columns(ModelVersion, 'v')}, u.username FROM {ModelVersion._meta.db_table} v"
    f" JOIN {_USER._meta.db_table} u ON u.id = v.created_by_id WHERE v.model_id = %s ORDER BY v.number DESC LIMIT %s"
)


def with_lineage(user: Any, versions: list[ModelVersion]) -> list[ModelVersion]:
    """Give each version its ``visible_parent_edges`` (a parent from a model the user may not
    see is left out; lineage endpoints count such versions in ``hidden``) and
    ``dataset_usage_list``. Read only for versions that have any: most have none, and a prefetch
    is a query (with the user's visibility to build) whether it finds rows or not. Which have any
    is known for a version read by key (``has_parents``, ``has_datasets``, from ``common.rows``)
    and asked for the others in one plain statement: two ``EXISTS`` annotations on a list took
    the ORM longer to build than the database to answer them."""
    unflagged = [v.pk for v in versions if not hasattr(v, "has_parents")]
    if unflagged:
        parents, datasets = _lineage_flags(unflagged)
        for version in versions:
            if not hasattr(version, "has_parents"):
                version.has_parents, version.has_datasets = version.pk in parents, version.pk in datasets  # type: ignore[attr-defined]
    edges: dict[int, list[VersionParent]] = {}
    usages: dict[int, list[DatasetUsage]] = {}
    with_parents = [v.pk for v in versions if v.has_parents]  # type: ignore[attr-defined]
    with_datasets = [v.pk for v in versions if v.has_datasets]  # type: ignore[attr-defined]
    if with_parents:
        for edge in VersionParent.objects.filter(child_id__in=with_parents).select_related("parent__model"):
            if policies.can_view_model(user, edge.parent.model):
                edges.setdefault(edge.child_id, []).append(edge)
    if with_datasets:
        for usage in _usages().filter(version_id__in=with_datasets):
            usages.setdefault(usage.version_id, []).append(usage)
    for version in versions:
        version.visible_parent_edges = edges.get(version.pk, [])  # type: ignore[attr-defined]
        version.dataset_usage_list = usages.get(version.pk, [])  # type: ignore[attr-defined]
    return versions


def _lineage_flags(version_ids: list[int]) -> tuple[set[int], set[int]]:
    """Which of these versions have parents, and which have datasets."""
    where, params = statements.any_of(connection, version_ids)
    parent = VersionParent._meta.get_field("child").column  # type: ignore[union-attr]
    used_by = DatasetUsage._meta.get_field("version").column  # type: ignore[union-attr]
    sql = (
        f"SELECT DISTINCT {parent}, 1 FROM {VersionParent._meta.db_table} WHERE {parent} {where}"
        f" UNION ALL SELECT DISTINCT {used_by}, 2 FROM {DatasetUsage._meta.db_table} WHERE {used_by} {where}"
    )
    found: tuple[set[int], set[int]] = (set(), set())
    with connection.cursor() as cursor:
        statements.execute(cursor, sql, params * 2)
        for pk, kind in cursor.fetchall():
            found[kind - 1].add(pk)
    return found


_LINEAGE_FLAGS: dict[str, tuple[type[Model], str]] = {
    "has_parents": (VersionParent, "child"),
    "has_datasets": (DatasetUsage, "version"),
}
_VERSIONS_BY_PK = JoinedRow(ModelVersion, ("model", "created_by"), ("pk",), flags=_LINEAGE_FLAGS)
_VERSIONS_BY_NUMBER = JoinedRow(ModelVersion, ("model", "created_by"), ("model__name", "number"), flags=_LINEAGE_FLAGS)


def version_named(model_name: str, number: int) -> ModelVersion | None:
    """The version, with its model and author, whoever may see it: callers check."""
    return _VERSIONS_BY_NUMBER.get(model_name, number)


def version_get(
    user: Any, *, pk: int | None = None, model_name: str | None = None, number: int | None = None
) -> ModelVersion:
    """One version, with its lineage. Fetched first (a point read, through
    ``common.rows``) and checked with ``can_view_model``, which needs no query for an
    unrestricted model, where filtering by visibility would read the user's groups and grants."""
    if pk is not None:
        version = _VERSIONS_BY_PK.get(pk)
    else:
        assert model_name is not None and number is not None, "give pk, or model_name and number"
        version = version_named(model_name, number)
    if version is None or not policies.can_view_model(user, version.model):
        raise NotFound("No such model version." if pk is not None else f"Model {model_name!r} has no version {number}.")
    return with_lineage(user, [version])[0]


def datasets_for(user: Any) -> QuerySet[Dataset]:
    return policies.visible_datasets(user, Dataset.objects.select_related("team", "created_by"))


def dataset_get(user: Any, name: str) -> Dataset:
    dataset = datasets_for(user).filter(name=name).first()
    if dataset is None:
        raise NotFound(f"No dataset named {name!r}.")
    return dataset


def dataset_versions_for(user: Any) -> QuerySet[DatasetVersion]:
    visible = policies.visible_datasets(user, Dataset.objects.all())
    return DatasetVersion.objects.filter(dataset__in=visible).select_related("dataset", "created_by")


def dataset_version_get(user: Any, pk: int) -> DatasetVersion:
    dataset_version = dataset_versions_for(user).filter(pk=pk).first()
    if dataset_version is None:
        raise NotFound("No such dataset version.")
    return dataset_version


def aliases_for(user: Any, model: RegisteredModel) -> QuerySet[Alias]:
    return Alias.objects.filter(model=model).select_related("model", "version", "updated_by")


_ALIASES_BY_NAME = JoinedRow(Alias, ("version", "updated_by"), ("model", "name"))


def alias_named(model: RegisteredModel, name: str) -> Alias | None:
    """Alias ``name`` of ``model`` (which the caller has let the user see: ``model_get``), with
    its version and who moved it last; read on every alias lookup, so through ``common.rows``."""
    alias = _ALIASES_BY_NAME.get(model.pk, name)
    if alias is not None:
        alias.model = model
    return alias


def tokens_for(user: Any) -> QuerySet[ApiToken]:
    """The tokens the user may see and revoke: their own; everyone's for a risk officer or a
    superuser (incident response: revoking a leaked token)."""
    return policies.visible_tokens(user, ApiToken.objects.select_related("user"))


# --- lineage -----------------------------------------------------------------------------
# Each walk is one recursive query (PostgreSQL and SQLite alike). UNION drops rows already
# seen, so a walk visits each version once; depth-limited walks carry the depth and keep the
# shortest one.


def _walk_sql(direction: str) -> str:
    edges = VersionParent._meta.db_table
    src, dst = ("child_id", "parent_id") if direction == "upstream" else ("parent_id", "child_id")
    return f"""
        WITH RECURSIVE walk(id, depth) AS (
            SELECT {dst}, 1 FROM {edges} WHERE {src} = %s
            UNION
            SELECT e.{dst}, w.depth + 1 FROM {edges} e JOIN walk w ON e.{src} = w.id WHERE w.depth < %s
        )
        SELECT id, MIN(depth) FROM walk GROUP BY id
    """


def _walk(version_id: int, direction: str, depth: int) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(_walk_sql(direction), [version_id, depth])
        return dict(cursor.fetchall())


def ancestor_ids(version: ModelVersion) -> set[int]:
    """Every version ``version`` descends from, at any depth. A walk of its own, without the
    depth: with it, ``UNION`` keeps a version once per path length that reaches it, which grows
    with the square of a lineage where versions share ancestors."""
    edges = VersionParent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE walk(id) AS (SELECT parent_id FROM {edges} WHERE child_id = %s"
            f" UNION SELECT e.parent_id FROM {edges} e JOIN walk w ON e.child_id = w.id) SELECT id FROM walk",
            [version.pk],
        )
        return {row[0] for row in cursor.fetchall()}


@dataclass
class LineageGraph:
    root: ModelVersion
    versions: list[ModelVersion]
    depth_of: dict[int, int]
    edges: list[VersionParent]
    datasets: list[DatasetUsage]
    hidden: int = 0
    directions: list[str] = field(default_factory=list)
    left_out: int = 0


def lineage(user: Any, version: ModelVersion, *, direction: str = "both", depth: int = 3) -> LineageGraph:
    """The versions ``version`` comes from (upstream) and that come from it (downstream), to
    ``depth`` steps, with the edges between them and the datasets each was trained on.
    Versions of models the user may not see are left out and counted in ``hidden``; beyond
    ``MAX_LINEAGE_NODES`` versions, the farthest are left out and counted in ``left_out``."""
    directions = ["upstream", "downstream"] if direction == "both" else [direction]
    depth_of: dict[int, int] = {version.pk: 0}
    for walk_direction in directions:
        sign = -1 if walk_direction == "upstream" else 1
        for pk, steps in _walk(version.pk, walk_direction, depth).items():
            depth_of.setdefault(pk, sign * steps)
    left_out = max(0, len(depth_of) - MAX_LINEAGE_NODES)
    if left_out:
        nearest = sorted(depth_of, key=lambda pk: (abs(depth_of[pk]), pk))[:MAX_LINEAGE_NODES]
        depth_of = {pk: depth_of[pk] for pk in nearest}
    visible = list(versions_for(user).filter(pk__in=depth_of.keys()).order_by("model__name", "number"))
    ids = {v.pk for v in visible}
    edges = list(VersionParent.objects.filter(child_id__in=ids, parent_id__in=ids).order_by("child_id", "parent_id"))
    datasets = list(
        DatasetUsage.objects.filter(version_id__in=ids)
        .select_related("dataset_version__dataset")
        .order_by("version_id", "dataset_version_id", "role")
    )
    return LineageGraph(
        root=version,
        versions=visible,
        depth_of={pk: d for pk, d in depth_of.items() if pk in ids},
        edges=edges,
        datasets=datasets,
        hidden=len(depth_of) - len(ids),
        directions=directions,
        left_out=left_out,
    )


def descendant_ids_sql(of: str) -> str:
    """Every version descending, at any depth, from one version (``of="version"``, the
    parameter its id) or from any version of a model (``of="model"``, the model's id)."""
    edges, versions = VersionParent._meta.db_table, ModelVersion._meta.db_table
    start = (
        f"SELECT child_id FROM {edges} WHERE parent_id = %s"
        if of == "version"
        else f"SELECT e.child_id FROM {edges} e JOIN {versions} v ON v.id = e.parent_id WHERE v.model_id = %s"
    )
    return (
        f"WITH RECURSIVE walk(id) AS ({start} UNION SELECT e.child_id FROM {edges} e JOIN walk w ON e.parent_id = w.id)"
        " SELECT id FROM walk"
    )


def impact_ids_sql() -> str:
    usages = DatasetUsage._meta.db_table
    edges = VersionParent._meta.db_table
    return f"""
        WITH RECURSIVE impacted(id) AS (
            SELECT version_id FROM {usages} WHERE dataset_version_id = %s
            UNION
            SELECT e.child_id FROM {edges} e JOIN impacted i ON e.parent_id = i.id
        )
        SELECT id FROM impacted
    """


def impacted_versions(user: Any, dataset_version: DatasetVersion) -> tuple[QuerySet[ModelVersion], int, int]:
    """Every model version that used ``dataset_version`` directly or through an ancestor, as
    one query; how many of them the user may see, and how many not."""
    impacted = ModelVersion.objects.filter(pk__in=RawSQL(impact_ids_sql(), [dataset_version.pk]))
    visible = versions_for(user).filter(pk__in=impacted.values("pk")).order_by("model__name", "number")
    seen = visible.count()
    return visible, seen, impacted.count() - seen
