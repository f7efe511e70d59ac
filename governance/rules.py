"""What a publishable policy or scorecard must look like. A draft may be anything; publishing
checks it here, and a refusal names the field and the rule."""

from __future__ import annotations

from typing import Any

from common.errors import ValidationFailed
from common.roles import ROLE_NAMES
from governance import tiering
from governance.models import Environment

STAGE_KEYS = {"name", "step", "role", "quorum", "sla_business_days", "independent"}
TIERS = (1, 2, 3, 4)


def _whole(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed.on(field, f"must be a whole number from {low} to {high}")
    return value


def _is_tier(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value in TIERS


def check_stages(field: str, stages: Any) -> list[dict[str, Any]]:
    """Stages in order; steps start at 1 and go up by one, and stages sharing a step run in
    parallel. Each names one of the roles, a quorum of distinct people and an SLA."""
    if not isinstance(stages, list) or not stages:
        raise ValidationFailed.on(field, "must be a non-empty list of stages")
    names: set[str] = set()
    previous_step = 0
    for index, stage in enumerate(stages):
        where = f"{field}[{index}]"
        if not isinstance(stage, dict) or set(stage) != STAGE_KEYS:
            raise ValidationFailed.on(where, f"a stage has exactly these keys: {', '.join(sorted(STAGE_KEYS))}")
        name = stage["name"]
        if not isinstance(name, str) or not 1 <= len(name) <= 100 or name != name.strip() or name in names:
            raise ValidationFailed.on(f"{where}.name", "1-100 characters, no outer spaces, unique within the policy")
        names.add(name)
        if not isinstance(stage["role"], str) or stage["role"] not in ROLE_NAMES:
            raise ValidationFailed.on(f"{where}.role", f"one of: {', '.join(sorted(ROLE_NAMES))}")
        step = _whole(f"{where}.step", stage["step"], 1, 20)
        if step not in (previous_step, previous_step + 1):
            raise ValidationFailed.on(f"{where}.step", "steps start at 1, in order, without gaps")
        previous_step = step
        _whole(f"{where}.quorum", stage["quorum"], 1, 20)
        _whole(f"{where}.sla_business_days", stage["sla_business_days"], 1, 250)
        if not isinstance(stage["independent"], bool):
            raise ValidationFailed.on(f"{where}.independent", "must be true or false")
    return stages


def check_policy(policy: Any) -> None:
    if not _is_tier(policy.tier):
        raise ValidationFailed.on("tier", "must be 1, 2, 3 or 4")
    check_stages("stages", policy.stages)
    signers = sum(stage["quorum"] for stage in policy.stages)
    _whole("min_distinct_people", policy.min_distinct_people, 2, 100)
    if signers + 1 < policy.min_distinct_people:
        raise ValidationFailed.on(
            "min_distinct_people",
            f"the stages' quorums give {signers} signers plus the submitter, fewer than {policy.min_distinct_people}",
        )
    _whole("revalidation_months", policy.revalidation_months, 1, 120)
    _whole("max_exception_days", policy.max_exception_days, 1, 3650)
    gated = policy.approval_required_in
    known = set(Environment.objects.values_list("name", flat=True))
    if not isinstance(gated, list) or not all(isinstance(name, str) and name in known for name in gated):
        raise ValidationFailed.on("approval_required_in", f"a list of environments from: {', '.join(sorted(known))}")
    check_monitoring(policy.monitoring)


MEASURES = ("relative_change", "psi")
SUSPENSION = ("automatic", "risk_officer_may_suspend")
SEVERITIES = ("low", "medium", "high", "critical")


def check_monitoring(monitoring: Any) -> None:
    """``{"thresholds": {measure: {"warn", "critical"}}, "on_critical": {...}, "stale_after_days"}``:
    known measures with 0 < warn < critical; on a critical breach either ``log_only`` or a
    finding of a known severity, with an optional revalidation and suspension."""
    if not isinstance(monitoring, dict):
        raise ValidationFailed.on("monitoring", "must be an object")
    thresholds = monitoring.get("thresholds", {})
    if not isinstance(thresholds, dict) or set(thresholds) - set(MEASURES):
        raise ValidationFailed.on("monitoring.thresholds", f"an object of: {', '.join(MEASURES)}")
    for measure, limits in thresholds.items():
        numbers = isinstance(limits, dict) and all(
            isinstance(limits.get(k), int | float) and not isinstance(limits.get(k), bool) for k in ("warn", "critical")
        )
        if not numbers or not 0 < limits["warn"] < limits["critical"] < 1e6:
            raise ValidationFailed.on(f"monitoring.thresholds.{measure}", "{warn, critical} with 0 < warn < critical")
    on_critical = monitoring.get("on_critical", {})
    if not isinstance(on_critical, dict):
        raise ValidationFailed.on("monitoring.on_critical", "must be an object")
    if on_critical and not on_critical.get("log_only") and on_critical.get("finding_severity") not in SEVERITIES:
        raise ValidationFailed.on("monitoring.on_critical.finding_severity", f"one of: {', '.join(SEVERITIES)}")
    if not isinstance(on_critical.get("revalidation", False), bool):
        raise ValidationFailed.on("monitoring.on_critical.revalidation", "true or false")
    if on_critical.get("suspension") not in (None, *SUSPENSION):
        raise ValidationFailed.on("monitoring.on_critical.suspension", f"one of: {', '.join(SUSPENSION)}")
    stale = monitoring.get("stale_after_days")
    if stale is not None and (isinstance(stale, bool) or not isinstance(stale, int) or not 1 <= stale <= 3650):
        raise ValidationFailed.on("monitoring.stale_after_days", "a whole number of days, 1-3650")


def check_scorecard(rules: Any) -> None:
    """Every question has options scoring whole points; the bands ascend; the matrix covers
    every pair of bands with a tier; floors and prohibited flags are named."""
    if not isinstance(rules, dict):
        raise ValidationFailed.on("rules", "must be an object")
    for dimension in tiering.DIMENSIONS:
        group = rules.get(dimension)
        if not isinstance(group, dict) or not group:
            raise ValidationFailed.on(f"rules.{dimension}", "must be an object of questions")
        for name, question in group.items():
            options = question.get("options") if isinstance(question, dict) else None
            if not isinstance(options, dict) or not options:
                raise ValidationFailed.on(f"rules.{dimension}.{name}.options", "must be an object of answer → points")
            for answer, points in options.items():
                _whole(f"rules.{dimension}.{name}.options.{answer}", points, 0, 100)
        bands = rules.get(f"{dimension}_bands")
        if not isinstance(bands, list) or any(isinstance(b, bool) or not isinstance(b, int) for b in bands):
            raise ValidationFailed.on(f"rules.{dimension}_bands", "must be a list of whole numbers")
        if bands != sorted(set(bands)):
            raise ValidationFailed.on(f"rules.{dimension}_bands", "must ascend strictly")
    if set(tiering.questions(rules)) != {n for d in tiering.DIMENSIONS for n in rules[d]}:
        raise ValidationFailed.on("rules", "a question name appears in both dimensions")
    matrix = rules.get("matrix")
    rows, columns = len(rules["materiality_bands"]) + 1, len(rules["complexity_bands"]) + 1
    if (
        not isinstance(matrix, list)
        or len(matrix) != rows
        or any(not isinstance(row, list) or len(row) != columns for row in matrix)
        or not all(_is_tier(tier) for row in matrix for tier in row)
    ):
        raise ValidationFailed.on("rules.matrix", f"must be {rows} rows of {columns} tiers (1-4)")
    floors = rules.get("floors")
    if not isinstance(floors, dict) or not all(_is_tier(tier) for tier in floors.values()):
        raise ValidationFailed.on("rules.floors", "must be an object of flag → tier (1-4)")
    prohibited = rules.get("prohibited_flags")
    if not isinstance(prohibited, list) or not all(isinstance(flag, str) for flag in prohibited):
        raise ValidationFailed.on("rules.prohibited_flags", "must be a list of flag names")
    check_stages("rules.override_stages", rules.get("override_stages"))
