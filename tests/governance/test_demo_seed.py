from __future__ import annotations

from io import StringIO

from django.contrib.auth import authenticate
from django.core.management import call_command

from audit.models import AuditEvent
from common.roles import Role
from governance.models import ApprovalRequest, Deployment, RiskAssessment
from registry.models import DatasetUsage, ModelVersion, RegisteredModel, VersionParent


def test_demo_seed_loads_a_living_registry_and_prints_working_logins(db):
    out = StringIO()
    call_command("demo_seed", stdout=out)
    text = out.getvalue()

    assert RegisteredModel.objects.count() == 20
    assert set(RegisteredModel.objects.values_list("risk_tier", flat=True)) == {1, 2, 3, 4}
    assert ModelVersion.objects.count() > 40
    assert VersionParent.objects.filter(relation="fine_tuned_from").exists()
    assert DatasetUsage.objects.exists()
    assert AuditEvent.objects.filter(action="version.created").count() == ModelVersion.objects.count()
    assert RiskAssessment.objects.values("model").distinct().count() == 20
    assert ModelVersion.objects.filter(number=1, state="deployed").count() == 20
    assert Deployment.objects.filter(environment__name="production", retired_at=None).count() == 20
    waiting = ApprovalRequest.objects.filter(state="open")
    assert waiting.count() == RegisteredModel.objects.filter(versions__number=2).count()
    assert waiting.filter(current_step=1).exists() and waiting.filter(current_step__gt=1).exists()

    rows = [line.split() for line in text.splitlines() if line.startswith("  ")]
    logins = {row[0]: row[1] for row in rows if len(row) >= 3 and row[0] != "curl"}
    for role in Role:
        assert role.value in text
    assert authenticate(username="risk.officer", password=logins["risk.officer"]) is not None

    again = StringIO()
    call_command("demo_seed", stdout=again)
    assert "already loaded" in again.getvalue()
    assert RegisteredModel.objects.count() == 20
