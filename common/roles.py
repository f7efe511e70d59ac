"""The roles of PRODUCT.md. Each is a Django group (created by a data migration); a user's
roles are the groups they are in. Teams are the other groups."""

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
    return _groups(user)[1]


def _groups(user: Any) -> tuple[frozenset[str], frozenset[int]]:
    """Roles and teams in one query, remembered for the request (``common.memo``)."""
    if not getattr(user, "is_authenticated", False):
        return frozenset(), frozenset()

    def read() -> tuple[frozenset[str], frozenset[int]]:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.db import connection

        # Plain SQL: the ORM's join through the membership table costs more to build than to run.
        membership = get_user_model().groups.through._meta.db_table
        with connection.cursor() as cursor:
            statements.execute(
                cursor,
                f"SELECT g.id, g.name FROM {Group._meta.db_table} g JOIN {membership} m ON m.group_id = g.id"
                " WHERE m.user_id = %s",
                [user.pk],
            )
            rows = cursor.fetchall()
        roles = frozenset(name for _, name in rows if name in ROLE_NAMES)
        return roles, frozenset(pk for pk, name in rows if name not in ROLE_NAMES)

    return memo.remembered(("groups", user.pk), read)


def has_role(user: Any, role: Role) -> bool:
    return role.value in roles_of(user)


def has_oversight(user: Any) -> bool:
    """Superusers, governance roles and auditors see every model and the whole trail."""
    return bool(getattr(user, "is_superuser", False) or roles_of(user) & OVERSIGHT_ROLES)


def is_team(group_name: str) -> bool:
    """Teams are the groups that are not roles."""
    return group_name not in ROLE_NAMES
