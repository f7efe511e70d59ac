"""The state tables: which moves a model version and an approval request may make. Pure data
and one check each; the services ask here before they change a state, and a refused move is a
409 that says what the state is and where it can go from there."""

from __future__ import annotations

from collections.abc import Mapping

from common.errors import Conflict
from governance.models import FindingState, RequestState
from registry.models import VersionState

V = VersionState
DECOMMISSIONED = "decommissioned (request approved)"
# from → {to: what the move is}
VERSION_TRANSITIONS: Mapping[str, Mapping[str, str]] = {
    V.DRAFT: {V.SUBMITTED: "submitted for approval"},
    V.SUBMITTED: {
        V.APPROVED: "approved (last stage complete)",
        V.REJECTED: "rejected",
        V.CHANGES_REQUESTED: "changes requested",
        V.DRAFT: "request withdrawn",
    },
    V.CHANGES_REQUESTED: {V.DEPRECATED: "retired without release", V.DECOMMISSIONED: DECOMMISSIONED},
    V.APPROVED: {
        V.DEPLOYED: "deployed",
        V.SUSPENDED: "suspended",
        V.DEPRECATED: "deprecated",
        V.DECOMMISSIONED: DECOMMISSIONED,
    },
    V.DEPLOYED: {
        V.APPROVED: "retired from every environment",
        V.SUSPENDED: "suspended",
        V.DECOMMISSIONED: DECOMMISSIONED,
    },
    V.SUSPENDED: {
        V.APPROVED: "suspension lifted",
        V.DEPLOYED: "suspension lifted, still deployed",
        V.DEPRECATED: "deprecated",
        V.DECOMMISSIONED: DECOMMISSIONED,
    },
    V.REJECTED: {V.DEPRECATED: "retired without release", V.DECOMMISSIONED: DECOMMISSIONED},
    V.DEPRECATED: {V.DECOMMISSIONED: DECOMMISSIONED},
    V.DECOMMISSIONED: {},
}

# A version whose approval is in force: approved, or deployed under it.
IN_FORCE = (V.APPROVED, V.DEPLOYED)

R = RequestState
REQUEST_TRANSITIONS: Mapping[str, Mapping[str, str]] = {
    R.OPEN: {
        R.APPROVED: "approved (last stage complete)",
        R.REJECTED: "rejected",
        R.CHANGES_REQUESTED: "changes requested",
        R.WITHDRAWN: "withdrawn",
    },
    R.APPROVED: {R.EXPIRED: "its valid-until date passed"},
    R.EXPIRED: {},
    R.REJECTED: {},
    R.CHANGES_REQUESTED: {},
    R.WITHDRAWN: {},
}


F = FindingState
# A finding is closed by governance (validators, risk officers) once the fix is confirmed.
FINDING_TRANSITIONS: Mapping[str, Mapping[str, str]] = {
    F.OPEN: {F.ACKNOWLEDGED: "acknowledged", F.REMEDIATED: "remediated", F.CLOSED: "closed"},
    F.ACKNOWLEDGED: {F.REMEDIATED: "remediated", F.CLOSED: "closed"},
    F.REMEDIATED: {F.CLOSED: "closed", F.ACKNOWLEDGED: "remediation not accepted"},
    F.CLOSED: {},
}


def _ensure(table: Mapping[str, Mapping[str, str]], subject: str, current: str, target: str) -> None:
    if target in table[current]:
        return
    allowed = ", ".join(table[current]) or "nowhere: it is final"
    raise Conflict(
        f"{subject} is {current}; it cannot become {target} (from {current} it can go to {allowed}).",
        fields={"state": [f"{current} → {target} is not allowed"]},
        code="invalid_transition",
    )


def may_move_version(current: str, target: str) -> bool:
    return target in VERSION_TRANSITIONS[current]


def ensure_version_transition(subject: str, current: str, target: str) -> None:
    """``subject`` names the version in the message ("Version 3 of pd-retail")."""
    _ensure(VERSION_TRANSITIONS, subject, current, target)


def ensure_request_transition(subject: str, current: str, target: str) -> None:
    _ensure(REQUEST_TRANSITIONS, subject, current, target)


def ensure_finding_transition(subject: str, current: str, target: str) -> None:
    _ensure(FINDING_TRANSITIONS, subject, current, target)
