"""Every write to the registry. Each function checks the policy, validates, saves, and
records its audit event in the same transaction; the API, the admin and the commands call
these and nothing else."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Model
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from audit.services import audit_record
from common import memo, validation
from common.errors import Conflict, Duplicate, NotFound, PermissionDenied, ValidationFailed
from common.roles import is_team
from common.rows import Insert, JoinedRow, NumberedInsert, Update, columns, rows
from notifications import outbox
from notifications.models import Event
from registry import hooks, policies, selectors
from registry.models import (
    Alias,
    ApiToken,
    Dataset,
    DatasetRole,
    DatasetUsage,
    DatasetVersion,
    ModelStatus,
    ModelVersion,
    ParentRelation,
    RegisteredModel,
    RegisteredModelGroupObjectPermission,
    RegisteredModelUserObjectPermission,
    RiskTier,
    VersionState,
)

MODEL_TEXT_FIELDS = (
    "display_name",
    "description",
    "business_purpose",
    "intended_use",
    "limitations",
)
MODEL_CONTROL_FIELDS = ("owner", "team", "restricted")
# A version's content is frozen at creation; these are all that may change afterwards.
VERSION_EDITABLE_FIELDS = frozenset({"description", "tags"})
ALIAS_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}\Z")
RESERVED_ALIAS_RE = re.compile(r"^(latest|v\d+)\Z", re.IGNORECASE)
TOKEN_PREFIX = "wdn_"
LINEAGE_LOCK = "registry.lineage"


# --- helpers -----------------------------------------------------------------------------


def _snapshot(obj: Model, fields: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, Model):
            value = str(value)
        out[name] = value
    return out


def _clean(obj: Model, *, exclude: Sequence[str] = ()) -> None:
    """Run the model's field validators; report failures as one 400 naming each field. Related
    objects are not checked: the services hand them in loaded, and checking would cost a query
    each."""
    related = [field.name for field in obj._meta.concrete_fields if field.is_relation]
    try:
        obj.full_clean(exclude=[*exclude, *related], validate_unique=False, validate_constraints=False)
    except DjangoValidationError as exc:
        fields = {name: [str(m) for m in messages] for name, messages in exc.message_dict.items()}
        message = "; ".join(f"{name}: {' '.join(rules)}" for name, rules in fields.items())
        raise ValidationFailed(message, fields=fields) from None


def _merge_tags(
    subject: str,
    current: dict[str, str],
    tags: dict[str, str] | None,
    set_tags: dict[str, str] | None,
    delete_tags: Iterable[str],
    missing_ok: bool,
) -> dict[str, str]:
    """The tags after the change. Deleting a tag that is not there is a NotFound, or nothing
    with ``missing_ok`` (a tag deleted by someone else meanwhile is gone as asked)."""
    merged = dict(validation.tags("tags", tags) if tags is not None else current)
    merged.update(validation.tags("tags", set_tags or {}))
    for key in delete_tags:
        validation.tag_key("tags", key)
        if merged.pop(key, None) is None and not missing_ok:
            raise NotFound(f"{subject} has no tag {key!r}.")
    return merged


def _ensure_team(field: str, group: Group) -> None:
    if not is_team(group.name):
        raise ValidationFailed.on(field, f"{group.name!r} is a role, not a team")


def _pg_lock(name: str) -> None:
    """Serialise a critical section across connections on PostgreSQL. SQLite needs no lock:
    its IMMEDIATE transactions already admit one writer at a time."""
    if connection.vendor == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


_MODEL_ROWS = JoinedRow(RegisteredModel, ("owner", "team"), ("pk",))
# An alias move reads the version asked for (without an alias id) and the version the alias points
# at now, if it exists (with the alias's id), in one statement of two index lookups.
_TARGET_AND_CURRENT = (
    f"SELECT {columns(ModelVersion, 'v')}, NULL FROM {ModelVersion._meta.db_table} v"
    " WHERE v.model_id = %s AND v.number = %s"
    f" UNION ALL SELECT {columns(ModelVersion, 'v')}, a.id FROM {Alias._meta.db_table} a"
    f" JOIN {ModelVersion._meta.db_table} v ON v.id = a.version_id WHERE a.model_id = %s AND a.name = %s"
)


def _new_version_id(connection: Any) -> str:
    """A new version's id, taken from its sequence with the model's lock on PostgreSQL, so that
    its insert needs no answer; elsewhere the insert gives it."""
    if connection.vendor != "postgresql":
        return "NULL"
    return f"nextval(pg_get_serial_sequence('{ModelVersion._meta.db_table}', 'id'))"


# A new version's model (by name or id), read and locked with an id for the version; the number
# is the model's count plus one. The version's insert, which also counts it on the model and
# marks the model updated (MLflow's last_updated_timestamp), then travels with the audit event
# and the COMMIT (``common.rows.NumberedInsert``).
_FOR_NEW_VERSION = {
    key: JoinedRow(RegisteredModel, ("owner", "team"), (key,), extra={"new_version_id": _new_version_id})
    for key in ("name", "pk")
}
_NEW_VERSIONS = NumberedInsert(
    ModelVersion, "number", within="model", count="last_number", touch=("updated_at", "created_at")
)
# A model is registered in one statement that also refuses a name already taken.
_NEW_MODELS = Insert(RegisteredModel, unique="name")
_ALIAS_MOVES = Update(Alias, ("version", "updated_by", "updated_at"))


def _locked(pk: int, read: JoinedRow[RegisteredModel] = _MODEL_ROWS) -> RegisteredModel:
    """The model's row, with its owner and team, locked until the transaction ends: every change
    to a model or its versions and aliases takes this lock first. A plain statement
    (``common.rows``), as writes take it on every call; ``read`` one that reads more with it."""
    model = read.get(pk, lock=True)
    if model is None:
        raise RegisteredModel.DoesNotExist(f"no model {pk}")
    return model


# --- models ------------------------------------------------------------------------------


@transaction.atomic
def model_register(
    *,
    actor: Any,
    name: str,
    team: Group,
    owner: Any = None,
    display_name: str = "",
    description: str = "",
    business_purpose: str = "",
    intended_use: str = "",
    limitations: str = "",
    tags: dict[str, str] | None = None,
    restricted: bool = False,
) -> RegisteredModel:
    _ensure_team("team", team)
    policies.can_register_model(actor, team_id=team.pk).ensure()
    owner = owner or actor
    _ensure_owner(owner, team)
    model = RegisteredModel(
        name=name,
        team=team,
        owner=owner,
        display_name=display_name or name,
        description=description,
        business_purpose=business_purpose,
        intended_use=intended_use,
        limitations=limitations,
        tags=validation.tags("tags", tags or {}),
        restricted=restricted,
        created_by=actor,
    )
    _clean(model)
    if not _NEW_MODELS.save(model):
        raise Duplicate.on("name", f"a model named {name!r} already exists")
    audit_record(
        actor=actor,
        action="model.registered",
        obj=model,
        model_name=model.name,
        after=_snapshot(model, ("name", *MODEL_TEXT_FIELDS, *MODEL_CONTROL_FIELDS, "tags")),
    )
    return model


def _ensure_owner(owner: Any, team: Group) -> None:
    """Who may own a model: an active member of its team (notifications and sign-offs go to
    the owner)."""
    if not owner.is_active:
        raise ValidationFailed.on("owner", "the owner must be an active user")
    if not policies.is_team_member(owner, team.pk):
        raise ValidationFailed.on("owner", f"the owner must be a member of the owning team ({team.name})")


@transaction.atomic
def model_update(
    *,
    actor: Any,
    model: RegisteredModel,
    changes: dict[str, Any] | None = None,
    set_tags: dict[str, str] | None = None,
    delete_tags: Iterable[str] = (),
    missing_ok: bool = False,
) -> RegisteredModel:
    """Change a model's descriptive fields, tags, or (owner / risk officer) its owner, team
    and restriction. ``changes`` may hold MODEL_TEXT_FIELDS, MODEL_CONTROL_FIELDS and ``tags``."""
    changes = dict(changes or {})
    unknown = set(changes) - {*MODEL_TEXT_FIELDS, *MODEL_CONTROL_FIELDS, "tags"}
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationFailed.on(field, "cannot be changed here")
    model = _locked(model.pk)
    requested = set(changes) | ({"tags"} if set_tags or delete_tags else set())
    policies.can_update_model(actor, model, requested).ensure()
    changes["tags"] = _merge_tags(
        f"Model {model.name}", model.tags, changes.get("tags"), set_tags, delete_tags, missing_ok
    )
    changed = {name: value for name, value in changes.items() if getattr(model, name) != value}
    if not changed:
        return model
    if "team" in changed:
        _ensure_team("team", changed["team"])
        for check in hooks.TEAM_CHECKS:
            check(model=model, team=changed["team"])
    before = _snapshot(model, changed)
    for name, value in changed.items():
        setattr(model, name, value)
    if "owner" in changed or "team" in changed:
        _ensure_owner(model.owner, model.team)
    _clean(model)
    model.save(update_fields=[*changed, "updated_at"])
    audit_record(
        actor=actor,
        action="model.updated",
        obj=model,
        model_name=model.name,
        before=before,
        after=_snapshot(model, changed),
    )
    return model


@transaction.atomic
def model_rename(*, actor: Any, model: RegisteredModel, new_name: str) -> RegisteredModel:
    """Give a model a new name. Only while every version is a draft: once a version has been
    submitted, approvals, deployments and exports name the model, so the name is settled. The
    model's history follows the rename (``audit.selectors.model_history``). ``model`` is the
    model as the caller found it by name: renamed by someone else meanwhile, that name is gone."""
    asked = model.name
    model = _locked(model.pk)
    if model.name != asked:
        raise NotFound(f"No model {asked!r}: it was renamed to {model.name!r} a moment ago.")
    policies.can_rename_model(actor, model).ensure()
    if new_name == model.name:
        return model
    governed = model.versions.exclude(state=VersionState.DRAFT).order_by("number").first()
    if governed is not None:
        raise Conflict(
            f"Model {model.name} cannot be renamed: version {governed.number} is {governed.state}, and once a "
            "version has been submitted its approvals and audit trail name the model for good."
        )
    old_name = model.name
    model.name = new_name
    _clean(model)
    if RegisteredModel.objects.filter(name=new_name).exists():
        raise Duplicate.on("name", f"a model named {new_name!r} already exists")
    try:
        with transaction.atomic():
            model.save(update_fields=["name", "updated_at"])
    except IntegrityError:
        raise Duplicate.on("name", f"a model named {new_name!r} already exists") from None
    audit_record(
        actor=actor,
        action="model.renamed",
        obj=model,
        model_name=new_name,
        before={"name": old_name},
        after={"name": new_name},
    )
    return model


def model_set_risk_tier(
    *, actor: Any, model: RegisteredModel, tier: int, reason: str, **context: Any
) -> RegisteredModel:
    """Set the model's current risk tier. Governance calls this once its own rules have
    decided the tier (an assessment, an approved override); it is not an entry point of its own.
    ``context`` (the assessment or request behind the change) goes into the audit event."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("model_set_risk_tier runs inside the governance service's transaction")
    if tier not in RiskTier.values:
        raise ValidationFailed.on("risk_tier", "must be 1, 2, 3 or 4 (T1 critical … T4 low)")
    model = _locked(model.pk)
    before = {"risk_tier": model.risk_tier}
    if model.risk_tier == tier:
        return model
    model.risk_tier = tier
    model.save(update_fields=["risk_tier", "updated_at"])
    audit_record(
        actor=actor,
        action="model.risk_tier_changed",
        obj=model,
        model_name=model.name,
        before=before,
        after={"risk_tier": tier, **context},
        reason=reason,
    )
    return model


@transaction.atomic
def model_grant_access(*, actor: Any, model: RegisteredModel, user: Any = None, group: Group | None = None) -> None:
    """Let a user or group outside the owning team see a restricted model."""
    _change_access(actor=actor, model=model, user=user, group=group, grant=True)


@transaction.atomic
def model_revoke_access(*, actor: Any, model: RegisteredModel, user: Any = None, group: Group | None = None) -> None:
    _change_access(actor=actor, model=model, user=user, group=group, grant=False)


def _change_access(*, actor: Any, model: RegisteredModel, user: Any, group: Group | None, grant: bool) -> None:
    if (user is None) == (group is None):
        raise ValidationFailed.on("user", "give exactly one of user or group")
    model = _locked(model.pk)
    policies.can_grant_access(actor, model).ensure()
    grantee = user if user is not None else group
    grants = (
        RegisteredModelUserObjectPermission.objects.filter(user=user)
        if user is not None
        else RegisteredModelGroupObjectPermission.objects.filter(group=group)
    )
    if grants.filter(content_object=model, permission__codename=policies.VIEW_PERMISSION).exists() == grant:
        return  # nothing changes, so there is nothing to record
    (assign_perm if grant else remove_perm)(policies.VIEW_PERMISSION, grantee, model)
    memo.forget("granted")
    audit_record(
        actor=actor,
        action="model.access_granted" if grant else "model.access_revoked",
        obj=model,
        model_name=model.name,
        after={"user": user.get_username()} if user is not None else {"group": group.name},  # type: ignore[union-attr]
    )


# --- versions ----------------------------------------------------------------------------


@transaction.atomic
def version_create(
    *,
    actor: Any,
    model: RegisteredModel | str,
    artifact_uri: str,
    artifact_sha256: str = "",
    framework: str = "",
    source_run_id: str = "",
    source_code_commit: str = "",
    source_pipeline_url: str = "",
    parameters: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    signature: dict[str, Any] | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
    parents: Sequence[tuple[ModelVersion, str]] = (),
    datasets: Sequence[tuple[DatasetVersion, str]] = (),
) -> ModelVersion:
    """Register the next version of ``model``, with its lineage. Numbers are 1, 2, 3… with no
    gap: the model row is locked while the number is taken.

    The APIs give the model by name: it is then read and locked in one statement, and a model
    the actor may not see is NotFound, as ``selectors.model_get`` has it."""
    if parents:
        _pg_lock(LINEAGE_LOCK)  # before any row lock: the lineage lock is always taken first
    if isinstance(model, str):
        model = selectors.model_get(actor, model, lock=True, read=_FOR_NEW_VERSION["name"])
    else:
        model = _locked(model.pk, read=_FOR_NEW_VERSION["pk"])
    policies.can_add_version(actor, model).ensure()
    if model.status != ModelStatus.ACTIVE:
        raise Conflict(f"Model {model.name} is {model.status}: it takes no new versions.")
    digest = validation.sha256_digest("artifact_sha256", artifact_sha256) if artifact_sha256 else ""
    _check_metrics(metrics or {})
    version = ModelVersion(
        id=model.new_version_id,  # type: ignore[attr-defined]
        model=model,
        number=model.last_number + 1,
        artifact_uri=artifact_uri,
        artifact_sha256=digest,
        framework=framework,
        source_run_id=source_run_id,
        source_code_commit=source_code_commit,
        source_pipeline_url=source_pipeline_url,
        parameters=validation.json_document("parameters", parameters or {}),
        metrics=metrics or {},
        signature=validation.json_document("signature", signature or {}),
        description=description,
        tags=validation.tags("tags", tags or {}),
        created_by=actor,
    )
    _clean(version, exclude=["model", "number"])
    if digest:
        clash = model.versions.filter(artifact_sha256=digest).values_list("number", flat=True).first()
        if clash is not None:
            raise Duplicate.on("artifact_sha256", f"version {clash} of {model.name} already has this digest")
    _once([parent.pk for parent, _ in parents], "parents[{}].version_id")
    _once([(dataset_version.pk, role) for dataset_version, role in datasets], "datasets[{}].dataset_version_id")
    _NEW_VERSIONS.save(version)
    model.last_number = version.number
    for index, (parent, relation) in enumerate(parents):
        _add_parent(actor=actor, child=version, parent=parent, relation=relation, field=f"parents[{index}].version_id")
    for index, (dataset_version, role) in enumerate(datasets):
        field = f"datasets[{index}].dataset_version_id"
        _add_dataset(actor=actor, version=version, dataset_version=dataset_version, role=role, field=field)
    audit_record(
        actor=actor,
        action="version.created",
        obj=version,
        model_name=model.name,
        after={
            **_snapshot(version, ("number", "artifact_uri", "artifact_sha256", "framework", "state")),
            "parents": [{"version_id": p.pk, "relation": r} for p, r in parents],
            "datasets": [{"dataset_version_id": d.pk, "role": r} for d, r in datasets],
        },
    )
    return version


def _once(items: list[Any], field: str) -> None:
    """A request names each parent, and each dataset in each role, once (``field`` takes the index)."""
    seen: set[Any] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise ValidationFailed.on(field.format(index), "named twice in this request")
        seen.add(item)


def _check_metrics(metrics: Any) -> None:
    validation.json_document("metrics", metrics)
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationFailed.on(f"metrics.{name}", "metric values must be numbers")


@transaction.atomic
def version_update(
    *,
    actor: Any,
    version: ModelVersion,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    set_tags: dict[str, str] | None = None,
    delete_tags: Iterable[str] = (),
    missing_ok: bool = False,
) -> ModelVersion:
    """Change what may change after creation: the description and the tags."""
    version = (
        ModelVersion.objects.select_for_update(of=("self",), no_key=True)
        .select_related("model__team")
        .get(pk=version.pk)
    )
    policies.can_edit_version(actor, version.model).ensure()
    changed: dict[str, Any] = {}
    if description is not None and description != version.description:
        changed["description"] = description
    new_tags = _merge_tags(
        f"Version {version.number} of {version.model.name}", version.tags, tags, set_tags, delete_tags, missing_ok
    )
    if new_tags != version.tags:
        changed["tags"] = new_tags
    if not changed:
        return version
    before = _snapshot(version, changed)
    for name, value in changed.items():
        setattr(version, name, value)
    version.save(update_fields=[*changed, "updated_at"])
    audit_record(
        actor=actor,
        action="version.updated",
        obj=version,
        model_name=version.model.name,
        before=before,
        after=_snapshot(version, changed),
    )
    return version


def version_set_state(
    *, actor: Any, version: ModelVersion, state: str, reason: str = "", **context: Any
) -> ModelVersion:
    """Move the version to ``state``. Governance calls this inside its own transaction, after
    ``governance.workflow`` has allowed the move and its policies the actor; ``context`` (the
    request, the policy version) goes into the audit event with the reason."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("version_set_state runs inside the governance service's transaction")
    version = (
        ModelVersion.objects.select_for_update(of=("self",), no_key=True).select_related("model").get(pk=version.pk)
    )
    before = {"state": version.state}
    version.state = state
    version.save(update_fields=["state", "updated_at"])
    audit_record(
        actor=actor,
        action="version.state_changed",
        obj=version,
        model_name=version.model.name,
        before=before,
        after={"number": version.number, "state": state, **context},
        reason=reason,
    )
    return version


# --- lineage -----------------------------------------------------------------------------


@transaction.atomic
def lineage_add_parent(*, actor: Any, child: ModelVersion, parent: ModelVersion, relation: str) -> None:
    """Record that ``child`` derives from ``parent``. Refused if it would close a cycle."""
    _pg_lock(LINEAGE_LOCK)  # before any row lock: the lineage lock is always taken first
    child = _lock_draft_for_lineage(actor, child)
    _add_parent(actor=actor, child=child, parent=parent, relation=relation, field="version_id")
    audit_record(
        actor=actor,
        action="lineage.parent_added",
        obj=child,
        model_name=child.model.name,
        after={"parent_version_id": parent.pk, "relation": relation},
    )


@transaction.atomic
def lineage_add_dataset(*, actor: Any, version: ModelVersion, dataset_version: DatasetVersion, role: str) -> None:
    version = _lock_draft_for_lineage(actor, version)
    _add_dataset(actor=actor, version=version, dataset_version=dataset_version, role=role, field="dataset_version_id")
    audit_record(
        actor=actor,
        action="lineage.dataset_added",
        obj=version,
        model_name=version.model.name,
        after={"dataset_version_id": dataset_version.pk, "role": role},
    )


def _lock_draft_for_lineage(actor: Any, version: ModelVersion) -> ModelVersion:
    version = (
        ModelVersion.objects.select_for_update(of=("self",), no_key=True)
        .select_related("model__team")
        .get(pk=version.pk)
    )
    policies.can_edit_version(actor, version.model).ensure()
    ensure_content_open(version, "lineage")
    return version


def ensure_content_open(version: ModelVersion, part: str) -> None:
    """A version's content (its lineage, its monitoring reference: ``part``) is set while it is a
    draft of an active model, and frozen with the rest once it is submitted: what its approvers
    judged is what stays. Called with the version locked."""
    if version.model.status != ModelStatus.ACTIVE:
        raise Conflict(f"Model {version.model.name} is {version.model.status}: its {part} is closed.")
    if version.state != VersionState.DRAFT:
        raise Conflict(
            f"Version {version.number} of {version.model.name} is {version.state}: "
            f"its {part} is frozen with its content; register a new version."
        )


def _add_parent(*, actor: Any, child: ModelVersion, parent: ModelVersion, relation: str, field: str) -> None:
    """The caller holds the lineage lock, so two concurrent edges cannot close a cycle together."""
    if relation not in ParentRelation.values:
        raise ValidationFailed.on("relation", f"must be one of {', '.join(ParentRelation.values)}")
    if not policies.can_view_model(actor, parent.model):
        raise ValidationFailed.on(field, f"model version {parent.pk} does not exist")
    if parent.pk == child.pk:
        raise ValidationFailed.on(field, "a version cannot be its own parent (lineage cycle)")
    if child.pk in selectors.ancestor_ids(parent):
        raise ValidationFailed.on(
            field, f"{parent} already descends from {child}: adding it as a parent would create a lineage cycle"
        )
    if child.parent_edges.filter(parent=parent).exists():
        raise Conflict.on(field, f"{parent} is already a parent of {child}")
    child.parent_edges.create(parent=parent, relation=relation)


def _add_dataset(*, actor: Any, version: ModelVersion, dataset_version: DatasetVersion, role: str, field: str) -> None:
    if role not in DatasetRole.values:
        raise ValidationFailed.on("role", f"must be one of {', '.join(DatasetRole.values)}")
    if DatasetUsage.objects.filter(version=version, dataset_version=dataset_version, role=role).exists():
        raise Conflict.on(field, f"{dataset_version} is already recorded as {role} data")
    DatasetUsage.objects.create(version=version, dataset_version=dataset_version, role=role)


# --- datasets ----------------------------------------------------------------------------


@transaction.atomic
def dataset_create(*, actor: Any, name: str, team: Group, description: str = "") -> Dataset:
    _ensure_team("team", team)
    policies.can_create_dataset(actor, team_id=team.pk).ensure()
    dataset = Dataset(name=name, team=team, description=description, created_by=actor)
    _clean(dataset)
    if Dataset.objects.filter(name=name).exists():
        raise Duplicate.on("name", f"a dataset named {name!r} already exists")
    try:
        with transaction.atomic():
            dataset.save(force_insert=True)
    except IntegrityError:
        raise Duplicate.on("name", f"a dataset named {name!r} already exists") from None
    audit_record(
        actor=actor,
        action="dataset.created",
        obj=dataset,
        after=_snapshot(dataset, ("name", "team")),
    )
    return dataset


@transaction.atomic
def dataset_version_create(
    *,
    actor: Any,
    dataset: Dataset,
    uri: str,
    digest: str,
    row_count: int | None = None,
    schema_summary: dict[str, Any] | None = None,
) -> DatasetVersion:
    dataset = Dataset.objects.select_for_update(of=("self",), no_key=True).select_related("team").get(pk=dataset.pk)
    policies.can_add_dataset_version(actor, dataset).ensure()
    digest = validation.sha256_digest("digest", digest)
    dataset_version = DatasetVersion(
        dataset=dataset,
        number=(dataset.versions.aggregate(n=Max("number"))["n"] or 0) + 1,
        uri=uri,
        digest=digest,
        row_count=row_count,
        schema_summary=validation.json_document("schema_summary", schema_summary or {}),
        created_by=actor,
    )
    _clean(dataset_version, exclude=["dataset"])
    clash = dataset.versions.filter(digest=digest).values_list("number", flat=True).first()
    if clash is not None:
        raise Duplicate.on("digest", f"version {clash} of dataset {dataset.name} already has this digest")
    dataset_version.save(force_insert=True)
    audit_record(
        actor=actor,
        action="dataset_version.created",
        obj=dataset_version,
        after=_snapshot(dataset_version, ("number", "uri", "digest", "row_count")),
    )
    return dataset_version


# --- aliases -----------------------------------------------------------------------------


@transaction.atomic
def alias_set(*, actor: Any, model: RegisteredModel, name: str, number: int) -> Alias:
    """Point alias ``name`` of ``model`` at its version ``number``."""
    model = _locked(model.pk)
    policies.can_edit_version(actor, model).ensure()
    if not ALIAS_NAME_RE.match(name):
        raise ValidationFailed.on("alias", "1-100 letters, digits, '_' or '-'")
    if RESERVED_ALIAS_RE.match(name):
        raise ValidationFailed.on("alias", f"{name!r} is reserved ('latest' and 'v<number>' name versions)")
    found = rows(ModelVersion, _TARGET_AND_CURRENT, [model.pk, number, model.pk, name], extra=("alias_id",))
    version = next((v for v in found if v.alias_id is None), None)  # type: ignore[attr-defined]
    if version is None:
        raise ValidationFailed.on("version", f"model {model.name} has no version {number}")
    version.model = model
    for check in hooks.ALIAS_CHECKS:
        check(actor=actor, version=version, alias=name)
    current = next((v for v in found if v.alias_id is not None), None)  # type: ignore[attr-defined]
    before = {"version": current.number} if current else None
    if current and current.pk == version.pk:
        return selectors.alias_named(model, name)  # type: ignore[return-value]  # unchanged: as it stands
    if current:
        # Every column but the name and model is about to change, so the alias is not read.
        alias = Alias(pk=current.alias_id, model=model, name=name, version=version, updated_by=actor)  # type: ignore[attr-defined]
        alias._state.adding, alias._state.db = False, connection.alias
        _ALIAS_MOVES.save(alias)
    else:
        alias = Alias.objects.create(model=model, name=name, version=version, updated_by=actor)
    outbox.enqueue(
        Event.ALIAS_MOVED,
        subject=f"{model.name}@{name} now points to version {version.number}",
        payload={"model": model.name, "alias": name, "version": version.number, "before": before, "by": str(actor)},
        model=model,
        to=outbox.owners(model),
    )
    audit_record(
        actor=actor,
        action="alias.set",
        object_type="registry.alias",
        object_id=f"{model.name}@{name}",
        model_name=model.name,
        before=before,
        after={"version": version.number},
    )
    return alias


def aliases_clear(*, actor: Any, version: ModelVersion, reason: str, **context: Any) -> list[str]:
    """Remove every alias that points at ``version`` (decommissioning does). Governance calls
    this inside its own transaction, after its rules have allowed it; returns the names."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("aliases_clear runs inside the governance service's transaction")
    model = version.model
    names = []
    for alias in Alias.objects.filter(version=version).order_by("name"):
        alias.delete()
        names.append(alias.name)
        audit_record(
            actor=actor,
            action="alias.cleared",
            object_type="registry.alias",
            object_id=f"{model.name}@{alias.name}",
            model_name=model.name,
            before={"version": version.number},
            after={**context},
            reason=reason,
        )
    return names


def model_set_status(*, actor: Any, model: RegisteredModel, status: str, reason: str, **context: Any) -> None:
    """Set the model's status (decommissioned, by an approved request). Inside governance's
    transaction, as ``model_set_risk_tier``."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("model_set_status runs inside the governance service's transaction")
    model = _locked(model.pk)
    before = {"status": model.status}
    model.status = status
    model.save(update_fields=["status", "updated_at"])
    audit_record(
        actor=actor,
        action="model.status_changed",
        obj=model,
        model_name=model.name,
        before=before,
        after={"status": status, **context},
        reason=reason,
    )


@transaction.atomic
def alias_delete(*, actor: Any, alias: Alias) -> None:
    model = _locked(alias.model_id)
    policies.can_edit_version(actor, model).ensure()
    current = Alias.objects.select_related("version").filter(pk=alias.pk).first()
    if current is None:  # deleted by someone else while this waited for the model
        raise NotFound(f"No alias {alias.name!r} on model {model.name}.")
    alias = current
    before = {"version": alias.version.number}
    alias.delete()
    audit_record(
        actor=actor,
        action="alias.deleted",
        object_type="registry.alias",
        object_id=f"{model.name}@{alias.name}",
        model_name=model.name,
        before=before,
    )


# --- API tokens --------------------------------------------------------------------------


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def token_create(
    *,
    actor: Any,
    name: str,
    expires_at: datetime | None = None,
    via: ApiToken | None = None,
    owner: Any = None,
    reason: str = "",
) -> tuple[ApiToken, str]:
    """Create a token for ``owner`` (``actor`` themselves unless given: ``token_create``, the
    command, acts for Warden and names whose token it makes). Returns the token and its secret,
    which is not stored. ``via``: the token the request was made with; a token cannot outlive
    the one that made it, and is revoked with it (whoever holds a leaked token cannot keep a way
    in by minting another)."""
    owner = actor if owner is None else owner
    if actor is not None and owner != actor:
        raise PermissionDenied("A token is made for the one who asks for it.")
    if via is not None and via.user_id != owner.pk:
        raise PermissionDenied("A token is made with a token of its own user.")
    if not owner.is_active:
        raise PermissionDenied(f"{owner.get_username()} is inactive: an inactive user gets no token.")
    if not name.strip() or len(name) > 100:
        raise ValidationFailed.on("name", "a token needs a name of 1-100 characters")
    if via is not None:  # locked as token_revoke locks it: a revocation under way finishes first
        via = ApiToken.objects.select_for_update(no_key=True).get(pk=via.pk)
        if via.revoked_at is not None:
            raise PermissionDenied("The token this request was made with is revoked.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed.on("expires_at", "must be in the future")
    if via is not None and via.expires_at is not None and (expires_at is None or expires_at > via.expires_at):
        raise ValidationFailed.on(
            "expires_at", f"a token cannot outlive the token that creates it (expires {via.expires_at.isoformat()})"
        )
    taken = f"{'you already have' if owner == actor else owner.get_username() + ' already has'} an active token named {name!r}"
    if ApiToken.objects.filter(user=owner, name=name, revoked_at=None).exists():
        raise Duplicate.on("name", taken)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            token = ApiToken.objects.create(
                user=owner,
                name=name,
                prefix=secret[:12],
                key_hash=hash_token(secret),
                expires_at=expires_at,
                created_via=via,
            )
    except IntegrityError:
        raise Duplicate.on("name", taken) from None
    audit_record(
        actor=actor,
        action="token.created",
        obj=token,
        after={
            "user": owner.get_username(),
            "name": name,
            "prefix": token.prefix,
            "expires_at": expires_at,
            "via": via.prefix if via else None,
        },
        reason=reason,
    )
    return token, secret


@transaction.atomic
def token_revoke(*, actor: Any, token: ApiToken) -> ApiToken:
    """Revoke ``token`` and every token made with it, at any remove, each audited."""
    token = ApiToken.objects.select_for_update(no_key=True).get(pk=token.pk)
    policies.can_revoke_token(actor, token).ensure()
    if token.revoked_at is not None:
        return token
    now, revoking, reason = timezone.now(), [token], ""
    while revoking:
        made = list(
            ApiToken.objects.select_for_update(no_key=True)
            .filter(created_via__in=revoking, revoked_at=None)
            .order_by("pk")
        )
        for revoked in revoking:
            revoked.revoked_at = now
            revoked.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor,
                action="token.revoked",
                obj=revoked,
                after={"name": revoked.name, "prefix": revoked.prefix, "user": revoked.user.get_username()},
                reason=reason,
            )
        revoking, reason = made, f"made with token {token.prefix}…, revoked"
    return token
