from __future__ import annotations

from io import StringIO

from django.contrib.auth import authenticate
from django.core.management import call_command

from audit.models import AuditEvent
from common.roles import Role
from governance import gate
from governance.models import ApprovalRequest, Deployment, Environment, Finding, RiskAssessment
from notifications.models import Delivery
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
    assert ModelVersion.objects.filter(number=1, state="deployed").count() == 18
    assert Deployment.objects.filter(environment__name="production", retired_at=None).count() == 19
    waiting = ApprovalRequest.objects.filter(state="open", kind="release")
    assert waiting.count() == RegisteredModel.objects.filter(versions__number=2).count()
    assert waiting.filter(current_step=1).exists() and waiting.filter(current_step__gt=1).exists()

    # An example of each ending, for the gate to refuse with its reason.
    production = Environment.objects.get(name="production")
    reasons = {
        name: gate.evaluate(ModelVersion.objects.get(model__name=name, number=1), production).reasons
        for name in ("pd-retail", "marketing-mix", "quote-anomaly", "call-summariser")
    }
    assert reasons["pd-retail"] == []
    assert "expired on" in reasons["marketing-mix"][0]
    assert reasons["quote-anomaly"] == ["version 1 of quote-anomaly is suspended"]
    assert "model call-summariser is decommissioned" in reasons["call-summariser"]
    assert ApprovalRequest.objects.filter(model__name="marketing-mix", kind="revalidation", state="open").exists()
    assert AuditEvent.objects.filter(action="approval_stage.escalated", model_name="marketing-mix").exists()
    assert not Delivery.objects.filter(state="pending").exists()  # the history's emails went nowhere
    pd_retail = ModelVersion.objects.get(model__name="pd-retail", number=1)
    assert pd_retail.observations.count() == 14 and pd_retail.distributions.filter(reference=True).exists()
    assert not Finding.objects.filter(version=pd_retail, source="monitoring").exists()  # steady within 1%

    rows = [line.split() for line in text.splitlines() if line.startswith("  ")]
    logins = {row[0]: row[1] for row in rows if len(row) >= 3 and row[0] != "curl"}
    for role in Role:
        assert role.value in text
    assert authenticate(username="risk.officer", password=logins["risk.officer"]) is not None

    again = StringIO()
    call_command("demo_seed", stdout=again)
    assert "already loaded" in again.getvalue()
    assert RegisteredModel.objects.count() == 20
