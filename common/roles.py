"""The roles of PRODUCT.md. Each is a Django group (created by a data migration); a user's
roles are the groups they are in. Teams are the other groups."""

import json
from enum import StrEnum
from typing import Any

from common import memo, statements


class Role(StrEnum):
    MODEL_DEVELOPER = "Model developers"
    MODEL_OWNER = "Model owners"
    VALIDATOR = "Validators"
    RISK_OFFICER = "Risk officers"
    COMMITTEE_MEMBER = "Committee members"
    COMPLIANCE_OFFICER = "Compliance officers"
    DEPLOYER = "Deployers"
    AUDITOR = "Auditors"


# Roles that oversee every model, restricted ones included.
GOVERNANCE_ROLES = frozenset({Role.VALIDATOR, Role.RISK_OFFICER, Role.COMMITTEE_MEMBER, Role.COMPLIANCE_OFFICER})
OVERSIGHT_ROLES = GOVERNANCE_ROLES | {Role.AUDITOR}
ROLE_NAMES = frozenset(role.value for role in Role)


def roles_of(user: Any) -> frozenset[str]:
    """The user's role names."""
    return _groups(user)[0]


def team_ids(user: Any) -> frozenset[int]:
    """The ids of the user's teams (their groups that are not roles)."""
    return frozenset(_groups(user)[1])


def team_names(user: Any) -> dict[int, str]:
    """The user's teams: id → name (a copy: the request's memo keeps its own)."""
    return dict(_groups(user)[1])


def _groups(user: Any) -> tuple[frozenset[str], dict[int, str]]:
    """Roles and teams (id → name) in one query, remembered for the request (``common.memo``)."""
    if not getattr(user, "is_authenticated", False):
        return frozenset(), {}

    def read() -> tuple[frozenset[str], dict[int, str]]:
        from django.db import connection

        # Plain SQL: the ORM's join through the membership table costs more to build than to run.
        with connection.cursor() as cursor:
            statements.execute(cursor, f"SELECT g.id, g.name FROM {_memberships()} WHERE m.user_id = %s", [user.pk])
            return _split(cursor.fetchall())

    return memo.remembered(("groups", user.pk), read)


def groups_column(connection: Any, user_id: str) -> str:
    """An SQL expression for the groups of the user whose id is ``user_id`` (a column), as a JSON
    array of ``[id, name]``. Read with another row (the API token's, on every API request), it
    spares a write the round trip ``_groups`` would make; give its value to ``remember_groups``."""
    if connection.vendor == "postgresql":
        pairs = "json_agg(json_build_array(g.id, g.name))"
    else:  # SQLite's JSON functions
        pairs = "json_group_array(json_array(g.id, g.name))"
    return f"(SELECT {pairs} FROM {_memberships()} WHERE m.user_id = {user_id})"


def remember_groups(user: Any, pairs: Any) -> None:
    """Remember for the request the groups ``groups_column`` read (as JSON text or parsed)."""
    if isinstance(pairs, str):
        pairs = json.loads(pairs)
    memo.remember(("groups", user.pk), _split(pairs or []))


def _memberships() -> str:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    return f"{Group._meta.db_table} g JOIN {get_user_model().groups.through._meta.db_table} m ON m.group_id = g.id"


def _split(pairs: Any) -> tuple[frozenset[str], dict[int, str]]:
    """(role names, teams: id → name) of ``(id, name)`` pairs."""
    roles = frozenset(name for _, name in pairs if name in ROLE_NAMES)
    return roles, {pk: name for pk, name in pairs if name not in ROLE_NAMES}


def has_role(user: Any, role: Role) -> bool:
    return role.value in roles_of(user)


def has_oversight(user: Any) -> bool:
    """Superusers, governance roles and auditors see every model and the whole trail."""
    return bool(getattr(user, "is_superuser", False) or roles_of(user) & OVERSIGHT_ROLES)


def is_team(group_name: str) -> bool:
    """Teams are the groups that are not roles."""
    return group_name not in ROLE_NAMES
