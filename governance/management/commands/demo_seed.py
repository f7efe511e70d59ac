"""Load a living demo registry: a user per role, two teams, ~20 models across the four tiers
with versions, datasets and lineage; each model risk-assessed, its first version approved
through its tier's workflow and its newest one awaiting decisions. Everything goes through the
services, so the audit trail shows the demo's history like any other.

The lifecycle has an example of each ending: ``marketing-mix`` was registered and approved
``PAST_MONTHS`` ago (the services ran with the clock set back), so its approval has expired,
its revalidation is open and its pending stage is overdue; ``quote-anomaly`` v1 is suspended;
``call-summariser`` is decommissioned. The T1 policy's second version suspends a version on a
critical monitoring breach, and ``pd-retail`` v1 has two steady weeks of AUC to drift from."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any
from unittest import mock

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone

from audit.context import origin
from common.roles import Role
from governance import services as governance
from governance.calendar import add_months
from governance.models import ApprovalRequest, Environment, RequestKind, RequestState, StageState
from monitoring import services as monitoring
from notifications.delivery import deliver_due
from registry import services
from registry.models import DatasetVersion, ModelVersion, RegisteredModel

User = get_user_model()

TEAMS = ("credit-risk", "pricing")
# username, roles, team, staff
USERS: list[tuple[str, list[str], str | None, bool]] = [
    ("admin", [], None, True),
    ("dev.credit", [Role.MODEL_DEVELOPER], "credit-risk", True),
    ("owner.credit", [Role.MODEL_OWNER], "credit-risk", True),
    ("dev.pricing", [Role.MODEL_DEVELOPER], "pricing", True),
    ("owner.pricing", [Role.MODEL_OWNER], "pricing", True),
    ("validator", [Role.VALIDATOR], None, True),
    ("risk.officer", [Role.RISK_OFFICER], None, True),
    ("risk.officer.2", [Role.RISK_OFFICER], None, True),
    ("compliance", [Role.COMPLIANCE_OFFICER], None, True),
    ("committee", [Role.COMMITTEE_MEMBER], None, True),
    ("committee.2", [Role.COMMITTEE_MEMBER], None, True),
    ("deployer", [Role.DEPLOYER], None, False),
    ("auditor", [Role.AUDITOR], None, True),
]
DATASETS = {
    "credit-risk": ["loan-applications", "bureau-scores", "repayment-history", "collections-outcomes"],
    "pricing": ["motor-quotes", "home-quotes", "claims-history", "web-sessions"],
}
# name, team, tier, restricted, versions, datasets used, purpose
MODELS: list[tuple[str, str, int, bool, int, list[str], str]] = [
    (
        "pd-retail",
        "credit-risk",
        1,
        False,
        4,
        ["loan-applications", "bureau-scores"],
        "Probability of default, retail loans; regulatory capital (IRB)",
    ),
    (
        "pd-smb",
        "credit-risk",
        1,
        True,
        3,
        ["loan-applications", "repayment-history"],
        "Probability of default, small business lending; regulatory capital",
    ),
    (
        "lgd-mortgage",
        "credit-risk",
        1,
        False,
        2,
        ["repayment-history", "collections-outcomes"],
        "Loss given default for mortgages (IFRS 9 and capital)",
    ),
    (
        "credit-limit",
        "credit-risk",
        2,
        False,
        3,
        ["loan-applications", "bureau-scores"],
        "Automated credit-limit assignment for cards",
    ),
    (
        "application-score",
        "credit-risk",
        2,
        False,
        3,
        ["loan-applications"],
        "Accept / refer / decline on new applications",
    ),
    ("fraud-card", "credit-risk", 2, True, 4, ["loan-applications", "web-sessions"], "Card transaction fraud scoring"),
    ("collections-priority", "credit-risk", 3, False, 2, ["collections-outcomes"], "Orders the collections queue"),
    ("early-warning", "credit-risk", 3, False, 2, ["repayment-history"], "Flags accounts drifting towards arrears"),
    ("income-estimator", "credit-risk", 3, False, 2, ["bureau-scores"], "Estimates income where not declared"),
    ("doc-classifier", "credit-risk", 4, False, 2, [], "Routes uploaded documents to the right queue"),
    ("motor-pricing", "pricing", 1, False, 4, ["motor-quotes", "claims-history"], "Automated motor premium pricing"),
    (
        "home-pricing",
        "pricing",
        2,
        False,
        3,
        ["home-quotes", "claims-history"],
        "Automated home insurance premium pricing",
    ),
    ("claims-triage", "pricing", 2, False, 3, ["claims-history"], "Fast-track or investigate incoming claims"),
    ("retention-offer", "pricing", 2, False, 2, ["motor-quotes", "web-sessions"], "Renewal discount eligibility"),
    ("conversion-propensity", "pricing", 3, False, 3, ["web-sessions", "motor-quotes"], "Likelihood a quote converts"),
    ("churn-propensity", "pricing", 3, False, 2, ["web-sessions"], "Likelihood a customer leaves at renewal"),
    ("quote-anomaly", "pricing", 3, False, 2, ["motor-quotes"], "Flags quotes with implausible inputs"),
    ("marketing-mix", "pricing", 4, False, 2, ["web-sessions"], "Channel spend attribution"),
    ("call-summariser", "pricing", 4, False, 1, [], "Summarises contact-centre calls for agents"),
    ("address-matcher", "pricing", 4, False, 2, [], "Normalises and matches postal addresses"),
]
FRAMEWORKS = ["scikit-learn", "xgboost", "lightgbm", "pytorch"]
# Questionnaire answers that give each tier under the default scorecard (with its flags).
LOW_ANSWERS = {
    "financial_exposure": "under_1m",
    "decision_impact": "informs",
    "regulatory_use": "none",
    "scale": "under_1k",
    "method": "rules_or_scorecard",
    "data": "internal_structured",
    "interpretability": "transparent",
    "dynamism": "static",
    "dependencies": "none",
}
ASSESSMENTS: dict[int, tuple[dict[str, str], list[str]]] = {
    1: ({**LOW_ANSWERS, "financial_exposure": "over_100m", "method": "tree_ensemble"}, ["regulatory_capital"]),
    2: ({**LOW_ANSWERS, "decision_impact": "fully_automated"}, ["automated_customer_pricing_or_eligibility"]),
    3: (
        {
            **LOW_ANSWERS,
            "financial_exposure": "1m_to_10m",
            "decision_impact": "automated_with_review",
            "scale": "1k_to_100k",
        },
        [],
    ),
    4: (LOW_ANSWERS, []),
}
# Who signs which role's stages in the demo (never the submitter or the creator).
SIGNERS = {
    Role.VALIDATOR: ["validator"],
    Role.COMPLIANCE_OFFICER: ["compliance"],
    Role.RISK_OFFICER: ["risk.officer"],
    Role.COMMITTEE_MEMBER: ["committee", "committee.2"],
}


SCORE_BINS = ["0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1"]
PAST = "marketing-mix"  # its history happened PAST_MONTHS ago: its T4 approval (48 months) has expired
PAST_MONTHS = 49


@contextmanager
def _months_ago(months: int) -> Iterator[None]:
    """Run the services with the clock set back (the ledger still records the database's time)."""
    then = add_months(timezone.now(), -months)
    with mock.patch("django.utils.timezone.now", return_value=then):
        yield


def _digest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


class Command(BaseCommand):
    help = "Load demo users, teams, models, versions, datasets and lineage (once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--reset-passwords", action="store_true", help="give the demo users new passwords and print them"
        )

    def handle(self, *args: Any, reset_passwords: bool = False, **options: Any) -> None:
        if User.objects.filter(username="dev.credit").exists():
            if reset_passwords:
                self._print_logins(self._set_passwords())
            else:
                self.stdout.write(
                    "Demo data is already loaded. Passwords were printed when it was created; "
                    "new ones: manage.py demo_seed --reset-passwords"
                )
            return
        with origin("demo-seed"), transaction.atomic():
            passwords = self._create_users()
            self._assign_validators()
            self._create_registry()
            self._lifecycle_endings()
            dev = User.objects.get(username="dev.credit")
            _, token = services.token_create(actor=dev, name="demo")
        # The emails of the demo's made-up history go nowhere rather than to the console.
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"):
            deliver_due(limit=100_000, budget_seconds=600)
        self._print_logins(passwords, token)

    def _create_users(self) -> dict[str, str]:
        for team in TEAMS:
            Group.objects.get_or_create(name=team)
        for username, roles, user_team, staff in USERS:
            user = User.objects.create(
                username=username,
                email=f"{username}@example.com",
                is_staff=staff,
                is_superuser=username == "admin",
            )
            user.groups.add(*(Group.objects.get(name=name) for name in [*roles, *([user_team] if user_team else [])]))
        return self._set_passwords()

    def _set_passwords(self) -> dict[str, str]:
        passwords = {}
        for username, *_ in USERS:
            user = User.objects.get(username=username)
            passwords[username] = secrets.token_urlsafe(9)
            user.set_password(passwords[username])
            user.save(update_fields=["password"])
        return passwords

    def _create_registry(self) -> None:
        devs = {team: User.objects.get(username=f"dev.{team.split('-')[0]}") for team in TEAMS}
        owners = {team: User.objects.get(username=f"owner.{team.split('-')[0]}") for team in TEAMS}
        dataset_versions: dict[str, list[DatasetVersion]] = {}
        for team, names in DATASETS.items():
            for name in names:
                dataset = services.dataset_create(
                    actor=devs[team], name=name, team=Group.objects.get(name=team), description=f"Demo {name} data"
                )
                dataset_versions[name] = [
                    services.dataset_version_create(
                        actor=devs[team],
                        dataset=dataset,
                        uri=f"s3://warden-demo/datasets/{name}/{year}.parquet",
                        digest=_digest(name, year),
                        row_count=100_000 * (year - 2022),
                        schema_summary={"columns": 20 + year - 2024},
                    )
                    for year in (2024, 2025)
                ]
        latest: dict[str, ModelVersion] = {}
        for index, (name, team, tier, restricted, count, used, purpose) in enumerate(MODELS):
            with _months_ago(PAST_MONTHS) if name == PAST else nullcontext():
                self._create_model(
                    index, name, team, tier, restricted, count, used, purpose, dataset_versions, latest, devs, owners
                )
        assert RegisteredModel.objects.count() == len(MODELS)

    def _create_model(
        self,
        index: int,
        name: str,
        team: str,
        tier: int,
        restricted: bool,
        count: int,
        used: list[str],
        purpose: str,
        dataset_versions: dict[str, list[DatasetVersion]],
        latest: dict[str, ModelVersion],
        devs: dict[str, Any],
        owners: dict[str, Any],
    ) -> None:
        deployer = User.objects.get(username="deployer")
        production = Environment.objects.get(name="production")
        model = services.model_register(
            actor=owners[team],
            name=name,
            team=Group.objects.get(name=team),
            display_name=name.replace("-", " ").capitalize(),
            business_purpose=purpose,
            intended_use="Decision support within the documented portfolio and limits.",
            limitations="Not validated outside the training population.",
            tags={"line": "lending" if team == "credit-risk" else "insurance"},
            restricted=restricted,
        )
        answers, flags = ASSESSMENTS[tier]
        governance.assessment_record(actor=owners[team], model=model, answers=answers, flags=flags)
        previous: ModelVersion | None = None
        for number in range(1, count + 1):
            newest = number == count
            parents = [(previous, "retrained_from")] if previous else []
            if name == "pd-smb" and number == 1:
                parents = [(latest["pd-retail"], "fine_tuned_from")]
            data = [
                (dataset_versions[ds][1 if newest else 0], "training" if i == 0 else "validation")
                for i, ds in enumerate(used)
            ]
            previous = services.version_create(
                actor=devs[team],
                model=model,
                artifact_uri=f"s3://warden-demo/models/{name}/{number}/model.pkl",
                artifact_sha256=_digest(name, number),
                framework=FRAMEWORKS[index % len(FRAMEWORKS)],
                source_run_id=_digest("run", name, number)[:32],
                source_code_commit=_digest("commit", name, number)[:40],
                parameters={"max_depth": 4 + number, "learning_rate": 0.1},
                metrics={"auc": round(0.70 + 0.02 * number, 3), "gini": round(0.40 + 0.04 * number, 3)},
                signature={"inputs": [{"name": "features", "type": "tensor"}], "outputs": [{"name": "score"}]},
                description=f"Version {number} of {name}",
                parents=parents,
                datasets=data,
            )
        assert previous is not None
        latest[name] = previous
        first = model.versions.get(number=1)
        if name == "pd-retail":  # the score distribution it is approved against, for PSI later
            reference = {
                "key": "pd-retail-1-score-reference",
                "feature": "score",
                "bins": SCORE_BINS,
                "counts": [120, 340, 310, 160, 70],
            }
            monitoring.reference_capture(
                actor=devs[team], item=monitoring.Item(version=first, deployment=None, data=reference)
            )
        self._approve(governance.request_submit(actor=owners[team], version=first, rationale="Initial release"))
        services.alias_set(actor=devs[team], model=model, name="champion", number=1)
        governance.deployment_record(
            actor=deployer,
            version=first,
            environment=production,
            endpoint=f"https://models.internal/{name}/v1",
        )
        if name == "pd-retail":
            governance.finding_raise(
                actor=User.objects.get(username="validator"),
                model=model,
                version=first,
                title="Calibration weak for thin-file applicants",
                description="Observed default rate 40% above predicted in the lowest bureau-score band.",
                severity="high",
                owner=owners[team],
                due_date=timezone.localdate() + timedelta(days=60),
            )
        if count > 1:
            pending = governance.request_submit(
                actor=owners[team], version=previous, rationale=f"Retrained on {used[0] if used else 'new'} data"
            )
            if index % 3 == 0 and pending.stages.filter(step=2).exists():  # a few are further along
                self._approve(pending, steps=1)

    def _lifecycle_endings(self) -> None:
        """A suspended version, a decommissioned model, and the clock's work on the model whose
        history is old (an expired approval, a revalidation request, an escalated stage)."""
        risk_officer = User.objects.get(username="risk.officer")
        anomaly = ModelVersion.objects.get(model__name="quote-anomaly", number=1)
        governance.version_suspend(
            actor=risk_officer, version=anomaly, reason="Share of quotes flagged tripled overnight; under investigation"
        )
        summariser = RegisteredModel.objects.get(name="call-summariser")
        self._approve(
            governance.request_open(
                actor=User.objects.get(username="owner.pricing"),
                kind=RequestKind.DECOMMISSION,
                model=summariser,
                rationale="Replaced by the contact-centre platform's built-in summaries",
            )
        )
        governance.lifecycle_sweep()
        # A risk officer's edit of the T1 policy, so that the demo shows the strictest answer
        # to drift: a critical breach suspends the version at once (PRODUCT.md's default lets
        # a risk officer decide).
        draft = governance.policy_draft(actor=risk_officer, tier=1)
        on_critical = {**draft.monitoring["on_critical"], "suspension": "automatic"}
        governance.document_update(
            actor=risk_officer,
            document=draft,
            changes={
                "monitoring": {**draft.monitoring, "on_critical": on_critical},
                "notes": "A critical monitoring breach suspends a T1 version at once.",
            },
        )
        governance.document_publish(actor=risk_officer, document=draft)
        self._monitoring_history()

    def _monitoring_history(self) -> None:
        """Two weeks of pd-retail v1's AUC in production, steady within 1% of its approved 0.72,
        ending eleven days ago: room for an engineer to post eleven daily windows up to today."""
        version = ModelVersion.objects.get(model__name="pd-retail", number=1)
        deployment = version.deployments.get(retired_at=None)
        today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
        wobble = [0.0, 0.004, -0.003, 0.006, 0.001, -0.005, 0.002, 0.007, -0.002, 0.003, -0.006, 0.0, 0.005, -0.001]
        items = [
            monitoring.Item(
                version=version,
                deployment=deployment,
                data={
                    "key": f"pd-retail-1-auc-{day}",
                    "metric": "auc",
                    "segment": "",
                    "value": round(0.72 * (1 + wobble[day]), 4),
                    "window_start": today - timedelta(days=25 - day),
                    "window_end": today - timedelta(days=24 - day),
                },
            )
            for day in range(14)
        ]
        monitoring.observations_receive(actor=User.objects.get(username="dev.credit"), items=items)

    def _assign_validators(self) -> None:
        risk_officer = User.objects.get(username="risk.officer")
        validator = User.objects.get(username="validator")
        for team in TEAMS:
            governance.validator_assign(actor=risk_officer, validator=validator, team=Group.objects.get(name=team))

    def _approve(self, request: ApprovalRequest, steps: int = 99) -> None:
        """Sign the request's stages in turn with the demo's people, ``steps`` steps at most.
        T3's independent reviewer is the other team's developer."""
        reviewers = {"credit-risk": "dev.pricing", "pricing": "dev.credit"}
        for _ in range(steps):
            request.refresh_from_db()
            if request.state != RequestState.OPEN:
                return
            for stage in request.stages.filter(state=StageState.ACTIVE):
                names = SIGNERS.get(Role(stage.role), [reviewers[request.model.team.name]])
                for username in names[: stage.quorum]:
                    governance.decision_record(
                        actor=User.objects.get(username=username),
                        request=request,
                        outcome="approve",
                        comment="Demo: evidence reviewed",
                        stage=stage.name,
                    )

    def _print_logins(self, passwords: dict[str, str], token: str | None = None) -> None:
        roles = {username: ", ".join(roles) or "superuser" for username, roles, *_ in USERS}
        self.stdout.write(self.style.SUCCESS("Demo logins (shown once; admin at http://127.0.0.1:8000/admin/):"))
        for username, password in passwords.items():
            self.stdout.write(f"  {username:<14} {password:<14} {roles[username]}")
        if token:
            self.stdout.write(self.style.SUCCESS("API token for dev.credit (shown once):"))
            self.stdout.write(f"  {token}")
            self.stdout.write("  curl -H 'Authorization: Bearer <token>' http://127.0.0.1:8000/api/v1/models/")
