"""The default policy of PRODUCT.md, published as version 1 of each rule set: the scorecard
and one approval policy per tier. Also the compliance officers' role, and the permission that
assigns a validator to every model of a team (a django-guardian permission on the team).

Frozen here as data: editing them later is a risk officer's job in the admin, which drafts and
publishes new versions; this migration never changes meaning.

Choices PRODUCT.md leaves open, made here: the answers and points of each question (0-3 each,
so materiality 0-12 and complexity 0-15); the bands and the matrix; the longest exception per
tier (T1 30 days, T2 60, T3 90, T4 180); PSI thresholds beside the relative-change ones for
T1-T3; T3's independent reviewer is a model developer from another team; the environments
each tier's approval gates (staging and production for T1-T3, production for T4; development
is never gated; the environments themselves are created by 0007).
"""

from django.db import migrations

COMPLIANCE = "Compliance officers"
ROLES = {
    "validator": "Validators",
    "risk": "Risk officers",
    "committee": "Committee members",
    "compliance": COMPLIANCE,
    "developer": "Model developers",
}


def _points(*answers):
    return {answer: points for points, answer in enumerate(answers)}


SCORECARD = {
    "materiality": {
        "financial_exposure": {
            "label": "Financial exposure the model's decisions drive",
            "options": _points("under_1m", "1m_to_10m", "10m_to_100m", "over_100m"),
        },
        "decision_impact": {
            "label": "How the output is used",
            "options": _points("informs", "supports_human_decision", "automated_with_review", "fully_automated"),
        },
        "regulatory_use": {
            "label": "Regulatory use",
            "options": _points("none", "reporting", "conduct_or_fair_lending", "prudential_or_capital"),
        },
        "scale": {
            "label": "People or accounts affected per year",
            "options": _points("under_1k", "1k_to_100k", "100k_to_1m", "over_1m"),
        },
    },
    "complexity": {
        "method": {
            "label": "Modelling method",
            "options": _points("rules_or_scorecard", "linear", "tree_ensemble", "deep_learning_or_llm"),
        },
        "data": {
            "label": "Data",
            "options": _points("internal_structured", "several_internal_sources", "external_sources", "unstructured"),
        },
        "interpretability": {
            "label": "Interpretability",
            "options": _points("transparent", "explainable", "post_hoc_only", "opaque"),
        },
        "dynamism": {
            "label": "How often it changes",
            "options": _points("static", "yearly", "monthly", "continuous_learning"),
        },
        "dependencies": {
            "label": "Dependencies on other models",
            "options": _points("none", "uses_model_outputs", "feeds_other_models", "chained"),
        },
    },
    # Band lower bounds: materiality 0-3 / 4-6 / 7-9 / 10-12; complexity 0-5 / 6-10 / 11-15.
    "materiality_bands": [4, 7, 10],
    "complexity_bands": [6, 11],
    # Rows: materiality band low → very high; columns: complexity band low → high.
    "matrix": [[4, 4, 3], [3, 3, 2], [2, 2, 1], [2, 1, 1]],
    "floors": {"regulatory_capital": 1, "eu_ai_act_high_risk": 2, "automated_customer_pricing_or_eligibility": 2},
    "prohibited_flags": ["prohibited_practice"],
    "override_stages": [
        {
            "name": "Second risk officer",
            "step": 1,
            "role": ROLES["risk"],
            "quorum": 1,
            "sla_business_days": 5,
            "independent": True,
        }
    ],
}


def _stage(name, step, role, quorum, sla, independent=False):
    return {
        "name": name,
        "step": step,
        "role": ROLES[role],
        "quorum": quorum,
        "sla_business_days": sla,
        "independent": independent,
    }


def _monitoring(warn, critical, psi, on_critical):
    thresholds = {} if warn is None else {"relative_change": {"warn": warn, "critical": critical}}
    if psi:
        thresholds["psi"] = {"warn": 0.10, "critical": 0.25}
    return {"thresholds": thresholds, "on_critical": on_critical}


POLICIES = {
    1: {
        "stages": [
            _stage("Independent validation", 1, "validator", 1, 5, independent=True),
            _stage("Compliance", 2, "compliance", 1, 5),
            _stage("Risk officer", 2, "risk", 1, 5),
            _stage("Model risk committee", 3, "committee", 2, 5),
        ],
        "min_distinct_people": 5,
        "approval_required_in": ["staging", "production"],
        "revalidation_months": 12,
        "max_exception_days": 30,
        "monitoring": _monitoring(
            0.03,
            0.05,
            True,
            {"finding_severity": "high", "revalidation": True, "suspension": "risk_officer_may_suspend"},
        ),
    },
    2: {
        "stages": [
            _stage("Independent validation", 1, "validator", 1, 10, independent=True),
            _stage("Risk officer", 2, "risk", 1, 10),
        ],
        "min_distinct_people": 3,
        "approval_required_in": ["staging", "production"],
        "revalidation_months": 24,
        "max_exception_days": 60,
        "monitoring": _monitoring(0.05, 0.10, True, {"finding_severity": "high", "revalidation": True}),
    },
    3: {
        "stages": [
            _stage("Independent review", 1, "developer", 1, 15, independent=True),
            _stage("Risk officer", 2, "risk", 1, 15),
        ],
        "min_distinct_people": 3,
        "approval_required_in": ["staging", "production"],
        "revalidation_months": 36,
        "max_exception_days": 90,
        "monitoring": _monitoring(0.10, 0.20, True, {"finding_severity": "medium"}),
    },
    4: {
        "stages": [_stage("Risk officer acknowledgement", 1, "risk", 1, 20)],
        "min_distinct_people": 2,
        "approval_required_in": ["production"],
        "revalidation_months": 48,
        "max_exception_days": 180,
        "monitoring": _monitoring(None, None, False, {"log_only": True}),
    },
}
NOTES = "Default policy of PRODUCT.md."


def seed(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    Group.objects.get_or_create(name=COMPLIANCE)
    Permission.objects.get_or_create(
        codename="validate_team_models",
        content_type=ContentType.objects.get_or_create(app_label="auth", model="group")[0],
        defaults={"name": "Can validate every model of this team"},
    )
    Scorecard = apps.get_model("governance", "Scorecard")
    ApprovalPolicy = apps.get_model("governance", "ApprovalPolicy")
    from django.utils import timezone

    now = timezone.now()
    Scorecard.objects.create(version=1, status="published", rules=SCORECARD, notes=NOTES, published_at=now)
    for tier, policy in POLICIES.items():
        ApprovalPolicy.objects.create(tier=tier, version=1, status="published", notes=NOTES, published_at=now, **policy)


def unseed(apps, schema_editor):
    apps.get_model("governance", "ApprovalPolicy").objects.filter(version=1).delete()
    apps.get_model("governance", "Scorecard").objects.filter(version=1).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0001_initial"),
        ("registry", "0004_validate_permission"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
