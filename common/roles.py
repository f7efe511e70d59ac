"""The roles of PRODUCT.md. Each is a Django group (created by a data migration); a user's
roles are the groups they are in. Teams are the other groups."""

from enum import StrEnum
from typing import Any


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
    """The user's role names, read once per user object (one query)."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_warden_roles", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True))
        user._warden_roles = cached
    return cached


def has_role(user: Any, role: Role) -> bool:
    return role.value in roles_of(user)


def has_oversight(user: Any) -> bool:
    """Superusers, governance roles and auditors see every model and the whole trail."""
    return bool(getattr(user, "is_superuser", False) or roles_of(user) & OVERSIGHT_ROLES)


def is_team(group_name: str) -> bool:
    """Teams are the groups that are not roles."""
    return group_name not in ROLE_NAMES
