"""Who may see and change what in the registry. The only place these questions are asked:
the API, the admin, commands and services all call in here.

Superusers see everything; when writing, they follow the same rules as everyone else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.models import Q, QuerySet

from common import memo, statements
from common.policy import ALLOW, Decision, deny
from common.roles import ROLE_NAMES, Role, has_oversight, has_role, team_ids
from registry.models import (
    ApiToken,
    Dataset,
    ModelVersion,
    RegisteredModel,
    RegisteredModelGroupObjectPermission,
    RegisteredModelUserObjectPermission,
    VersionState,
)

VIEW_PERMISSION = "view_registeredmodel"
CONTROL_FIELDS = frozenset({"owner", "team", "restricted"})


def teams_of(user: Any) -> QuerySet[Group]:
    """The user's teams: their groups that are not roles."""
    return user.groups.exclude(name__in=ROLE_NAMES)


def is_team_member(user: Any, team_id: int) -> bool:
    return team_id in team_ids(user)


# --- visibility --------------------------------------------------------------------------


def visible_models(user: Any, queryset: QuerySet[RegisteredModel] | None = None) -> QuerySet[RegisteredModel]:
    """Models the user may see: every unrestricted one; a restricted one only for its owning
    team, the governance roles and auditors, and those granted access (django-guardian)."""
    queryset = RegisteredModel.objects.all() if queryset is None else queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    return queryset.filter(model_visibility(user))


def model_visibility(user: Any, path: str = "") -> Q:
    """``visible_models`` as a filter, on models (``path=""``) or on rows that reach a model
    through ``path`` (``"model__"``, ``"version__model__"``). Joining beats ``model__in=
    visible_models(user)``, whose subquery PostgreSQL reads whole: its cost grew with the store."""
    if not getattr(user, "is_authenticated", False):
        return Q(**{f"{path}pk__in": []})
    if has_oversight(user):
        return Q()
    q = Q(**{f"{path}restricted": False})
    if team_ids(user):
        q |= Q(**{f"{path}team_id__in": team_ids(user)})
    if granted_model_ids(user):
        q |= Q(**{f"{path}pk__in": granted_model_ids(user)})
    return q


def granted_model_ids(user: Any) -> frozenset[int]:
    """Restricted models the user was granted to see, themselves or through a group: one query,
    remembered for the request (``common.memo``). Plain SQL, prepared (``common.statements``), as
    building the same as two ORM querysets and a union cost more than a millisecond on every list."""

    def read() -> frozenset[int]:
        to_user = RegisteredModelUserObjectPermission._meta.db_table
        to_group = RegisteredModelGroupObjectPermission._meta.db_table
        permission, membership = Permission._meta.db_table, get_user_model().groups.through._meta.db_table
        with connection.cursor() as cursor:
            statements.execute(
                cursor,
                f"""SELECT g.content_object_id FROM {to_user} g JOIN {permission} p ON p.id = g.permission_id
                    WHERE g.user_id = %s AND p.codename = %s
                    UNION
                    SELECT g.content_object_id FROM {to_group} g JOIN {permission} p ON p.id = g.permission_id
                    JOIN {membership} m ON m.group_id = g.group_id
                    WHERE m.user_id = %s AND p.codename = %s""",
                [user.pk, VIEW_PERMISSION, user.pk, VIEW_PERMISSION],
            )
            return frozenset(row[0] for row in cursor.fetchall())

    return memo.remembered(("granted", user.pk), read)


def can_view_model(user: Any, model: RegisteredModel) -> Decision:
    """``visible_models`` for one model in hand: the same rule, asked without a query unless
    the model is restricted and the user neither oversees nor owns it."""
    if getattr(user, "is_authenticated", False) and (
        not model.restricted
        or has_oversight(user)
        or model.team_id in team_ids(user)
        or model.pk in granted_model_ids(user)
    ):
        return ALLOW
    return deny("This model is restricted to its owning team and those granted access.")


# --- writes ------------------------------------------------------------------------------


def can_register_model(user: Any, *, team_id: int) -> Decision:
    if not (has_role(user, Role.MODEL_DEVELOPER) or has_role(user, Role.MODEL_OWNER)):
        return deny("Only model developers and model owners register models.")
    if not is_team_member(user, team_id):
        return deny("You can only register models for a team you belong to.")
    return ALLOW


def can_update_model(user: Any, model: RegisteredModel, fields: Iterable[str]) -> Decision:
    """Descriptive fields and tags: the owner or the owning team. Owner, team and the
    restricted flag move who controls the model: the owner or a risk officer."""
    if set(fields) & CONTROL_FIELDS:
        if user.pk == model.owner_id or has_role(user, Role.RISK_OFFICER):
            return ALLOW
        return deny("Only the model's owner or a risk officer may change its owner, team or restriction.")
    if user.pk == model.owner_id or is_team_member(user, model.team_id):
        return ALLOW
    return deny(f"Only the owner or the owning team ({model.team.name}) may change model {model.name}.")


def can_rename_model(user: Any, model: RegisteredModel) -> Decision:
    if user.pk == model.owner_id or has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny(f"Only the owner of model {model.name} or a risk officer may rename it.")


def can_add_version(user: Any, model: RegisteredModel) -> Decision:
    if is_team_member(user, model.team_id):
        return ALLOW
    return deny(f"Only the owning team ({model.team.name}) adds versions to model {model.name}.")


def can_edit_version(user: Any, model: RegisteredModel) -> Decision:
    """Description, tags, lineage and aliases: the owning team's business."""
    if is_team_member(user, model.team_id):
        return ALLOW
    return deny(f"Only the owning team ({model.team.name}) may change versions of model {model.name}.")


def can_grant_access(user: Any, model: RegisteredModel) -> Decision:
    if user.pk == model.owner_id or has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny("Only the model's owner or a risk officer may grant or revoke access to it.")


def can_create_dataset(user: Any, *, team_id: int) -> Decision:
    if not (has_role(user, Role.MODEL_DEVELOPER) or has_role(user, Role.MODEL_OWNER)):
        return deny("Only model developers and model owners register datasets.")
    if not is_team_member(user, team_id):
        return deny("You can only register datasets for a team you belong to.")
    return ALLOW


def can_add_dataset_version(user: Any, dataset: Dataset) -> Decision:
    if is_team_member(user, dataset.team_id):
        return ALLOW
    return deny(f"Only the owning team ({dataset.team.name}) adds versions to dataset {dataset.name}.")


def can_revoke_any_token(user: Any) -> Decision:
    """Anyone revokes their own tokens; revoking someone else's is incident response."""
    if user.is_superuser or has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny("You can only revoke your own tokens.")


def visible_datasets(user: Any, queryset: QuerySet[Dataset]) -> QuerySet[Dataset]:
    """Datasets are visible to every signed-in user; the models that use them may not be."""
    return queryset if getattr(user, "is_authenticated", False) else queryset.none()


def visible_tokens(user: Any, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
    """Your own tokens; a risk officer or superuser sees everyone's (to revoke them)."""
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    return queryset if can_revoke_any_token(user) else queryset.filter(user=user)


def can_revoke_token(user: Any, token: ApiToken) -> Decision:
    if token.user_id == user.pk:
        return ALLOW
    return can_revoke_any_token(user)


# States a protected alias stays on but does not lead to (a reinstatement brings a suspended
# version back; a decommission clears the aliases).
UNRESOLVED_STATES = (VersionState.SUSPENDED, VersionState.DEPRECATED)


def can_resolve_alias(model: RegisteredModel, name: str, version: ModelVersion) -> Decision:
    """A protected alias (``PROTECTED_ALIASES``) leads nowhere while its version is suspended or
    deprecated: whoever loads ``models:/<model>@production`` is stopped by the kill switch too."""
    if name in settings.PROTECTED_ALIASES and version.state in UNRESOLVED_STATES:
        return deny(
            f"Alias {name} of {model.name} points to version {version.number}, which is {version.state}: "
            f"a protected alias does not lead to a {version.state} version."
        )
    return ALLOW
