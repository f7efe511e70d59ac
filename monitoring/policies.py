"""Who reports monitoring data and who changes its thresholds."""

from __future__ import annotations

from typing import Any

from common.policy import ALLOW, Decision, deny
from common.roles import Role, has_role
from registry import policies as registry_policies
from registry.models import ModelVersion


def can_report(user: Any, version: ModelVersion) -> Decision:
    """Deployers (and the pipelines they run as) and the owning team post observations."""
    if has_role(user, Role.DEPLOYER) or registry_policies.is_team_member(user, version.model.team_id):
        return ALLOW
    return deny(f"Only deployers and the owning team report monitoring data for {version.model.name}.")


def can_override_thresholds(user: Any) -> Decision:
    if has_role(user, Role.RISK_OFFICER):
        return ALLOW
    return deny("Only a risk officer overrides a model's monitoring thresholds.")
